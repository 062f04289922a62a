"""A bridge for a whole lab: several devices, one API, one writer per data
directory, and a sample bus whose slow consumers never cost the log a row."""

import json

import numpy as np
import pytest

from harness import (FIRST, PERIOD, bridge_config, csv_files, now_ms, parse_csv, polled,
                     read_log, running_bridge, wait_for)
from thermostat_ctrl.bridge.storage.cachefile import CACHE_DIR
from thermostat_ctrl.bridge.storage.csvformat import file_name, header_line, row_line
from thermostat_ctrl.bridge.storage.datadir import DataDirError, DataDirLock
from thermostat_ctrl.bridge.web.app import create_app

NAMES = ["sim0", "sim1", "sim2"]


# ------------------------------------------------------------- one API

DEVICE_PATHS = [("GET", "/report"), ("GET", "/series"), ("GET", "/data.csv"),
                ("POST", "/save_once")]


@pytest.mark.parametrize("method, path", DEVICE_PATHS)
async def test_several_devices_need_a_device_name(lab_client, method, path):
    bridge, client = lab_client
    r = await client.request(method, path)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", "device"]
    assert all(name in error["msg"] for name in NAMES)
    r = await client.request(method, path, params={"device": "nosuch"})
    assert r.status_code == 404 and "'nosuch'" in r.json()["detail"], r.text
    for name in NAMES:
        r = await client.request(method, path, params={"device": name})
        assert r.status_code == 200, (name, r.text)


async def test_each_device_has_its_own_data(lab_client, tmp_path):
    bridge, client = lab_client
    rows = {}
    for index, name in enumerate(NAMES):
        saved = (await client.post("/save_once", params={"device": name})).json()
        rows[name] = saved
        series = (await client.get("/series", params={"device": name})).json()
        assert saved in series
        # The simulated devices' targets are 1.5 K apart, so their data differ.
        assert saved["device_time_ch0"] > 0
        for other in NAMES:
            if other != name:
                others = (await client.get("/series", params={"device": other})).json()
                assert saved["ts"] not in {r["ts"] for r in others if r == saved}
        logged = read_log(tmp_path / name)
        assert str(saved["ts"]) in {row[1] for _, _, row in logged}
        report = (await client.get("/report", params={"device": name})).json()
        assert report["channels"][0]["channel"] == 0
    assert not list(tmp_path.glob("thermostat-*.csv"))  # nothing at the top level


async def test_devices_and_health(lab_client):
    """Conditions, not moments: on a loaded machine any device may be late
    (stale) or time out for a moment, so each state is waited for."""
    bridge, client = lab_client
    devices = (await client.get("/devices")).json()
    assert [d["name"] for d in devices] == NAMES
    for d in devices:
        assert d["firmware"] == "2025" and d["address"].startswith("127.0.0.1:")
        assert d["last_poll_ts"] > 0 and isinstance(d["poll_errors"], dict)
    r = await wait_for(lambda: _status(client.get("/health"), 200), what="200 /health")
    assert [d["name"] for d in r.json()["devices"]] == NAMES
    assert all(d["connected"] and not d["stale"] for d in r.json()["devices"])
    r = await wait_for(lambda: _status(client.get("/health", params={"device": "sim1"}),
                                       200), what="200 /health of sim1")
    assert r.json()["name"] == "sim1"
    assert (await client.get("/health", params={"device": "zz"})).status_code == 404

    # One device goes stale: the bridge's health is 503 while the others are ok.
    bridge.devices["sim1"].simulation.sim.faults.hang = True
    try:
        r = await wait_for(lambda: _states(client, {"sim0": "ok", "sim1": "stale",
                                                    "sim2": "ok"}),
                           what="sim1 stale, the others ok")
        assert r.status_code == 503
        await wait_for(lambda: _status(client.get("/health", params={"device": "sim0"}),
                                       200), what="200 /health of sim0")
        # Stale comes after a few periods; the hung poll's timeout may come later.
        r = await wait_for(lambda: _timed_out(client, "sim1"), what="a timeout of sim1")
        assert r.status_code == 503 and r.json()["status"] != "ok"
    finally:
        bridge.devices["sim1"].simulation.sim.faults.hang = False


async def _states(client, states: dict):
    response = await client.get("/health")
    found = {d["name"]: d["status"] for d in response.json()["devices"]}
    return response if found == states else None


async def _timed_out(client, device: str):
    response = await client.get("/health", params={"device": device})
    return response if response.json()["poll_errors"].get("timeout", 0) >= 1 else None


async def _status(request, status: int):
    response = await request
    return response if response.status_code == status else None


