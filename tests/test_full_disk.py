"""A full disk under the data directory: /health says the log of record is
failing, and once space returns the rows memory still holds are written in
order; what memory no longer held is counted as lost.  On a real (small)
tmpfs (``small_disk``), so the writes fail with the kernel's own ENOSPC."""

import os

import numpy as np

from harness import FIRST, fill, polled, read_log, running_bridge, wait_for
from thermostat_ctrl.bridge.schema import columns_for
from thermostat_ctrl.bridge.storage.store import Store

COLUMNS = columns_for(["temperature"])
T0 = 1_795_000_000_000


def _rows(store, ts_list):
    return [store.append(ts, COLUMNS, np.array([ts % 97, 1.0])) for ts in ts_list]


OUTAGE = list(range(T0 + 10_000, T0 + 1_010_000, 1000))


def _outage(store, disk) -> list:
    """10 rows, then a full disk and the rows of :data:`OUTAGE`, then space
    again and one more row; whether each row of the outage was stored."""
    assert all(_rows(store, range(T0, T0 + 10_000, 1000)))
    filler = fill(disk)
    # Rows go on: some may still fit in a page the log already has, then writes fail.
    stored = _rows(store, OUTAGE)
    assert not all(stored) and store.write_errors > 0
    assert "No space left on device" in store.log_error
    os.unlink(filler)
    assert _rows(store, [T0 + 1_010_000]) == [True]
    assert store.log_error is None
    store.close()
    return stored


def test_rows_held_in_memory_are_written_in_order_once_space_returns(small_disk):
    store = Store(str(small_disk / FIRST), COLUMNS, capacity=2000, poll_period=1.0)
    stored = _outage(store, small_disk)
    assert store.rows_lost == 0 and store.rows_caught_up == stored.count(False)
    ts = [int(row[1]) for _, _, row in read_log(small_disk / FIRST)]  # parseable, ordered
    assert ts == list(range(T0, T0 + 1_011_000, 1000))


def test_rows_memory_no_longer_holds_are_counted_lost(small_disk):
    store = Store(str(small_disk / FIRST), COLUMNS, capacity=50, poll_period=1.0)
    stored = _outage(store, small_disk)
    failed_from = OUTAGE[stored.index(False)]
    unwritten = len(OUTAGE) - stored.index(False) + 1  # and the row after the outage
    assert store.rows_lost == unwritten - 50 and store.rows_caught_up == 49
    ts = [int(row[1]) for _, _, row in read_log(small_disk / FIRST)]
    kept = list(range(T0 + 1_010_000 - 49_000, T0 + 1_011_000, 1000))
    assert ts == [t for t in range(T0, failed_from, 1000)] + kept


async def test_health_says_the_log_is_failing_and_nothing_memory_held_is_lost(small_disk):
    async with running_bridge(small_disk, fields=("temperature",)) as (bridge, client):
        await polled(bridge, 5)
        device = bridge.devices[FIRST]
        filler = fill(small_disk)
        await wait_for(lambda: device.store.write_errors >= 3, what="3 failed writes")
        r = await client.get("/health")
        (health,) = r.json()["devices"]
        assert r.status_code == 503 and health["status"] == "failed"
        assert "No space left on device" in health["error"]
        os.unlink(filler)
        await wait_for(lambda: device.store.log_error is None, what="writes again")
        r = await client.get("/health", params={"device": FIRST})
        assert r.json()["csv_rows_caught_up"] > 0 and r.json()["csv_rows_lost"] == 0
    logged = [int(row[1]) for _, _, row in read_log(small_disk / FIRST)]
    assert len(logged) == device.poller.polls_ok == device.store.rows_written
