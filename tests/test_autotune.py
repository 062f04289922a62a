"""Autotune on the simulator at high --speed: the proof of issue 12 point 7
(three plants, 2 K step), every abort restoring the channel, the per-sample
conversion against the simulator's firmware PID."""

import asyncio

import numpy as np
import pytest

from procedures_kit import EXAMPLE_GAINS, PLANTS, bench, state
from thermostat_ctrl import procedures
from thermostat_ctrl.procedures import tuning
from thermostat_ctrl.simulator.physics import Pid

SPEED = 100.0


async def _step(driver, gains: dict, output=(-2.0, 2.0)) -> dict:
    await procedures.power_up(driver, 0, 25.0, **gains)
    await driver.set_pid_params(0, output_min=output[0], output_max=output[1])
    return await procedures.step_response(driver, 0, 2.0, band=0.01, duration_s=300,
                                          hold_s=20)


@pytest.mark.parametrize("plant", list(PLANTS))
async def test_autotuned_gains_settle_a_2k_step(plant):
    async with bench(SPEED, PLANTS[plant]) as b:
        result = await procedures.autotune(b.driver, 0, 25.0)
        assert result["rule"] == "simc" and result["applied"] is False
        assert (await b.driver.get_pid())[0]["parameters"]["kp"] == 0.0  # only reported
        ours = await _step(b.driver, result["gains"],
                           (result["output_min"], result["output_max"]))
        example = await _step(b.driver, EXAMPLE_GAINS)
    for figures in (ours["up"], ours["down"]):
        assert figures["settling_time_s"] is not None and figures["settling_time_s"] < 300
        assert figures["overshoot_k"] < 0.1
    slowest_example = example["up"]["settling_time_s"] or np.inf
    assert ours["up"]["settling_time_s"] <= slowest_example


async def test_result_reports_rules_model_and_data():
    async with bench(SPEED) as b:
        seen = []
        r = await procedures.autotune(b.driver, 1, 26.0, rule="ziegler-nichols",
                                      apply=True, engage=True, on_progress=seen.append)
        assert set(r["rules"]) == set(procedures.RULE_NAMES)
        zn = tuning.RULES["ziegler-nichols"]
        assert r["gains_per_second"]["kp"] == pytest.approx(zn[0] * r["ku"])
        assert r["gains"]["ki"] == pytest.approx(zn[1] * r["ku"] / r["pu"]
                                                 * r["sample_period_s"])
        assert r["gains"]["kd"] == pytest.approx(zn[2] * r["ku"] * r["pu"]
                                                 / r["sample_period_s"])
        assert r["sample_period_s"] == pytest.approx(0.119, abs=0.002)
        assert {"K", "T", "L"} <= set(r["model"]) and r["model"]["L"] > 0
        assert 0.001 < r["noise_k"] < 0.006  # the simulator's 3 mK
        assert len(r["data"]["time"]) == len(r["data"]["temperature"]) > 100
        assert max(r["data"]["current"]) <= 1.0 + 0.01 and min(r["data"]["current"]) >= -1.01
        states = [p["state"] for p in seen]
        assert states[0] == "noise" and "relay" in states and states[-1] == "done"
        assert any(p.get("remaining_s") for p in seen)
        pid = (await b.driver.get_pid())[1]
        assert pid["parameters"]["kp"] == pytest.approx(r["gains"]["kp"], rel=1e-6)
        assert pid["parameters"]["output_max"] == pytest.approx(1.0)
        assert pid["target"] == 26.0 and (await b.driver.report())[1]["pid_engaged"]


async def test_zero_limits_are_refused_before_anything_is_sent():
    async with bench(SPEED, limits=False) as b:
        before = await state(b.driver, 0)
        with pytest.raises(ValueError, match="output limits"):
            await procedures.autotune(b.driver, 0, 25.0)
        assert await state(b.driver, 0) == before


# ----------------------------------------------------------------- aborts

async def _prepare(driver) -> dict:
    """A channel regulating at 25 degC with the example gains: the state to restore."""
    await procedures.power_up(driver, 0, 25.0, **EXAMPLE_GAINS)
    return await state(driver, 0)


