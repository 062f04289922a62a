"""The bridge's ``--artiq-master`` sink with a real ``artiq_master``: the
live datasets appear in the master's dataset database, follow the samples,
and come back after the master restarts; ``/health`` and ``/metrics`` count
it.  Skips, with the reason, without ARTIQ."""

import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from artiq_kit import Master, require_artiq, write_device_db
from harness import bridge_process, free_port, running_bridge, wait_for, wait_until
from thermostat_ctrl.bridge import config as bridge_config
from thermostat_ctrl.bridge.sinks.artiq_master import PERIOD_S

KEY = "thermostat.thermostat0.ch0."


def get(master: Master, key: str):
    """A dataset of the master (None while absent or while it is down)."""
    try:
        db = master.rpc("dataset_db")
    except OSError:
        return None
    try:
        return db.get(key)
    except KeyError:
        return None
    finally:
        db.close_rpc()


def window(master: Master, field: str, longer_than: int = 0):
    """A window array of channel 0 once it has more than ``longer_than`` values."""
    values = get(master, KEY + field)
    return list(values) if values is not None and len(values) > longer_than else None


def sink_health(url: str, name: str):
    try:
        return httpx.get(url + "/health", timeout=5).json()["sinks"].get(name)
    except (httpx.TransportError, ValueError):
        return None


def test_bridge_publishes_to_a_master_and_survives_its_restart(tmp_path):
    require_artiq()
    repository = tmp_path / "repository"
    repository.mkdir()
    device_db = write_device_db(tmp_path / "device_db.py", {})
    master = Master(tmp_path, device_db, repository)
    name = "artiq://127.0.0.1:{}".format(master.control)
    try:
        with bridge_process(tmp_path / "data", "--artiq-master",
                            "127.0.0.1:{}".format(master.control)) as (_, url):
            first = wait_until(lambda: window(master, "window_temperature"), 60,
                               "the window dataset in the master")
            assert get(master, KEY + "state") in ("off", "settling", "in_band")
            assert 10 < get(master, KEY + "temperature") < 40
            assert get(master, "thermostat.thermostat0.ch1.window_time")[-1] == 0

            # the datasets follow the samples: the window grows, newest sample at 0
            grown = wait_until(lambda: window(master, "window_time", len(first) + 1), 30,
                               "the window to grow")
            assert grown[-1] == 0 and np.all(np.diff(grown) > 0)
            health = wait_until(lambda: (lambda h: h if h and h["points_sent"] else None)(
                sink_health(url, name)), 30, "the sink in /health")
            assert health["status"] == "ok" and health["last_error"] is None
            metrics = httpx.get(url + "/metrics", timeout=5).text
            assert 'thermostat_sink_points_sent_total{{sink="{}"}}'.format(name) in metrics

            master.stop()
            down = wait_until(lambda: (lambda h: h if h and h["status"] == "retrying"
                                       and h["retries"] >= 1 else None)(
                sink_health(url, name)), 60, "the sink to notice the master is gone")
            assert down["last_error"]

            master = Master(tmp_path, device_db, repository, ports=master.ports)
            wait_until(lambda: get(master, KEY + "temperature") is not None, 60,
                       "publishing to resume after the restart\n" + master.log())
            wait_until(lambda: (sink_health(url, name) or {}).get("status") == "ok", 30,
                       "the sink to be ok again")
    finally:
        master.stop()


@pytest.mark.parametrize("value,word", [("127.0.0.1:notaport", "bad port"),
                                        ("", "no host")])
def test_a_bad_master_address_is_one_line(value, word, tmp_path):
    require_artiq()
    done = subprocess.run([sys.executable, "-m", "thermostat_ctrl.bridge.cli", "--simulation",
                           "--data-dir", str(tmp_path), "--artiq-master", value or ":1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "artiq_master" in done.stderr
    assert word in done.stderr


def test_the_master_address_from_toml_and_environment(tmp_path):
    require_artiq()
    toml = tmp_path / "bridge.toml"
    toml.write_text('simulation = true\nartiq_master = "10.0.0.7"\n')
    config = bridge_config.from_env({"THERMOSTAT_CONFIG": str(toml)})
    assert config.artiq_master == "10.0.0.7"
    config = bridge_config.from_env({"THERMOSTAT_CONFIG": str(toml),
                                     "THERMOSTAT_ARTIQ_MASTER": "[::1]:4000"})
    assert config.artiq_master == "[::1]:4000"


class OldDatasetDB:
    """The dataset database of a master from before 2024: another target
    name, and ``set`` without metadata."""

    def __init__(self):
        self.data = {}

    def set(self, key, value, persist=None):
        self.data[key] = (persist, value)


async def test_an_older_master_gets_the_same_datasets(tmp_path):
    pc_rpc = pytest.importorskip("sipyco.pc_rpc", reason="sipyco is not installed")
    db = OldDatasetDB()
    server = pc_rpc.Server({"master_dataset_db": db})
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        async with running_bridge(tmp_path, artiq_master="127.0.0.1:{}".format(port)) as (
                bridge, _):
            started = time.monotonic()
            await wait_for(lambda: len(db.data.get(KEY + "window_time", (None, []))[1]) > 1,
                           30, "the window in the old master")
            sink = next(s for s in bridge.sinks if s.name == "artiq://127.0.0.1:{}".format(port))
            assert sink.target == "master_dataset_db"
            persist, temperature = db.data[KEY + "temperature"]
            assert persist is False and 10 < temperature < 40
            state = sink.state()
            assert state.status == "ok" and state.points_sent >= 12
            # at most one update of the (one) device per second: one at the sink's start
            # (before ``started``), one at the end of each whole period since
            assert state.batches_sent <= (time.monotonic() - started) // PERIOD_S + 2
    finally:
        await server.stop()
