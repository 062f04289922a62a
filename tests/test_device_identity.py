"""Each device folder records what filled it; a bridge never appends another
device's rows to it unless told to adopt it."""

import json

import pytest

from harness import FIRST, bridge_config, csv_files, polled, run_cli, running_bridge, wait_for
from thermostat_ctrl.bridge.storage.datadir import DataDirError
from thermostat_ctrl.bridge.storage.identity import IDENTITY_NAME, Identity, claim, read
from thermostat_ctrl.bridge.web.app import create_app

REAL = "{}=127.0.0.1:2323".format(FIRST)


def _record(folder) -> dict:
    return json.loads((folder / IDENTITY_NAME).read_text())


async def test_a_simulation_records_itself_with_firmware_and_hardware(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 3)
        await wait_for(lambda: _record(tmp_path / FIRST).get("hwrev") is not None,
                       what="the hardware revision recorded")
    assert _record(tmp_path / FIRST) == {"simulated": True, "address": None,
                                         "firmware": "2025", "hwrev": "v2.2"}


async def test_a_real_device_never_appends_to_a_simulations_folder(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 3)
    before = {p.name: p.read_bytes() for p in csv_files(tmp_path / FIRST)}
    with pytest.raises(DataDirError, match=r"holds the rows of the simulation \(firmware 2025,"
                                           r" v2.2\), not of the Thermostat at 127.0.0.1:2323"
                                           r".*--adopt"):
        create_app(bridge_config(tmp_path, devices=[REAL]))
    assert {p.name: p.read_bytes() for p in csv_files(tmp_path / FIRST)} == before
    # Told to adopt it, the folder is the real device's from now on.
    app = create_app(bridge_config(tmp_path, devices=[REAL], adopt=True))
    app.state.bridge._lock.release()
    assert _record(tmp_path / FIRST)["address"] == "127.0.0.1:2323"
    assert not _record(tmp_path / FIRST)["simulated"]


def test_a_simulation_is_refused_with_one_line_and_exit_2(tmp_path):
    folder = tmp_path / FIRST
    claim(str(folder), Identity(simulated=False, address="10.0.0.5:23", firmware="2023"))
    r = run_cli("--simulation", "--port", "0", "--data-dir", str(tmp_path))
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert str(folder) in line and "10.0.0.5:23 (firmware 2023)" in line and "--adopt" in line
    assert not csv_files(folder)


def test_the_same_device_and_a_folder_without_record_are_taken(tmp_path):
    folder = str(tmp_path / "laser")
    real = Identity(simulated=False, address="10.0.0.5:23")
    assert claim(folder, real) == real  # no record yet: the device's now
    known = Identity(simulated=False, address="10.0.0.5:23", firmware="2025", hwrev="v2.2")
    assert claim(folder, known) == known
    # The same address, firmware not given: the record's firmware stays.
    assert claim(folder, real) == known and read(folder) == known
    for other in (Identity(simulated=False, address="10.0.0.6:23"),
                  Identity(simulated=False, address="10.0.0.5:23", hwrev="v2.0"),
                  Identity(simulated=True)):
        with pytest.raises(DataDirError, match="holds the rows of the Thermostat at"
                                               " 10.0.0.5:23"):
            claim(folder, other)
    (tmp_path / "laser" / IDENTITY_NAME).write_text("{not json")
    with pytest.raises(DataDirError, match="device.json is unreadable"):
        read(folder)
