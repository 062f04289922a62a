"""The runtime: one bridge wires pollers, bus, stores, alarms and sinks
together, and gives the data directory back however it ends."""

import json
import subprocess
import sys

import pytest

from harness import bridge_config, polled, read_log, running_bridge
from thermostat_ctrl.bridge.runtime import SWITCH_INTERVAL_S, Bridge
from thermostat_ctrl.bridge.storage.datadir import DataDirError, DataDirLock
from thermostat_ctrl.bridge.storage.identity import IDENTITY_NAME, Identity, claim


async def test_a_stopped_bridge_has_logged_every_poll_and_released_its_directory(tmp_path):
    async with running_bridge(tmp_path, simulation=2) as (bridge, client):
        await polled(bridge, 5)
        consumers = (await client.get("/health")).json()["consumers"]
        assert consumers["store"]["dropped"] == 0
    for name, device in bridge.devices.items():
        assert len(read_log(tmp_path / name)) == device.poller.polls_ok >= 5
        recorded = json.loads((tmp_path / name / IDENTITY_NAME).read_text())
        assert recorded["simulated"] is True and recorded["firmware"] == "2025"
    DataDirLock(str(tmp_path)).release()  # free again


async def test_a_bridge_that_cannot_start_releases_its_directory(tmp_path):
    claim(str(tmp_path / "sim1"), Identity(simulated=False, address="10.0.0.5:23"))
    with pytest.raises(DataDirError, match="holds the rows of the Thermostat at 10.0.0.5:23"):
        Bridge(bridge_config(tmp_path, simulation=2))
    bridge = Bridge(bridge_config(tmp_path, simulation=2, adopt=True))  # the lock was given back
    await bridge.stop()
    DataDirLock(str(tmp_path)).release()


def test_tune_process_shortens_the_switch_interval_and_freezes_start_up_objects():
    # In a process of its own: the settings are process-wide.
    code = ("import gc, sys\n"
            "from thermostat_ctrl.bridge.runtime import tune_process\n"
            "tune_process()\n"
            "print(sys.getswitchinterval(), gc.get_freeze_count())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert float(out[0]) == SWITCH_INTERVAL_S and int(out[1]) > 1000
