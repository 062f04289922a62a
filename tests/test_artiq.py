"""The shipped experiments and the multi-device controller with the real
ARTIQ: ``artiq_run``, ``artiq_master`` + ``artiq_client``, ``artiq_ctlmgr``.

Every test skips, with the reason, when ARTIQ is not installed.  The
controllers serve simulators at 20x speed; only loopback ports are used.
"""

import inspect

import numpy as np
import pytest

from artiq_kit import (ARTIQ_MISSING, Ctlmgr, Master, artiq_run, controller_command,
                       controller_entry, require_artiq, write_device_db)
from harness import wait_until
from test_aqctl import Controller

h5py = pytest.importorskip("h5py", reason=ARTIQ_MISSING)  # installed with ARTIQ

#: The setpoints of the scan's default arguments.
SCAN = [25.0, 25.5, 26.0]


@pytest.fixture
def controller(tmp_path):
    """A ``--simulation --speed 20`` controller and a device_db pointing at it."""
    require_artiq()
    ctl = Controller(tmp_path, "--simulation", "--speed", "20")
    from sipyco.pc_rpc import Client
    ctl.connect(Client).close_rpc()
    yield ctl, write_device_db(tmp_path / "device_db.py",
                               {"thermostat": controller_entry(ctl.port)})
    ctl.stop()


def datasets(path) -> dict:
    with h5py.File(path, "r") as f:
        return {key: f["datasets"][key][()] for key in f["datasets"]}


def test_setpoint_scan_records_each_point(controller, tmp_path):
    ctl, device_db = controller
    found = datasets(artiq_run(tmp_path, device_db, "setpoint_scan.py"))
    setpoints = found["thermostat.scan.setpoint"]
    assert setpoints == pytest.approx(SCAN)
    # each point settled within the default tolerance for the hold time
    assert np.abs(found["thermostat.scan.temperature"] - setpoints).max() < 0.1
    assert np.abs(found["thermostat.scan.error"]).max() <= 0.05
    assert (found["thermostat.scan.error_std"] > 0).all()
    assert np.all(np.diff(found["thermostat.scan.time"]) > 0)

    from sipyco.pc_rpc import Client
    c = ctl.connect(Client)
    try:
        # the scan engaged the PID itself, so it stays at the last point...
        assert c.get_pid()[0]["target"] == pytest.approx(SCAN[-1])
        c.set_target(0, 27.0)
        artiq_run(tmp_path, device_db, "setpoint_scan.py", "hold_s=1.0")
        # ...and puts back a target that was there before it
        assert c.get_pid()[0]["target"] == pytest.approx(27.0)
    finally:
        c.close_rpc()


def test_settle_and_step_test(controller, tmp_path):
    _, device_db = controller
    settled = datasets(artiq_run(tmp_path, device_db, "settle.py"))
    assert settled["thermostat.settled_temperature"] == pytest.approx(25.0, abs=0.01)
    step = datasets(artiq_run(tmp_path, device_db, "step_test.py"))
    assert step["thermostat.step.start"] == pytest.approx(25.0)
    assert step["thermostat.step.target"] == pytest.approx(26.0)
    for leg in ("up", "down"):
        assert step["thermostat.step.{}.rise_time_s".format(leg)] > 0
        assert step["thermostat.step.{}.overshoot_k".format(leg)] >= 0
        assert np.isfinite(step["thermostat.step.{}.settling_time_s".format(leg)])
        assert len(step["thermostat.step.{}.data.temperature".format(leg)]) > 10


def test_autotune_stores_model_and_gains(controller, tmp_path):
    _, device_db = controller
    found = datasets(artiq_run(tmp_path, device_db, "autotune.py"))
    from thermostat_ctrl.procedures.autotune import autotune
    default = inspect.signature(autotune).parameters["rule"].default
    assert found["thermostat.autotune.rule"] == default.encode()
    for gain in ("kp", "ki", "kd"):
        assert found["thermostat.autotune.gains." + gain] > 0
    assert found["thermostat.autotune.ku"] > 0 and found["thermostat.autotune.pu"] > 0
    assert any(key.startswith("thermostat.autotune.model.") for key in found)
    assert found["thermostat.autotune.applied"] == False  # noqa: E712 (a numpy bool)


def test_monitor_publishes_live_values(controller, tmp_path):
    _, device_db = controller
    # By default it runs until terminated; artiq_run has no terminate, so 2 s.
    found = datasets(artiq_run(tmp_path, device_db, "monitor.py", "duration_s=2"))
    for ch in (0, 1):
        key = "thermostat.thermostat.ch{}.".format(ch)
        assert found[key + "temperature"] == pytest.approx(25.0, abs=0.5)
        assert found[key + "state"] == b"off"  # a fresh simulator: the PID is off
        assert np.isnan(found[key + "target"])
        times, temperatures = found[key + "window_time"], found[key + "window_temperature"]
        assert len(times) == len(temperatures) >= 2 and times[-1] == 0 and times[0] < 0


