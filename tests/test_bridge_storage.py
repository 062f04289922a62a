"""Ring buffer, CSV log and the Store's write side."""

import errno
import math
import os
import tracemalloc

import numpy as np
import pytest

from thermostat_ctrl.bridge.schema import columns_for
from thermostat_ctrl.bridge.storage import csvlog
from thermostat_ctrl.bridge.storage.csvformat import DAY_MS, file_name, iso_time, log_files
from thermostat_ctrl.bridge.storage.csvlog import CsvLog, DataDirError
from thermostat_ctrl.bridge.storage.ringbuffer import RingBuffer
from thermostat_ctrl.bridge.storage.store import Store

T0 = 1_795_478_400_000  # 2026-11-24T00:00:00Z


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")


def test_iso_time():
    assert iso_time(T0 + 6 * 3_600_000 + 5 * 60_000 + 40_123) == "2026-11-24T06:05:40.123Z"
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"


# -- ring buffer --------------------------------------------------------------
def test_ring_buffer_wraps_in_order_and_returns_copies():
    ring = RingBuffer(["a", "b"], 4)
    assert len(ring) == 0 and ring.latest() is None and ring.oldest_ts is None
    for i in range(10):
        ring.append(1000 * i, np.array([i, -i], dtype=float))
    assert len(ring) == 4 and (ring.oldest_ts, ring.newest_ts) == (6000, 9000)
    ts, values = ring.read()
    assert ts.tolist() == [6000, 7000, 8000, 9000]
    assert values[:, 0].tolist() == [6, 7, 8, 9]
    assert ring.read(7000, 8000)[0].tolist() == [7000, 8000]  # inclusive
    assert ring.read(7001, 7999)[0].tolist() == []
    assert ring.read(None, 6500)[0].tolist() == [6000]
    values[:] = 0
    ts[:] = 0
    assert ring.read()[1][0, 0] == 6  # a copy
    latest_ts, latest = ring.latest()
    latest[:] = 0
    assert latest_ts == 9000 and ring.latest()[1].tolist() == [9, -9]
    with pytest.raises(ValueError):
        ring.append(9000, np.zeros(2))


def test_ring_buffer_append_does_not_allocate():
    ring = RingBuffer(["a", "b", "c"], 1000)
    row = np.ones(3)
    ring.append(0, row)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1, 10_001):
            ring.append(i, row)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 1024


# -- CSV log ------------------------------------------------------------------
COLUMNS = columns_for(["temperature", "pid_engaged"])


def row(t0=24.5, t1=math.nan, e0=1.0, e1=0.0):
    return np.array([t0, t1, e0, e1])


def test_csv_header_and_row_format(tmp_path):
    log = CsvLog(str(tmp_path / "data"), COLUMNS)
    assert log.append(T0 + 5, row(0.1 + 0.2))
    lines = read_lines(tmp_path / "data" / "thermostat-2026-11-24.csv")
    assert lines[0] == "time,ts," + ",".join(COLUMNS)
    assert lines[1] == "2026-11-24T00:00:00.005Z,1795478400005,0.30000000000000004,,1,0"
    assert lines[2:] == [""]  # newline-terminated
    assert log.rows_written == 1 and log.write_errors == 0


