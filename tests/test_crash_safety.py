"""Crash safety of the CSV log, and a wall clock that jumps.

* The ``thermostat_bridge`` process is SIGKILLed at random moments while it
  polls every 20 ms and clients POST /save_once concurrently, then restarted
  on the same data directory, many times over.  After every kill: each CSV
  file parses, no row is torn or duplicated, timestamps strictly increase
  within each file (and across files), and every row acknowledged by a
  /save_once 200 is on disk with the values it was acknowledged with.
* In-process, the poller's wall clock is stepped back (and forward, across
  a day boundary): rows are never out of order inside a file, the refused
  rows are counted, /save_once never acknowledges a row it did not store,
  and range queries keep working.
"""

import contextlib
import random
import signal
import threading
import time

import httpx
import pytest

from harness import (BRIDGE, FIRST, SERVING, Process, bridge_config, csv_files, only, read_log,
                     wait_for, wait_until)
from thermostat_ctrl.bridge.storage.csvformat import day_of
from thermostat_ctrl.bridge.web.app import create_app

ITERATIONS = 24
SAVERS = 3


class Saver(threading.Thread):
    """POSTs /save_once in a loop; keeps every acknowledged (200) row."""

    def __init__(self, url: str, acked: list):
        super().__init__(daemon=True)
        self.url = url
        self.acked = acked
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.halt.is_set():
                try:
                    r = client.post("/save_once")
                except httpx.TransportError:
                    continue  # killed mid-request: not acknowledged
                if r.status_code == 200:
                    self.acked.append(r.json())


def _check_acknowledged(acked: list, logged: dict) -> None:
    for row in acked:
        found = logged.get(row["ts"])
        assert found is not None, "acknowledged row {} lost".format(row["ts"])
        header, cells = found
        for column, cell in zip(header, cells):
            value = row.get(column)
            if column == "time":
                assert cell == value
            elif value is None:
                assert cell == "", (column, row)
            else:
                assert float(cell) == float(value), (column, cell, value)


def test_sigkill_while_writing_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(6)
    acked: list = []
    began = time.monotonic()
    for iteration in range(ITERATIONS):
        process = Process(BRIDGE + ["--simulation", "--speed", "20", "--port", "0",
                                 "--data-dir", str(tmp_path), "--poll-period", "0.02"])
        savers = []
        try:
            url = process.wait_for_line(SERVING).group(1)
            savers = [Saver(url, acked) for _ in range(SAVERS)]
            for saver in savers:
                saver.start()
            # A random moment: after a random number of acknowledged rows.
            target = len(acked) + rng.randint(1, 40)
            wait_until(lambda: len(acked) >= target, what="acknowledged rows")
            process.proc.send_signal(signal.SIGKILL)
            process.proc.wait(10)
        finally:
            for saver in savers:
                saver.halt.set()
            for saver in savers:
                saver.join(10)
            process.stop()
        rows = read_log(tmp_path / FIRST)  # parses; no torn line; ts increasing per file
        ts = [int(row[1]) for _, _, row in rows]
        assert ts == sorted(set(ts)), "duplicated or unordered rows after kill {}".format(
            iteration)
        _check_acknowledged(acked, {int(row[1]): (header, row) for _, header, row in rows})
    print("{} kills, {} rows on disk, {} acknowledged, {:.1f} s".format(
        ITERATIONS, len(ts), len(acked), time.monotonic() - began))
    assert len(acked) >= ITERATIONS


# ------------------------------------------------------------- clock jumps

