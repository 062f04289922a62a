"""A bridge for a whole lab: several devices, one API, one writer per data
directory, and a sample bus whose slow consumers never cost the log a row."""

import contextlib
import json
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness import (FIRST, PERIOD, bridge_config, csv_files, now_ms, parse_csv, polled,
                     read_log, running_bridge, wait_for)
from thermostat_ctrl.bridge.status import fresh_sample
from thermostat_ctrl.bridge import config as bridge_config_module
from thermostat_ctrl.bridge.storage.cachefile import CACHE_DIR
from thermostat_ctrl.bridge.storage.csvformat import file_name, header_line, row_line
from thermostat_ctrl.bridge.storage.datadir import DataDirError, DataDirLock
from thermostat_ctrl.bridge.web.app import create_app
from thermostat_ctrl.simulator import Simulator

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


# ------------------------------------------------- a device that misbehaves

#: Poll period of the lab tests with misbehaving devices.
LAB_PERIOD = 0.1


@contextlib.asynccontextmanager
async def lab_of_simulators(data_dir, n: int = 3):
    """(bridge, client, sims): a bridge polling ``n`` simulators of this loop
    every :data:`LAB_PERIOD` s."""
    # A reset keeps a device off the network for 30 simulated s (1.5 s).
    sims = [Simulator(speed=20.0, seed=i, reboot_s=30.0) for i in range(n)]
    ports = [await sim.start("127.0.0.1", 0) for sim in sims]
    try:
        devices = ["{}=127.0.0.1:{}".format(name, port) for name, port in zip(NAMES, ports)]
        async with running_bridge(data_dir, devices=devices, poll_period=LAB_PERIOD) as (
                bridge, client):
            yield bridge, client, sims
    finally:
        for sim in sims:
            await sim.stop()


FAULTS = {
    "hang": (lambda sim: setattr(sim.faults, "hang", True),
             lambda sim: setattr(sim.faults, "hang", False)),
    "slow": (lambda sim: setattr(sim.faults, "delay_ms", 5000.0),
             lambda sim: setattr(sim.faults, "delay_ms", 0.0)),
    "cut": (lambda sim: setattr(sim.faults, "cut_replies", 10 ** 6),
            lambda sim: setattr(sim.faults, "cut_replies", 0)),
    "refuse": (lambda sim: (setattr(sim.faults, "refuse", True), sim.drop_connections()),
               lambda sim: setattr(sim.faults, "refuse", False)),
    "reset": (lambda sim: sim.reset(), lambda sim: None),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_failing_device_never_delays_the_others(tmp_path, fault):
    apply, clear = FAULTS[fault]
    async with lab_of_simulators(tmp_path) as (bridge, client, sims):
        await polled(bridge, 5)
        bad, good = bridge.devices[NAMES[0]], [bridge.devices[n] for n in NAMES[1:]]
        apply(sims[0])
        began = now_ms()
        await wait_for(lambda: bad.poller.polls_failed >= 3, what="3 failed polls")
        during = {d.name: d.poller.polls_ok for d in good}
        await wait_for(lambda: all(d.poller.polls_ok >= during[d.name] + 10 for d in good),
                       what="10 more polls of the others")
        ended = now_ms()
        clear(sims[0])
        await wait_for(lambda: fresh_sample(bad) is not None, timeout=15, what="recovery")
        for device in good:
            assert device.poller.skipped == 0 and device.poller.polls_failed == 0
            rows = (await client.get("/series", params={
                "device": device.name, "from": began, "to": ended})).json()
            ts = np.array([r["ts"] for r in rows])
            # Their schedule held: a row every period, none missing.
            gaps = np.diff(ts)
            assert len(ts) >= 10 and gaps.max() < 2 * LAB_PERIOD * 1000, gaps
        assert bad.poller.failures, bad.poller.failures
    for name in NAMES:  # stopped: every polled row of every device is on disk
        device = bridge.devices[name]
        assert len(read_log(tmp_path / name)) == device.poller.polls_ok == \
            device.store.rows_written


# ------------------------------------------------------------- the bus

async def test_slow_and_stalled_consumers_cost_the_store_nothing(tmp_path):
    release = threading.Event()
    seen = []

    def slow(batch):
        seen.extend(s.ts for s in batch if s.device == FIRST)
        release.wait(0.05)  # a consumer that takes its time over every batch

    app = create_app(bridge_config(tmp_path, simulation=2, poll_period=LAB_PERIOD))
    bridge = app.state.bridge
    bridge.consume("slow", slow, maxlen=1000)
    stalled = bridge.bus.subscribe("stalled", maxlen=5)  # never read
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            await polled(bridge, 30)
            health = (await client.get("/health")).json()
            consumers = health["consumers"]
            assert consumers["stalled"]["dropped"] >= 2 * 30 - 5
            assert consumers["stalled"]["queued"] == 5
            assert consumers["store"]["dropped"] == 0
            metrics = (await client.get("/metrics")).text
            assert 'thermostat_bus_dropped_total{consumer="stalled"}' in metrics
            for device in bridge.devices.values():
                assert device.poller.skipped == 0
    stalled.close()
    for name, device in bridge.devices.items():
        assert len(read_log(tmp_path / name)) == device.poller.polls_ok
    logged = [int(row[1]) for _, _, row in read_log(tmp_path / FIRST)]
    assert seen == logged  # the slow consumer saw every sample, in order


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


# ------------------------------------------------------------- configuration

def test_device_list_from_the_environment():
    config = bridge_config_module.from_env(
        {"THERMOSTAT_DEVICES": "a=10.0.0.5, b=10.0.0.6:2323,10.0.0.7"})
    assert [(d.name, d.address) for d in config.devices] == [
        ("a", "10.0.0.5"), ("b", "10.0.0.6:2323"), ("thermostat2", "10.0.0.7")]
    (device,) = bridge_config_module.from_env({"THERMOSTAT_DEVICE": "10.0.0.5"}).devices
    assert (device.name, device.address) == ("thermostat0", "10.0.0.5")
    config = bridge_config_module.from_env({"THERMOSTAT_SIMULATION": "3"})
    assert [d.name for d in config.devices] == NAMES and config.simulation
    for env, message in [({"THERMOSTAT_DEVICES": "A=10.0.0.5"}, "device name 'A'"),
                         ({"THERMOSTAT_DEVICES": "a=x,a=y"}, "more than once"),
                         ({"THERMOSTAT_DEVICES": "a=x:0"}, "'a=x:0'"),
                         ({}, "at least one device")]:
        with pytest.raises(ValueError, match=message):
            bridge_config_module.from_env(env)


def test_toml_file(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('poll_period = 2.0\nfields = ["temperature"]\n'
                    '[[device]]\nname = "laser"\naddress = "10.0.0.5"\n'
                    '[[device]]\nname = "cavity"\naddress = "10.0.0.6:2323"\n'
                    'poll_period = 0.1\nfirmware = "2023"\n')
    settings = bridge_config_module.read_toml(str(path))
    config = bridge_config_module.build(**settings)
    laser, cavity = config.devices
    assert (laser.name, laser.address, laser.poll_period, laser.fields) == (
        "laser", "10.0.0.5", 2.0, ("temperature",))
    assert (cavity.poll_period, cavity.firmware) == (0.1, "2023")


def test_the_systemd_example_configuration_is_valid():
    path = Path(__file__).resolve().parent.parent / "scripts/systemd/thermostat-bridge.toml"
    config = bridge_config_module.build(**bridge_config_module.read_toml(str(path)))
    assert [(d.name, d.address) for d in config.devices] == [("thermostat0", "192.168.1.26")]