async def _during(b, state_name: str, act, **autotune_args):
    """Run autotune, call ``act()`` once it reaches ``state_name``; return the error."""
    reached = asyncio.Event()

    def progress(p):
        if p["state"] == state_name:
            reached.set()
    tune = asyncio.ensure_future(procedures.autotune(b.driver, 0, 25.0, on_progress=progress,
                                                     **autotune_args))
    waiter = asyncio.ensure_future(reached.wait())
    await asyncio.wait([tune, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    assert reached.is_set(), "autotune never reached " + state_name
    await act()
    with pytest.raises(Exception) as e:
        await asyncio.wait_for(tune, 30)
    return e


async def test_abort_by_the_caller_restores():
    async with bench(SPEED) as b:
        before = await _prepare(b.driver)
        abort = asyncio.Event()

        async def act():
            abort.set()
        e = await _during(b, "relay", act, abort=abort)
        assert isinstance(e.value, procedures.Aborted)
        assert await state(b.driver, 0) == before


async def test_cancellation_restores():
    async with bench(SPEED) as b:
        before = await _prepare(b.driver)
        relay = asyncio.Event()
        tune = asyncio.ensure_future(procedures.autotune(
            b.driver, 0, 25.0, on_progress=lambda p: p["state"] == "relay" and relay.set()))
        await asyncio.wait_for(relay.wait(), 30)
        tune.cancel()  # what Ctrl-C does to the CLI's task
        with pytest.raises(asyncio.CancelledError):
            await tune
        assert await state(b.driver, 0) == before


async def test_open_thermistor_restores():
    async with bench(SPEED) as b:
        before = await _prepare(b.driver)

        async def act():
            b.sim.faults.unplugged = {0}
        e = await _during(b, "relay", act)
        assert "thermistor" in str(e.value) and isinstance(e.value, RuntimeError)
        b.sim.faults.unplugged = set()
        assert await state(b.driver, 0) == before


async def test_lost_connection_restores():
    async with bench(SPEED) as b:
        before = await _prepare(b.driver)

        async def act():  # the device vanishes for a while, then comes back
            b.sim.faults.refuse = True
            b.sim.drop_connections()
            asyncio.get_running_loop().call_later(1.0, setattr, b.sim.faults, "refuse", False)
        e = await _during(b, "relay", act)
        assert isinstance(e.value, ConnectionError)
        assert await state(b.driver, 0) == before


async def test_leaving_the_window_restores():
    async with bench(SPEED) as b:
        before = await _prepare(b.driver)
        # 1 A swings a light plant far more than 20 mK
        with pytest.raises(procedures.ProcedureError, match="window"):
            await procedures.autotune(b.driver, 0, 25.0, amplitude=1.0, window=0.02)
        assert await state(b.driver, 0) == before


async def test_timeout_restores():
    async with bench(SPEED) as b:
        before = await _prepare(b.driver)
        with pytest.raises(TimeoutError, match="timeout_s"):
            await procedures.autotune(b.driver, 0, 25.0, timeout_s=15)
        assert await state(b.driver, 0) == before


async def test_no_convergence_restores():
    async with bench(SPEED) as b:
        before = await _prepare(b.driver)
        # a noise band of 1 mK (a third of the noise): noise-triggered switching
        with pytest.raises(procedures.ProcedureError, match="converge|noise band"):
            await procedures.autotune(b.driver, 0, 25.0, hysteresis=0.001, amplitude=0.02,
                                      cycles=8, max_cycles=8)
        assert await state(b.driver, 0) == before


# ------------------------------------------------------- unit conversion

def test_per_sample_gains_match_the_firmware_pid():
    """The simulator's firmware PID with to_per_sample() gains reproduces a
    per-second PID (backward differences) on an arbitrary temperature trace."""
    ts = 0.119
    per_second = {"kp": 1.3, "ki": 0.21, "kd": 0.57}
    pid = Pid()
    for k, v in tuning.to_per_sample(per_second, ts).items():
        setattr(pid, k, v)
    pid.output_min, pid.output_max = -1e9, 1e9
    pid.target = 25.0
    rng = np.random.default_rng(1)
    x = 25 + np.cumsum(rng.normal(0, 0.01, 400)) + 0.3 * np.sin(np.arange(400) * 0.05)
    fw = np.array([pid.update(v) for v in x])
    e = x - 25.0
    continuous = (per_second["kp"] * e + per_second["ki"] * ts * np.cumsum(e)
                  + per_second["kd"] * np.diff(e, prepend=e[0]) / ts)
    # the firmware's output starts at 0 for the first sample's error: compare increments
    assert np.allclose(np.diff(fw), np.diff(continuous), atol=1e-9)


def test_noise_sigma_ignores_drift():
    rng = np.random.default_rng(2)
    x = np.linspace(20, 25, 500) + 0.001 * np.linspace(0, 10, 500) ** 2 + rng.normal(0, 0.003,
                                                                                       500)
    assert tuning.noise_sigma(x) == pytest.approx(0.003, rel=0.15)
