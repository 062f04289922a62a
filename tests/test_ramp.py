"""Setpoint ramps: the rate and the end, refusal of a rate of 0 or
below, a lost connection (resumed), a device reset (stopped, the target
named), wait_settled following the ramp's end; the RPC and CLI front ends."""

import asyncio

import pytest

from procedures_kit import EXAMPLE_GAINS, bench
from thermostat_ctrl import cli, procedures
from thermostat_ctrl.rpc import ThermostatRPC

SPEED = 100.0


async def _ramping(b, target: float, rate: float, until, **options):
    """Start a ramp of channel 0; return (task, progress list) once ``until(progress)``."""
    seen = []
    reached = asyncio.Event()

    def progress(p):
        seen.append(dict(p))
        if until(p):
            reached.set()
    task = asyncio.ensure_future(procedures.ramp(b.driver, 0, target, rate,
                                                 on_progress=progress, **options))
    waiter = asyncio.ensure_future(reached.wait())
    await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert reached.is_set(), "the ramp never got there: {}".format(seen[-1:])
    return task, seen


async def test_the_target_moves_at_the_rate_and_ends_on_the_target():
    async with bench(SPEED) as b:
        await procedures.power_up(b.driver, 0, 25.0, **EXAMPLE_GAINS)
        seen = []
        done = await asyncio.wait_for(procedures.ramp(b.driver, 0, 26.0, 0.05,
                                                      on_progress=seen.append), 60)
        assert (await b.driver.get_pid())[0]["target"] == 26.0
    assert done["start"] == 25.0 and done["target"] == 26.0 and done["rate"] == 0.05
    ramping = [p for p in seen if p["state"] == "ramping"]
    assert ramping[-1]["setpoint"] == 26.0 and seen[-1]["state"] == "done"
    # on the schedule of the rate all the way: 1 K at 0.05 K/s takes 20 s
    for p in ramping[:-1]:
        assert p["setpoint"] == pytest.approx(25.0 + 0.05 * p["elapsed_s"], abs=1e-6)
    assert ramping[-2]["elapsed_s"] < 20.0 <= done["duration_s"] + 1e-9
    for a, b_ in zip(ramping, ramping[1:]):  # never faster than the rate, never back
        step = b_["setpoint"] - a["setpoint"]
        assert 0 < step <= 0.05 * (b_["elapsed_s"] - a["elapsed_s"]) + 1e-9
    assert done["steps"] == len(ramping)


@pytest.mark.parametrize("rate", [0, -0.1, float("nan")])
async def test_a_rate_of_zero_or_below_is_refused_before_anything_is_sent(rate):
    async with bench(SPEED) as b:
        await b.driver.set_target(0, 25.0)
        with pytest.raises(ValueError, match="rate"):
            await procedures.ramp(b.driver, 0, 26.0, rate)
        assert (await b.driver.get_pid())[0]["target"] == 25.0


async def test_a_lost_connection_resumes_from_the_target_the_device_holds():
    async with bench(SPEED) as b:
        await procedures.power_up(b.driver, 0, 25.0, **EXAMPLE_GAINS)
        task, seen = await _ramping(b, 26.0, 0.05, lambda p: p["setpoint"] > 25.3)
        b.sim.faults.refuse = True  # the device is away for a while, then comes back
        b.sim.drop_connections()
        asyncio.get_running_loop().call_later(0.3, setattr, b.sim.faults, "refuse", False)
        done = await asyncio.wait_for(task, 60)
        assert (await b.driver.get_pid())[0]["target"] == 26.0
    assert done["target"] == 26.0
    assert any(p["state"] == "reconnecting" for p in seen)
    setpoints = [p["setpoint"] for p in seen if p["state"] == "ramping"]
    assert setpoints == sorted(setpoints)  # resumed where it was, never back to the start


async def test_a_device_reset_stops_the_ramp_and_names_the_target_it_holds():
    async with bench(SPEED) as b:
        await procedures.power_up(b.driver, 0, 25.0, **EXAMPLE_GAINS)
        task, _ = await _ramping(b, 26.0, 0.05, lambda p: p["setpoint"] > 25.3)
        b.sim.reset()  # reboots with the boot defaults: target 0 degC, PID off
        with pytest.raises(procedures.ProcedureError, match="rebooted.*stopped") as e:
            await asyncio.wait_for(task, 60)
        now = (await b.driver.get_pid())[0]["target"]
        engaged = (await b.driver.report())[0]["pid_engaged"]
    assert "target is now {:.4f} degC".format(now) in str(e.value)
    assert ("PID is not engaged" in str(e.value)) is (not engaged)


async def test_a_device_away_too_long_names_the_last_target_set():
    async with bench(SPEED) as b:
        await b.driver.set_target(0, 25.0)
        task, _ = await _ramping(b, 26.0, 0.05, lambda p: p["setpoint"] > 25.1, retry_s=0.5)
        b.sim.faults.refuse = True
        b.sim.drop_connections()
        with pytest.raises(ConnectionError, match=r"last set to 25\.\d+ degC") as e:
            await asyncio.wait_for(task, 30)
        b.sim.faults.refuse = False
        assert "stopped" in str(e.value)


async def test_wait_settled_follows_the_ramp_to_its_end():
    async with bench(SPEED) as b:
        await procedures.power_up(b.driver, 0, 25.0, **EXAMPLE_GAINS)
        await procedures.wait_settled(b.driver, 0, tolerance=0.02, settle_s=5)
        ramp = asyncio.ensure_future(procedures.ramp(b.driver, 0, 25.3, 0.01))
        # the example gains follow 0.01 K/s within about 50 mK, well inside the tolerance:
        # only a target that stops changing, the ramp's end, may settle
        done = await asyncio.wait_for(procedures.wait_settled(
            b.driver, 0, tolerance=0.1, settle_s=5), 60)
        assert ramp.done()
        await ramp
    assert done["target"] == 25.3


async def test_rpc_set_target_with_a_ramp_progress_and_abort():
    async with bench(SPEED) as b:
        rpc = ThermostatRPC(b.driver)
        await rpc.set_target(0, 25.0)
        assert (await rpc.set_target(0, 25.2, ramp=0.1))["target"] == 25.2
        assert (await rpc.get_pid())[0]["target"] == 25.2
        with pytest.raises(ValueError, match="rate"):
            await rpc.set_target(0, 26.0, ramp=0)
        task = asyncio.ensure_future(rpc.ramp(0, 30.0, 0.05))

        async def halfway():
            while ((rpc.autotune_progress(0) or {}).get("setpoint") or 0) < 25.4:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(halfway(), 30)
        progress = rpc.autotune_progress(0)
        assert progress["procedure"] == "ramp" and progress["target"] == 30.0
        assert rpc.abort(0) is True
        with pytest.raises(RuntimeError, match="aborted.*stays at") as e:
            await asyncio.wait_for(task, 30)
        assert type(e.value) is RuntimeError
        held = (await rpc.get_pid())[0]["target"]
        assert 25.4 <= held < 30.0 and "{:.4f}".format(held) in str(e.value)


def test_cli_ramps_and_refuses_a_rate_of_zero(capsys):
    assert cli.main(["--simulation", "--speed", str(SPEED), "set-target", "0", "1.5",
                     "--ramp", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "target 1.5 degC reached from 0.0 degC at 0.5 K/s" in out
    assert cli.main(["--simulation", "set-target", "0", "1", "--ramp", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--ramp" in err