async def test_one_sample_reads_the_same_in_every_row_endpoint(bridge_client):
    """/save_once, /series and /data.csv write a cell the same way: the
    formatter is one (booleans are 0/1, JSON integers; nulls empty/null)."""
    bridge, client = bridge_client
    saved = (await client.post("/save_once")).json()
    ts = saved["ts"]
    (series,) = (await client.get("/series", params={"from": ts, "to": ts})).json()
    header, line = parse_csv((await client.get("/data.csv", params={"from": ts, "to": ts})).text)
    assert json.dumps(series) == json.dumps(saved)
    assert type(saved["pid_engaged_ch0"]) is int and saved["pid_engaged_ch0"] == 1
    for column, cell in zip(header, line):
        value = saved[column]
        assert cell == ("" if value is None else str(value)), (column, cell, value)


# ----------------------------------------------- the data directory

def _legacy_day(data_dir, day: int, rows: int, start_ms: int) -> list:
    """Write a day file of the single-device layout, polled at the tests'
    period (so no gap between its rows); return its ts."""
    columns = ["temperature_ch0", "temperature_ch1"]
    ts = [start_ms + int(PERIOD * 1000) * i for i in range(rows)]
    with open(data_dir / file_name(day), "wb") as f:
        f.write(header_line(columns))
        for t in ts:
            f.write(row_line(t, np.array([25.0 + (t % 7) / 100, 24.0])))
    return ts


async def test_single_device_directory_is_taken_over(tmp_path):
    now = now_ms()
    days = [now // 86_400_000 - 2, now // 86_400_000 - 1]
    old = []
    for day in days:
        old += _legacy_day(tmp_path, day, 50, day * 86_400_000 + 3_600_000)
    (tmp_path / CACHE_DIR).mkdir()
    (tmp_path / CACHE_DIR / (file_name(days[0]) + ".json")).write_text("{}")
    async with running_bridge(tmp_path, fields=("temperature",)) as (bridge, client):
        await polled(bridge, 3)
        rows = (await client.get("/series", params={"from": old[0], "to": old[-1]})).json()
        assert _data_ts(rows) == old  # every row, once, in order (and a gap between the days)
    assert not list(tmp_path.glob("thermostat-*.csv"))
    moved = sorted(p.name for p in csv_files(tmp_path / FIRST))
    assert moved[:2] == [file_name(d) for d in days]
    assert (tmp_path / FIRST / CACHE_DIR / (file_name(days[0]) + ".json")).exists()
    # A second start finds nothing more to move and serves the same rows.
    async with running_bridge(tmp_path, fields=("temperature",)) as (bridge, client):
        rows = (await client.get("/series", params={"from": old[0], "to": old[-1]})).json()
        assert _data_ts(rows) == old


def _data_ts(rows: list) -> list:
    """The ts of the rows that hold data, after checking that the others are
    the one gap mark between the two days."""
    marks = [r["ts"] for r in rows if all(v is None for k, v in r.items() if "_ch" in k)]
    assert len(marks) == 1, marks
    return [r["ts"] for r in rows if r["ts"] not in marks]


def test_a_half_finished_move_is_finished(tmp_path):
    """A crash in the middle of the move leaves each file in one place; the
    next start moves the rest."""
    day = now_ms() // 86_400_000 - 3
    _legacy_day(tmp_path, day, 10, day * 86_400_000)
    _legacy_day(tmp_path, day + 1, 10, (day + 1) * 86_400_000)
    (tmp_path / FIRST).mkdir()
    (tmp_path / file_name(day)).rename(tmp_path / FIRST / file_name(day))
    app = create_app(bridge_config(tmp_path))
    app.state.bridge._lock.release()
    assert sorted(p.name for p in csv_files(tmp_path / FIRST)) == [file_name(day),
                                                                  file_name(day + 1)]
    assert not list(tmp_path.glob("thermostat-*.csv"))


def test_a_conflicting_file_is_never_overwritten(tmp_path):
    day = now_ms() // 86_400_000 - 3
    _legacy_day(tmp_path, day, 10, day * 86_400_000)
    (tmp_path / FIRST).mkdir()
    (tmp_path / FIRST / file_name(day)).write_bytes(b"time,ts\n")
    with pytest.raises(DataDirError, match="exists both"):
        create_app(bridge_config(tmp_path))
    assert (tmp_path / file_name(day)).exists()
    DataDirLock(str(tmp_path)).release()  # the failed start released the lock


def test_second_bridge_on_the_same_directory_is_refused(tmp_path):
    app = create_app(bridge_config(tmp_path))
    try:
        with pytest.raises(DataDirError, match="in use"):
            create_app(bridge_config(tmp_path))
    finally:
        app.state.bridge._lock.release()
    create_app(bridge_config(tmp_path)).state.bridge._lock.release()
