"""Procedures other than autotune: wait_settled, b-parameter units, the safe
window, step_response and its figures; the RPC facade's procedure jobs."""

import asyncio

import numpy as np
import pytest

from procedures_kit import EXAMPLE_GAINS, bench
from thermostat_ctrl import procedures
from thermostat_ctrl.rpc import ThermostatRPC

SPEED = 100.0


async def test_wait_settled_follows_a_changed_target():
    async with bench(SPEED) as b:
        await procedures.power_up(b.driver, 0, 25.0, **EXAMPLE_GAINS)
        waiting = asyncio.ensure_future(procedures.wait_settled(
            b.driver, 0, tolerance=0.02, settle_s=20, timeout_s=600))
        await asyncio.sleep(0.05)
        await b.driver.set_target(0, 26.0)  # another client moves the target
        done = await asyncio.wait_for(waiting, 30)
        assert done["target"] == 26.0
        assert abs(done["temperature"] - 26.0) <= 0.02
        assert abs(b.sim.true_temperature(0) - 26.0) < 0.05


async def test_wait_settled_refuses_settle_longer_than_timeout():
    async with bench(SPEED) as b:
        with pytest.raises(ValueError, match="settle_s"):
            await procedures.wait_settled(b.driver, 0, settle_s=60, timeout_s=30)


async def test_b_parameter_t0_reads_back_in_the_unit_it_is_set_in():
    async with bench(SPEED) as b:
        t0 = (await procedures.get_b_parameter(b.driver))[0]["params"]["t0"]
        assert t0 == pytest.approx(25.0)
        await b.driver.set_b_parameter(0, t0=t0)  # writing back what was read changes nothing
        assert (await b.driver.get_b_parameter())[0]["params"]["t0"] == pytest.approx(298.15)


@pytest.mark.parametrize("target,window", [(85.0, procedures.SAFE_WINDOW), (-11.0,
                                           procedures.SAFE_WINDOW), (30.0, (0.0, 29.0))])
async def test_targets_outside_the_safe_window_are_refused(target, window):
    async with bench(SPEED) as b:
        with pytest.raises(ValueError, match="target .* safe window"):
            await procedures.power_up(b.driver, 0, target, safe_window=window)
        assert (await b.driver.get_pid())[0]["target"] == 0.0  # nothing was sent


async def test_a_wider_window_allows_the_target():
    async with bench(SPEED) as b:
        await procedures.power_up(b.driver, 0, 85.0, safe_window=(-10, 90))
        assert (await b.driver.get_pid())[0]["target"] == 85.0


async def test_step_response_of_the_example_gains():
    async with bench(SPEED) as b:
        await procedures.power_up(b.driver, 0, 25.0, **EXAMPLE_GAINS)
        r = await procedures.step_response(b.driver, 0, 1.0, band=0.02, hold_s=10)
        assert r["start"] == 25.0 and r["target"] == 26.0
        up, down = r["up"], r["down"]
        for f in (up, down):
            assert 0 < f["rise_time_s"] < f["settling_time_s"] < 300
            assert 0.001 < f["steady_std_k"] < 0.01
        assert up["overshoot_k"] > 0.05  # these gains do overshoot on this plant
        assert (await b.driver.get_pid())[0]["target"] == 25.0  # and back


def test_step_metrics_on_a_known_curve():
    t = np.arange(0, 100, 0.1)
    y = 25 + 2 * (1 - np.exp(-t / 5))
    f = procedures.step_metrics(t, y, 25.0, 27.0, band=0.01, smooth_s=0.1)
    assert f["rise_time_s"] == pytest.approx(5 * np.log(9), abs=0.15)
    assert f["overshoot_k"] == 0.0
    assert f["settling_time_s"] == pytest.approx(5 * np.log(200), abs=0.15)
    assert f["steady_error_k"] == pytest.approx(0.0, abs=1e-3)
    bump = y + 0.2 * np.exp(-((t - 60) / 3) ** 2)
    f = procedures.step_metrics(t, bump, 25.0, 27.0, band=0.01, smooth_s=0.1)
    assert f["overshoot_k"] == pytest.approx(0.2, abs=0.01)
    assert f["settling_time_s"] > 60
    down = procedures.step_metrics(t, 52 - y, 27.0, 25.0, band=0.01, smooth_s=0.1)
    assert down["rise_time_s"] == pytest.approx(f["rise_time_s"], abs=0.15)


async def test_rpc_progress_abort_and_busy_channel():
    async with bench(20.0) as b:
        rpc = ThermostatRPC(b.driver)
        await rpc.power_up(0, 25.0, **EXAMPLE_GAINS)
        assert rpc.autotune_progress(0) is None and rpc.abort(0) is False
        tune = asyncio.ensure_future(rpc.autotune(0, 25.0))

        async def relay_running():
            while (rpc.autotune_progress(0) or {}).get("state") != "relay":
                await asyncio.sleep(0.01)
        await asyncio.wait_for(relay_running(), 30)
        progress = rpc.autotune_progress(0)
        assert progress["procedure"] == "autotune" and progress["elapsed_s"] > 0
        assert await asyncio.wait_for(rpc.ping(), 1.0) is True  # not blocked
        with pytest.raises(RuntimeError, match="busy") as e:
            await rpc.step_response(0, 1.0)
        assert type(e.value) is RuntimeError
        assert rpc.abort(0) is True
        with pytest.raises(RuntimeError, match="aborted") as e:
            await asyncio.wait_for(tune, 30)
        assert type(e.value) is RuntimeError  # a builtin, as sipyco carries it
        assert rpc.autotune_progress(0) is None
        assert (await b.driver.report())[0]["pid_engaged"] is True