def test_csv_day_rotation_at_utc_midnight(tmp_path):
    log = CsvLog(str(tmp_path), COLUMNS)
    for ts in (T0 + DAY_MS - 1001, T0 + DAY_MS - 1, T0 + DAY_MS, T0 + DAY_MS + 1000):
        assert log.append(ts, row())
    first = read_lines(tmp_path / file_name(T0 // DAY_MS))
    second = read_lines(tmp_path / file_name(T0 // DAY_MS + 1))
    assert [line.split(",")[1] for line in first[1:-1]] == [str(T0 + DAY_MS - 1001),
                                                            str(T0 + DAY_MS - 1)]
    assert second[0].startswith("time,ts,") and len(second) == 4
    assert second[1].startswith("2026-11-25T00:00:00.000Z,")


def test_torn_tail_is_repaired_on_open(tmp_path):
    log = CsvLog(str(tmp_path), COLUMNS)
    log.append(T0, row())
    log.close()
    path = tmp_path / file_name(T0 // DAY_MS)
    with open(path, "ab") as f:
        f.write(b"2026-11-24T00:00:01.000Z,17954784010")  # crash mid-row
    log = CsvLog(str(tmp_path), COLUMNS)
    assert log.append(T0 + 2000, row(1.5))
    lines = read_lines(path)
    assert len(lines) == 4 and lines[2].startswith("2026-11-24T00:00:02.000Z,1795478402000,1.5,")


def test_schema_change_starts_a_new_file(tmp_path):
    log = CsvLog(str(tmp_path), COLUMNS)
    log.append(T0, row())
    other = ["temperature_ch0", "temperature_ch1"]
    log.set_columns(other)
    assert log.append(T0 + 1000, np.array([1.0, 2.0]))
    log.set_columns(COLUMNS)
    assert log.append(T0 + 2000, row())
    # a restart with the other columns again continues the newest file's
    # sequence, never appends to an older file with a different header
    log = CsvLog(str(tmp_path), other)
    assert log.append(T0 + 3000, np.array([3.0, 4.0]))
    names = log_files(os.listdir(tmp_path))
    day = T0 // DAY_MS
    assert names == [file_name(day), file_name(day, 2), file_name(day, 3), file_name(day, 4)]
    assert names[1] == "thermostat-2026-11-24.2.csv"
    for name, cols, nrows in [(names[0], COLUMNS, 1), (names[1], other, 1),
                              (names[2], COLUMNS, 1), (names[3], other, 1)]:
        lines = read_lines(tmp_path / name)
        assert lines[0] == "time,ts," + ",".join(cols)
        assert all(len(line.split(",")) == len(cols) + 2 for line in lines[1:-1])
        assert len(lines) == nrows + 2


def test_existing_file_with_same_header_is_continued(tmp_path):
    CsvLog(str(tmp_path), COLUMNS).append(T0, row())
    log = CsvLog(str(tmp_path), COLUMNS)
    assert log.last_ts == T0
    assert log.append(T0 + 1, row())
    assert os.listdir(tmp_path) == [file_name(T0 // DAY_MS)]
    assert [line.split(",")[1] for line in read_lines(tmp_path / file_name(T0 // DAY_MS))[1:-1]] \
        == [str(T0), str(T0 + 1)]


def test_unwritable_data_dir_raises_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataDirError) as info:
        CsvLog(str(blocker / "data"), COLUMNS)
    assert isinstance(info.value, OSError)
    message = str(info.value)
    assert "\n" not in message and str(blocker) in message and "not writable" in message


def test_write_error_is_counted_logged_once_and_resumed(tmp_path, monkeypatch, caplog):
    log = CsvLog(str(tmp_path), COLUMNS)
    assert log.append(T0, row())
    real_write = os.write

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csvlog.os, "write", disk_full)
    assert not log.append(T0 + 1000, row())
    assert not log.append(T0 + 2000, row())
    monkeypatch.setattr(csvlog.os, "write", real_write)
    assert log.append(T0 + 3000, row())
    assert (log.write_errors, log.rows_written) == (2, 2)
    assert sum("CSV write failed" in r.message for r in caplog.records) == 1
    lines = read_lines(tmp_path / file_name(T0 // DAY_MS))
    assert [line.split(",")[1] for line in lines[1:-1]] == [str(T0), str(T0 + 3000)]


def test_short_write_leaves_no_half_row(tmp_path, monkeypatch):
    log = CsvLog(str(tmp_path), COLUMNS)
    assert log.append(T0, row())
    real_write = os.write
    monkeypatch.setattr(csvlog.os, "write", lambda fd, data: real_write(fd, data[:10]))
    assert not log.append(T0 + 1000, row())
    monkeypatch.setattr(csvlog.os, "write", real_write)
    assert log.append(T0 + 2000, row())
    lines = read_lines(tmp_path / file_name(T0 // DAY_MS))
    assert len(lines) == 4 and all(len(line.split(",")) == 6 for line in lines[:-1])


def test_file_replaced_by_directory_then_restored(tmp_path):
    log = CsvLog(str(tmp_path), COLUMNS)
    assert log.append(T0, row())
    path = tmp_path / file_name(T0 // DAY_MS)
    path.unlink()
    path.mkdir()  # a real fault: the file cannot be reopened
    assert not log.append(T0 + 1000, row())
    assert log.write_errors == 1
    path.rmdir()
    assert log.append(T0 + 2000, row())
    lines = read_lines(path)
    assert lines[0].startswith("time,ts,") and lines[1].split(",")[1] == str(T0 + 2000)


def test_clock_going_backwards_is_refused(tmp_path):
    store = Store(str(tmp_path), COLUMNS, 10)
    assert store.append(T0 + 5000, COLUMNS, row())
    assert not store.append(T0 + 5000, COLUMNS, row())
    assert not store.append(T0 - DAY_MS, COLUMNS, row())  # would even land in yesterday's file
    assert store.out_of_order == 2 and store.rows_written == 1
    store.close()
    # After a restart the log's last row still bounds what is accepted.
    store = Store(str(tmp_path), COLUMNS, 10)
    assert not store.append(T0 + 4000, COLUMNS, row())
    assert store.append(T0 + 6000, COLUMNS, row())
    assert os.listdir(tmp_path) == [file_name(T0 // DAY_MS)]


# -- store write side ---------------------------------------------------------
def test_store_append_latest_and_counters(tmp_path, monkeypatch):
    store = Store(str(tmp_path), COLUMNS, 10)
    assert store.latest() is None
    assert store.append(T0, COLUMNS, row(20.0))
    ts, latest = store.latest()
    assert ts == T0 and latest["temperature_ch0"] == 20.0 and math.isnan(latest["temperature_ch1"])
    assert not store.append(T0, COLUMNS, row())  # refused everywhere
    assert store.out_of_order == 1 and len(store.query(0, T0 * 2)) == 1
    monkeypatch.setattr(csvlog.os, "write", lambda fd, data: 0)  # disk full
    assert not store.append(T0 + 1000, COLUMNS, row(21.0))  # CSV failed ...
    assert store.latest()[0] == T0 + 1000  # ... but memory has it
    assert (store.rows_written, store.write_errors) == (1, 1)


def test_store_schema_change(tmp_path):
    store = Store(str(tmp_path), COLUMNS, 10)
    store.append(T0, COLUMNS, row(20.0))
    other = columns_for(["temperature", "i_set"])
    store.append(T0 + 1000, other, np.array([21.0, 22.0, 0.5, 0.6]))
    assert store.columns == other
    assert store.latest()[1] == {"temperature_ch0": 21.0, "temperature_ch1": 22.0,
                                 "i_set_ch0": 0.5, "i_set_ch1": 0.6}
    assert store.all_columns() == other + ["pid_engaged_ch0", "pid_engaged_ch1"]
    assert sorted(os.listdir(tmp_path)) == ["thermostat-2026-11-24.2.csv", "thermostat-2026-11-24.csv"]
