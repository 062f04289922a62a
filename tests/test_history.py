"""Range queries: disk caches and memory give the same answers as the
downsampling rule applied to all rows (gaps marked); caches are rebuilt when
deleted or stale."""

import os
import shutil

import numpy as np
import pytest

from thermostat_ctrl.bridge.storage.cachefile import CACHE_DIR
from thermostat_ctrl.bridge.storage.csvformat import DAY_MS, file_name
from thermostat_ctrl.bridge.storage.downsample import Aggregates, downsample
from thermostat_ctrl.bridge.storage.gaps import gap_ms
from thermostat_ctrl.bridge.storage.history import DiskHistory
from thermostat_ctrl.bridge.storage.store import Store

T0 = 1_795_478_400_000 - 5 * 3_600_000  # 2026-11-23T19:00Z
A = ["temperature_ch0", "temperature_ch1", "pid_engaged_ch0", "pid_engaged_ch1"]
B = ["temperature_ch0", "temperature_ch1", "i_set_ch0", "i_set_ch1"]
ALL = A + B[2:]
#: The stores' poll period: some of the rows' 18-55 s intervals are gaps.
POLL = 15.0


def make_rows(n, seed=0, period=37_000):
    """``n`` rows from T0 at an irregular cadence with NaNs, 0/1 flags and a
    schema change (A -> B -> A) on the second day."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.cumsum(rng.integers(period // 2, period * 3 // 2, n))
    rows = []
    for i, t in enumerate(ts):
        columns = B if T0 + 30 * 3_600_000 <= t < T0 + 40 * 3_600_000 else A
        values = np.round(rng.normal(25, 1, 4), 3)
        if columns is A:
            values[2:] = rng.integers(0, 2, 2)
        values[rng.random(4) < 0.1] = np.nan
        rows.append((int(t), columns, values))
    return rows


def select(rows, from_ms, to_ms, columns):
    """Brute force: every row in range, mapped to ``columns``."""
    sel = [(t, c, v) for t, c, v in rows if from_ms <= t <= to_ms]
    ts = np.array([t for t, _, _ in sel], dtype=np.int64)
    values = np.full((len(sel), len(columns)), np.nan)
    for i, (_, cols, v) in enumerate(sel):
        for j, c in enumerate(columns):
            if c in cols:
                values[i, j] = v[cols.index(c)]
    return ts, values


def reference(rows, from_ms, to_ms, columns, max_points=None):
    """The answer by definition: :func:`select`, gaps marked, downsampled."""
    return downsample(*select(rows, from_ms, to_ms, columns), from_ms, to_ms, max_points,
                      gap_ms(POLL))


def fill(data_dir, rows, capacity):
    store = Store(str(data_dir), rows[0][1], capacity, POLL)
    for t, columns, values in rows:
        assert store.append(t, columns, values)
    return store


def assert_rows(ts, values, expected):
    assert ts.dtype == np.int64 and values.dtype == np.float64
    assert ts.tolist() == expected[0].tolist()
    np.testing.assert_array_equal(values, expected[1])


def assert_table(table, expected):
    assert_rows(table.ts, table.values, expected)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    rows = make_rows(7000)  # about 3 days
    small = fill(tmp_path_factory.mktemp("small"), rows, capacity=50)
    big = fill(tmp_path_factory.mktemp("big"), rows, capacity=len(rows))
    return rows, small, big


def ranges(rows, seed=1, count=60):
    rng = np.random.default_rng(seed)
    first, last = rows[0][0], rows[-1][0]
    out = []
    for _ in range(count):
        a, b = sorted(rng.integers(first - 3_600_000, last + 3_600_000, 2).tolist())
        out.append((a, b, int(rng.choice([2, 5, 40, 300, 1000, 2000, 5000, 10**6]))))
    # exact row timestamps as bounds, the disk/memory seam, midnight UTC
    out += [(rows[10][0], rows[500][0], 100), (rows[-60][0], rows[-40][0], 4),
            (rows[-51][0], rows[-1][0], 30), (T0 + 5 * 3_600_000 - 1, T0 + 5 * 3_600_000, 10),
            (T0 + 5 * 3_600_000 - 600_000, T0 + 5 * 3_600_000 + 600_000, 6),
            (first, last, 2), (first, last, 200)]
    return out


@pytest.mark.parametrize("columns", [None, ALL, ["i_set_ch1", "temperature_ch0"], ["nope"]])
def test_disk_and_memory_paths_match_brute_force(history, columns):
    rows, small, big = history
    want_columns = A if columns is None else columns
    for from_ms, to_ms, max_points in ranges(rows):
        expected = reference(rows, from_ms, to_ms, want_columns, max_points)
        for store in (small, big):
            table = store.query(from_ms, to_ms, columns, max_points)
            assert table.columns == want_columns
            assert_table(table, expected)
        raw = small.query(from_ms, to_ms, columns)
        assert_table(raw, reference(rows, from_ms, to_ms, want_columns))


def test_fresh_store_serves_all_from_disk(history, tmp_path):
    rows, small, _ = history
    shutil.copytree(small.history.data_dir, tmp_path / "copy")
    shutil.rmtree(tmp_path / "copy" / CACHE_DIR, ignore_errors=True)
    fresh = Store(str(tmp_path / "copy"), A, 10, POLL)
    assert fresh.latest() is None
    assert fresh.all_columns() == ALL
    for from_ms, to_ms, max_points in ranges(rows, seed=2, count=20):
        assert_table(fresh.query(from_ms, to_ms, ALL, max_points),
                     reference(rows, from_ms, to_ms, ALL, max_points))
    csv_files = [n for n in os.listdir(tmp_path / "copy") if n.endswith(".csv")]
    assert len(csv_files) == 6  # 4 days, 2 schema changes
    assert fresh.history.caches_built == 5  # every closed file; the newest is live


def test_range_edges(history):
    rows, small, _ = history
    first, last = rows[0][0], rows[-1][0]
    for store in history[1:]:
        assert store.query(first, first, A).ts.tolist() == [first]
        assert store.query(last, last, A).ts.tolist() == [last]
        assert store.query(first + 1, rows[1][0] - 1, A).ts.tolist() == []
        assert len(store.query(first - 10 * DAY_MS, first - 1, A, 100)) == 0
        assert len(store.query(last + 1, last + 10 * DAY_MS, A, 100)) == 0
        assert len(store.query(last, first, A)) == 0  # inverted range
    midnight = T0 + 5 * 3_600_000
    table = small.query(midnight - 3_600_000, midnight + 3_600_000, A)
    assert table.ts.min() < midnight <= table.ts.max()
    # across the schema change: i_set only exists in the middle period
    table = small.query(first, last, ["i_set_ch0"])
    present = ~np.isnan(table.values[:, 0])
    assert present.any() and not present.all()


def test_deleted_and_stale_caches_are_rebuilt(tmp_path):
    rows = make_rows(7000, seed=3)
    store = fill(tmp_path, rows, capacity=10)
    first, last = rows[0][0], rows[-1][0]
    before = store.query(first, last, A, 500)
    cache = tmp_path / CACHE_DIR
    assert any(cache.iterdir())
    shutil.rmtree(cache)
    history = DiskHistory(str(tmp_path))
    assert history.build_caches() == 5 and any(cache.iterdir())
    fresh = Store(str(tmp_path), A, 10, POLL)
    assert_table(fresh.query(first, last, A, 500), (before.ts, before.values))

    # a closed day's CSV changes (rows added by hand): its cache is stale
    day0 = tmp_path / file_name(T0 // DAY_MS)
    extra_ts = T0 + 5 * 3_600_000 - 1
    with open(day0, "a") as f:
        f.write(f"2026-11-23T23:59:59.999Z,{extra_ts},-100,,1,0\n")
    os.utime(day0, ns=(1, 1))  # even an "older" mtime is a change
    table = fresh.query(extra_ts, extra_ts, A)
    assert table.ts.tolist() == [extra_ts] and table.values[0, 0] == -100
    assert fresh.query(first, last, A, 500).values[:, 0].min() == -100
    assert fresh.history.caches_built == 1


def test_torn_tail_does_not_poison_a_cache(tmp_path):
    rows = make_rows(3000, seed=4)
    store = fill(tmp_path, rows, capacity=10)
    day0 = tmp_path / file_name(T0 // DAY_MS)
    day0_rows = [r for r in rows if r[0] < T0 + 5 * 3_600_000]
    torn_ts = day0_rows[-1][0] + 1
    with open(day0, "a") as f:
        f.write("2026-11-23T23:5")
    first, last = rows[0][0], rows[-1][0]
    expected = reference(rows, first, last, A, 300)
    assert_table(store.query(first, last, A, 300), expected)
    with open(day0, "a") as f:  # the torn row gets completed (by hand)
        f.write(f"9:59.999Z,{torn_ts},1000,,1,0\n")
    table = store.query(torn_ts, torn_ts, A)
    assert table.ts.tolist() == [torn_ts] and table.values[0, 0] == 1000


def test_live_file_is_read_incrementally(tmp_path):
    rows = make_rows(4000, seed=5, period=10_000)
    store = fill(tmp_path, rows[:3000], capacity=5)
    first = rows[0][0]
    for step in range(3000, 4000, 250):
        for t, columns, values in rows[step:step + 250]:
            store.append(t, columns, values)
        last = rows[step + 249][0]
        for max_points in (None, 50, 2000):
            assert_table(store.query(first, last, A, max_points),
                         reference(rows[:step + 250], first, last, A, max_points))


def test_memory_is_used_when_range_is_in_memory(history, monkeypatch):
    rows, small, _ = history

    def no_disk(*args):
        raise AssertionError("disk read")

    monkeypatch.setattr(small.history, "raw", no_disk)
    monkeypatch.setattr(small.history, "aggregates", no_disk)
    from_ms = rows[-50][0]
    assert_table(small.query(from_ms, rows[-1][0] + 10**6, A, 20),
                 reference(rows, from_ms, rows[-1][0] + 10**6, A, 20))


def test_day_close_caches_the_live_rows(tmp_path):
    rows = make_rows(2000, seed=6, period=10_000)
    midnight = T0 + 5 * 3_600_000
    before = [r for r in rows if r[0] < midnight]
    store = fill(tmp_path, before, capacity=5)
    first, last = rows[0][0], rows[-1][0]
    assert_table(store.query(first, last, A, 100), reference(before, first, last, A, 100))
    assert store.history.caches_built == 0  # the only file is live, parsed in memory
    for t, columns, values in rows[len(before):]:
        store.append(t, columns, values)
    expected = reference(rows, first, last, A, 100)
    assert_table(store.query(first, last, A, 100), expected)
    assert store.history.caches_built == 1  # yesterday closed: cached from memory
    shutil.rmtree(tmp_path / CACHE_DIR)  # the same cache built from the CSV
    assert_table(Store(str(tmp_path), A, 5, POLL).query(first, last, A, 100), expected)


def test_bounded_lru_of_files_and_maps(history):
    rows, small, _ = history
    disk = DiskHistory(small.history.data_dir, max_files=2, max_open=1)
    first, last = rows[0][0], rows[-1][0]
    for from_ms, to_ms, max_points in ranges(rows, seed=7, count=15):
        assert_rows(*disk.raw(from_ms, to_ms, A), select(rows, from_ms, to_ms, A))
        assert len(disk._files) <= 2 and len(disk._open) <= 1
    width = 3_600_000
    assert_rows(*disk.aggregates(first, last, A, width).reduce(width).rows(),
                Aggregates.from_rows(*select(rows, first, last, A)).reduce(width).rows())


def test_foreign_file_unsorted_duplicates_and_garbage(tmp_path):
    day = T0 // DAY_MS
    lines = [
        "time,ts,a,b",
        f"x,{T0 + 3000},3,",
        f"x,{T0 + 1000},1,1.5",
        "garbage line",
        f"x,{T0 + 2000},2,oops",
        f"x,{T0 + 1000},9,9",
        f"x,{T0 + 4000},,4",
    ]
    (tmp_path / file_name(day)).write_text("\n".join(lines) + "\n")
    (tmp_path / file_name(day + 1)).write_text("time,ts,a,b\n")  # makes the first closed
    disk = DiskHistory(str(tmp_path))
    ts, values = disk.raw(T0, T0 + DAY_MS, ["a", "b"])
    assert ts.tolist() == [T0 + 1000, T0 + 3000, T0 + 4000]
    np.testing.assert_array_equal(values, [[1, 1.5], [3, np.nan], [np.nan, 4]])


def test_header_only_newest_file(tmp_path):
    rows = make_rows(500, seed=8)
    store = fill(tmp_path, rows, capacity=5)
    last = rows[-1][0]
    next_day = last // DAY_MS + 1
    (tmp_path / file_name(next_day)).write_text("time,ts," + ",".join(A) + "\n")
    fresh = Store(str(tmp_path), A, 5, POLL)
    whole = fresh.query(T0, (next_day + 1) * DAY_MS, A, 20)
    assert 0 < len(whole) <= 20 and whole.ts[-1] == last
    assert len(fresh.query(next_day * DAY_MS, (next_day + 1) * DAY_MS, A, 20)) == 0
    every = store.query(T0, (next_day + 1) * DAY_MS, A)
    assert_table(every, reference(rows, T0, (next_day + 1) * DAY_MS, A))
    assert set(every.ts.tolist()) >= {t for t, _, _ in rows}