def test_unreachable_controller_is_a_clear_error(tmp_path):
    require_artiq()
    from harness import free_port
    device_db = write_device_db(tmp_path / "device_db.py",
                                {"thermostat": controller_entry(free_port())})
    with pytest.raises(AssertionError) as failed:
        artiq_run(tmp_path, device_db, "setpoint_scan.py")
    assert "ThermostatUnreachable: device_db entry 'thermostat'" in str(failed.value)
    assert "is aqctl_thermostat running" in str(failed.value)


# ----------------------------------------------------------------- master

@pytest.fixture
def master(controller, tmp_path):
    _, device_db = controller
    m = Master(tmp_path, device_db)
    yield m
    m.stop()


def run_status(master: Master, rid: int):
    """The run's status in the master's schedule (None once it is gone)."""
    schedule = master.rpc("schedule")
    try:
        entry = schedule.get_status().get(rid)
    finally:
        schedule.close_rpc()
    return None if entry is None else entry["status"]


def test_master_monitor_yields_to_a_scan_and_resumes(master):
    monitor = master.submit("monitor.py", priority=-10)
    wait_until(lambda: run_status(master, monitor) == "running", 60,
               "the monitor to run\n" + master.log())
    datasets_db = master.rpc("dataset_db")
    try:
        wait_until(lambda: _has(datasets_db), 30, "the monitor's datasets in the master")
    finally:
        datasets_db.close_rpc()

    scan = master.submit("setpoint_scan.py", priority=0)
    wait_until(lambda: run_status(master, monitor) == "paused", 60,
               "the monitor to pause for the scan\n" + master.log())
    wait_until(lambda: run_status(master, scan) is None, 300, "the scan to end\n" + master.log())
    assert datasets(master.results(scan))["thermostat.scan.setpoint"] == pytest.approx(SCAN)
    wait_until(lambda: run_status(master, monitor) == "running", 60,
               "the monitor to resume after the scan\n" + master.log())
    shown = master.shown_datasets("thermostat.thermostat.ch1.window_temperature")
    assert "thermostat.thermostat.ch0.temperature" in shown

    master.client("delete", str(monitor))  # terminates it
    wait_until(lambda: run_status(master, monitor) is None, 60, "the monitor to stop")


def _has(dataset_db) -> bool:
    try:
        dataset_db.get("thermostat.thermostat.ch0.temperature")
    except KeyError:
        return False
    return True


# ------------------------------------------------- multi-device controller

def test_ctlmgr_runs_one_controller_for_two_devices(tmp_path):
    require_artiq()
    from harness import free_port
    from sipyco.pc_rpc import Client
    port = free_port()
    device_db = write_device_db(tmp_path / "device_db.py", {
        "laser": {**controller_entry(port, "laser", controller_command(
            "--simulation", "laser", "cavity")), "ping_timer": 2},
        "cavity": {"type": "controller_aux_target", "controller": "laser",
                   "target_name": "cavity"},
    })
    master = Master(tmp_path, device_db)
    ctlmgr = Ctlmgr(tmp_path, master)
    try:
        def connect():
            try:
                return Client("127.0.0.1", port, "cavity", timeout=10)
            except OSError:
                return None
        cavity = wait_until(connect, 60, "artiq_ctlmgr to start the controller\n"
                            + ctlmgr.log())
        laser = Client("127.0.0.1", port, "laser", timeout=10)
        try:
            assert sorted(laser.get_rpc_id()[0]) == ["cavity", "laser"]
            laser.set_target(0, 30.0)
            cavity.set_target(0, 20.0)
            assert laser.get_pid()[0]["target"] == pytest.approx(30.0)
            assert cavity.get_pid()[0]["target"] == pytest.approx(20.0)
            assert laser.ping() is True and cavity.ping() is True
            with pytest.raises(ValueError, match="safe window"):
                cavity.set_target(1, 95.0)
        finally:
            laser.close_rpc()
            cavity.close_rpc()
        # an experiment reaches the aux target through the device_db
        rid = master.submit("setpoint_scan.py", 'device="cavity"', "hold_s=1.0")
        wait_until(lambda: run_status(master, rid) is None, 300, "the scan on the cavity\n"
                   + master.log())
        assert datasets(master.results(rid))["thermostat.scan.setpoint"] == pytest.approx(SCAN)
        # the manager pings every 2 s: a failed ping would restart the controller
        wait_until(lambda: ctlmgr.log().count("pinging controller laser") >= 3, 60,
                   "three pings\n" + ctlmgr.log())
        assert ctlmgr.log().count("Starting controller laser") == 1, ctlmgr.log()
    finally:
        ctlmgr.stop()
        master.stop()
        _terminate_leftover(port)


def _terminate_leftover(port: int) -> None:
    """End a controller the manager left running (seen once on a loaded machine)."""
    from sipyco.pc_rpc import Client
    try:
        leftover = Client("127.0.0.1", port, "laser", timeout=10)
    except OSError:
        return
    try:
        leftover.terminate()
    except (OSError, EOFError):
        pass
