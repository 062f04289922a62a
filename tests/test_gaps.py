"""Gaps are data: where a device was not sampled for longer than a few poll
periods, every answer (memory or disk, raw or downsampled, JSON or CSV)
holds exactly one row without values inside the gap, and no such row
anywhere else."""

import numpy as np

from harness import FIRST, now_ms, only, parse_csv, polled, running_bridge, wait_for
from thermostat_ctrl.bridge.storage.gaps import GAP_PERIODS
from thermostat_ctrl.bridge.storage.store import Store

T0 = 1_795_478_400_000  # 2026-11-25T00:00Z
COLUMNS = ["temperature_ch0", "temperature_ch1"]


def marks(table) -> list:
    return table.ts[np.isnan(table.values).all(axis=1)].tolist()


def test_store_marks_each_gap_once_from_memory_and_disk(tmp_path):
    period = 1.0
    ts = T0 + np.arange(0, 3 * 86_400_000, 1000, dtype=np.int64)
    holes = [(T0 + 3_600_000, T0 + 3_600_000 + 5000),  # 5 s: a gap
             (T0 + 86_400_000 - 60_000, T0 + 86_400_000 + 7_200_000),  # across midnight
             (T0 + 2 * 86_400_000 + 10_000, T0 + 2 * 86_400_000 + 10_000)]  # 1 missed poll
    for a, b in holes:
        ts = ts[(ts < a) | (ts > b)]
    values = np.column_stack([25 + np.sin(np.arange(len(ts)) / 500), np.full(len(ts), 26.0)])
    for capacity in (10, len(ts)):  # rows on disk, or all still in memory
        store = Store(str(tmp_path / str(capacity)), COLUMNS, capacity, period)
        for t, v in zip(ts.tolist(), values):
            assert store.append(t, COLUMNS, v)
        first, last = int(ts[0]), int(ts[-1])
        # raw: the two long holes are marked, the missed poll (2 s) is not
        raw = store.query(T0 + 3_500_000, T0 + 3_700_000, COLUMNS)
        ((mark,),) = [marks(raw)]
        assert T0 + 3_600_000 - 1000 < mark < T0 + 3_600_000 + 6000
        raw = store.query(T0 + 2 * 86_400_000, T0 + 2 * 86_400_000 + 60_000, COLUMNS)
        assert marks(raw) == [] and len(raw) == 60
        # downsampled over everything: only the hole longer than a bucket
        down = store.query(first, last, COLUMNS, 1000)
        assert len(down) <= 1000
        ((mark,),) = [marks(down)]
        assert T0 + 86_400_000 - 60_000 < mark < T0 + 86_400_000 + 7_200_000
        # a row without values is a gap mark, never a sample
        assert all(t not in set(ts.tolist()) for t in marks(down) + marks(raw))
        store.close()


def test_gap_threshold_follows_the_poll_period(tmp_path):
    store = Store(str(tmp_path), COLUMNS, 100, 0.1)
    for i, t in enumerate([0, 100, 200, 300 + 100 * GAP_PERIODS, 400 + 100 * GAP_PERIODS]):
        store.append(T0 + t, COLUMNS, np.array([float(i), 1.0]))
    table = store.query(T0, T0 + 10_000, COLUMNS)
    assert marks(table) == [T0 + 200 + (100 + 100 * GAP_PERIODS) // 2]
    assert store.gap_ms == 100 * GAP_PERIODS


async def test_an_outage_is_one_empty_row_in_series_and_data_csv(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        device = only(bridge)
        await polled(bridge, 40)
        sim = device.simulation.sim
        sim.faults.refuse = True  # the device goes away for a while
        sim.drop_connections()
        last = device.poller.latest.ts
        await wait_for(lambda: now_ms() > last + 2000, what="a 2 s outage")
        assert device.poller.polls_failed and device.poller.targets is None  # unknown now
        sim.faults.refuse = False
        ok = device.poller.polls_ok
        await wait_for(lambda: device.poller.polls_ok >= ok + 40, what="polls after the outage")
        first = (await client.get("/series", params={"from": 0})).json()[0]["ts"]
        for max_points in (None, 30):  # raw, and 1 s buckets
            params = {"fields": "temperature", "from": first, "to": now_ms()}
            if max_points:
                params["max_points"] = max_points
            series = (await client.get("/series", params=params)).json()
            empty = [row for row in series
                     if row["temperature_ch0"] is None and row["temperature_ch1"] is None]
            assert len(empty) == 1, series
            rows = parse_csv((await client.get("/data.csv", params=params)).text)
            assert [row for row in rows if row[2:] == ["", ""]] == [
                [empty[0]["time"], str(empty[0]["ts"]), "", ""]]
            assert not max_points or len(series) <= max_points
        assert device.poller.targets is not None  # read again at once after the outage
        assert (await client.get("/series", params={"from": 0, "fields": "target"})).json()[-1][
            "target_ch0"] == device.poller.targets[0]
    assert FIRST == device.name