class SteppedClock:
    """The real wall clock plus an offset that the test steps."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@contextlib.asynccontextmanager
async def clocked_bridge(tmp_path, clock: SteppedClock):
    """(bridge, client): an in-process simulation bridge stamping rows with ``clock``."""
    app = create_app(bridge_config(tmp_path, memory_s=3.0))
    only(app.state.bridge).poller.wall_clock = clock
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield app.state.bridge, client


async def _health(client: httpx.AsyncClient) -> dict:
    return (await client.get("/health", params={"device": FIRST})).json()


async def test_wall_clock_stepping_back_keeps_files_ordered(tmp_path):
    clock = SteppedClock()
    async with clocked_bridge(tmp_path, clock) as (bridge, client):
        store = only(bridge).store
        await wait_for(lambda: store.rows_written >= 10, what="10 rows")

        # A step back of 1 s: rows are refused (counted) until the clock has
        # passed the last stored row again; /save_once does not acknowledge them.
        written = store.rows_written
        clock.offset = -1.0
        await wait_for(lambda: store.out_of_order >= 3, what="refused rows")
        r = await client.post("/save_once")
        assert r.status_code == 503 and "not written" in r.json()["detail"], r.text
        health = await _health(client)
        assert health["rows_refused"] >= 3 and health["csv_rows_written"] == written
        await wait_for(lambda: store.rows_written >= written + 5, timeout=10,
                       what="rows once the clock has caught up")
        assert (await client.post("/save_once")).status_code == 200

        # A step forward across midnight, then back: a second day file; the
        # rows after the step back are refused, never written out of order.
        today = day_of(int(time.time() * 1000))
        clock.offset = (today + 1) * 86_400 + 0.5 - time.time()
        await wait_for(lambda: len(csv_files(tmp_path / FIRST)) == 2, what="tomorrow's file")
        await wait_for(lambda: _rows_in(tmp_path / FIRST, 1) >= 3, what="rows in tomorrow's file")
        refused = store.out_of_order
        clock.offset = 0.0
        await wait_for(lambda: store.out_of_order >= refused + 3, what="refused rows")
        health = await _health(client)
        assert health["status"] == "ok"  # polling itself goes on

    # Stopped: the store has written everything polled.
    rows = read_log(tmp_path / FIRST)  # every file in order
    ts = [int(row[1]) for _, _, row in rows]
    assert ts == sorted(set(ts)) and len(ts) == store.rows_written
    async with clocked_bridge(tmp_path, SteppedClock()) as (bridge, client):
        assert [name for name, _, _ in rows] == sorted(name for name, _, _ in rows)

        # Range queries over memory, disk and both days.
        for start, end in ((ts[0], ts[-1]), (ts[0], ts[len(ts) // 2]),
                           (ts[len(ts) // 2], ts[-1]), (ts[3], ts[3])):
            expected = [t for t in ts if start <= t <= end]
            for path in ("/series", "/data.csv"):
                r = await client.get(path, params={"from": start, "to": end,
                                                   "fields": "temperature"})
                assert r.status_code == 200
                # Samples only: the rows marking the gap of the jump have no values.
                got = ([row["ts"] for row in r.json() if row["temperature_ch0"] is not None]
                       if path == "/series"
                       else [int(line.split(",")[1]) for line in r.text.splitlines()[1:]
                             if not line.endswith(",,")])
                assert got == expected, (path, start, end)
            r = await client.get("/series", params={"from": start, "to": end,
                                                    "max_points": 4})
            got = [row["ts"] for row in r.json()]
            assert got == sorted(got) and len(got) <= 4
            assert all(start <= t <= end for t in got)


def _rows_in(data_dir, index: int) -> int:
    files = csv_files(data_dir)
    if len(files) <= index:
        return 0
    return len(files[index].read_text().splitlines()) - 1


@pytest.mark.parametrize("torn", [b"1999-01-01T00:00:00.0", b"1999-01-01T00:00:00.000Z,91"])
def test_restart_repairs_a_torn_tail(tmp_path, torn):
    """A half-written last row (as a power loss may leave) is dropped on the
    next start and the log continues cleanly after it."""
    process = Process(BRIDGE + ["--simulation", "--speed", "20", "--port", "0",
                             "--data-dir", str(tmp_path), "--poll-period", "0.05"])
    try:
        url = process.wait_for_line(SERVING).group(1)
        wait_until(lambda: httpx.get(url + "/health").json()["devices"][0]["csv_rows_written"] >= 3,
                   what="3 rows")
    finally:
        process.proc.send_signal(signal.SIGKILL)
        process.stop()
    (path,) = csv_files(tmp_path / FIRST)
    before = read_log(tmp_path / FIRST)
    with open(path, "ab") as f:
        f.write(torn)
    process = Process(BRIDGE + ["--simulation", "--speed", "20", "--port", "0",
                             "--data-dir", str(tmp_path), "--poll-period", "0.05"])
    try:
        url = process.wait_for_line(SERVING).group(1)
        wait_until(lambda: httpx.get(url + "/health").json()["devices"][0]["csv_rows_written"] >= 3,
                   what="3 rows after the restart")
    finally:
        assert process.stop() == 0
    after = read_log(tmp_path / FIRST)
    assert after[:len(before)] == before and len(after) >= len(before) + 3
    assert torn not in path.read_bytes()
    assert any("torn" in line for line in process.lines), "".join(process.lines)
