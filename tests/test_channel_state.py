"""The controller's safe target window and its non-blocking ``channel_state``
(thermostat_ctrl.rpc, thermostat_ctrl.procedures.watch) against the
in-process simulator, called as sipyco would call them."""

import asyncio
import json

import pytest

from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.procedures.watch import Point, summarize
from thermostat_ctrl.rpc import ThermostatRPC
from thermostat_ctrl.simulator import Simulator

GAINS = {"kp": 0.45, "ki": 0.012, "kd": 4.3}
LIMITS = {"max_i_pos": 1.5, "max_i_neg": 1.5, "max_v": 4.0}


@pytest.fixture
async def rig():
    """(simulator at 50x, driver, a facade with the default window)."""
    sim = Simulator(speed=50, seed=3)
    await sim.start(host="127.0.0.1", port=0)
    driver = Thermostat("127.0.0.1", sim.port, timeout=0.5, backoff_max=0.1)
    yield sim, driver, ThermostatRPC(driver)
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()
    await driver.close()
    await sim.stop()


async def until(condition, timeout: float = 60.0):
    """Await ``condition()`` until it returns something truthy; return that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await condition()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- safe window

async def test_set_target_outside_the_window_is_refused_and_nothing_sent(rig):
    _, driver, rpc = rig
    await rpc.set_target(0, 26.0)
    with pytest.raises(ValueError, match="100.0 degC is outside the safe window -10.0..80.0"):
        await rpc.set_target(0, 100.0)
    assert (await driver.get_pid())[0]["target"] == pytest.approx(26.0)
    assert rpc.safe_window() == [-10.0, 80.0]


async def test_the_controller_window_bounds_every_way_to_set_a_target(rig):
    _, driver, _ = rig
    rpc = ThermostatRPC(driver, safe_window=(15.0, 35.0))
    with pytest.raises(ValueError, match="outside the safe window 15.0..35.0"):
        await rpc.set_target(1, 40.0)
    with pytest.raises(ValueError, match="outside the safe window 15.0..35.0"):
        await rpc.power_up(0, 10.0, **GAINS, **LIMITS)
    with pytest.raises(ValueError, match="reaches beyond the controller's safe window"):
        await rpc.power_up(0, 50.0, safe_window=[-10, 80])
    with pytest.raises(ValueError, match="reaches beyond"):
        await rpc.autotune(0, 30.0, safe_window=[0, 40])
    with pytest.raises(ValueError, match="target \\+ delta 40.0 degC is outside"):
        await rpc.step_response(0, 40.0)  # from the fresh device's target 0
    with pytest.raises(ValueError, match="outside the safe window 15.0..35.0"):
        await rpc.ramp(0, 40.0, 1.0)
    with pytest.raises(ValueError, match="outside the safe window 15.0..35.0"):
        await rpc.set_target(0, 40.0, ramp=1.0)
    # a narrower window of the call's own still applies
    with pytest.raises(ValueError, match="outside the safe window 20.0..30.0"):
        await rpc.power_up(0, 31.0, safe_window=[20, 30])
    assert [p["target"] for p in await driver.get_pid()] == [0.0, 0.0]  # nothing was set
    await rpc.set_target(1, 34.5)
    assert (await driver.get_pid())[1]["target"] == pytest.approx(34.5)


@pytest.mark.parametrize("window", [(30, 20), (1,), "wide", (float("nan"), 5)])
def test_a_bad_controller_window_is_a_value_error(window):
    with pytest.raises(ValueError, match="safe_window"):
        ThermostatRPC(None, safe_window=window)


# ------------------------------------------------------------- channel_state

async def test_channel_state_follows_settling_and_a_new_target(rig):
    sim, _, rpc = rig
    await rpc.power_up(0, 27.0, **GAINS, **LIMITS)
    first = await rpc.channel_state(0, 0.05, 5.0)
    json.dumps(first, allow_nan=False)
    assert first["samples"] >= 1 and first["target"] == pytest.approx(27.0)

    async def settled():
        state = await rpc.channel_state(0, 0.05, 5.0)
        return state if state["settled"] else None

    state = await until(settled)
    assert state["in_band"] and state["pid_engaged"]
    assert state["in_band_s"] >= 5.0
    assert state["in_band_since"] == pytest.approx(state["time"] - state["in_band_s"])
    assert abs(state["error_mean"]) <= 0.05 and 0 < state["error_std"] < 0.05
    assert state["window_s"] <= 5.0 and state["samples"] >= 3
    assert abs(sim.true_temperature(0) - 27.0) < 0.3

    await rpc.set_target(0, 29.0)

    async def left():
        state = await rpc.channel_state(0, 0.05, 5.0)
        return state if state["target"] == pytest.approx(29.0) else None

    moved = await until(left)
    assert moved["in_band"] is False and moved["settled"] is False
    assert moved["in_band_since"] is None and moved["in_band_s"] == 0.0
    assert moved["error"] < -1.0


async def test_channel_state_answers_from_memory_while_the_device_hangs(rig):
    sim = rig[0]
    # a patient driver: the sampler waits 10 s for the hung device before failing
    driver = Thermostat("127.0.0.1", sim.port, timeout=10.0)
    rpc = ThermostatRPC(driver)
    await rpc.channel_state(1, 0.1, 1.0)
    sim.faults.hang = True

    async def stale():
        state = await rpc.channel_state(1, 0.1, 1.0)
        return state if state["age_s"] > 0.2 else None

    # each call returns (the sampler waits for the hung device meanwhile); the
    # answer grows older instead of blocking
    state = await until(stale, timeout=5.0)
    assert state["channel"] == 1
    sim.faults.hang = False
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()
    await driver.close()


async def test_channel_state_of_a_device_that_is_gone_is_a_connection_error(rig):
    sim, _, rpc = rig
    await sim.stop()
    with pytest.raises(ConnectionError):
        await rpc.channel_state(0)


async def test_channel_state_with_the_pid_off_is_never_in_band(rig):
    _, _, rpc = rig
    await rpc.set_current(0, 0.0)
    state = await rpc.channel_state(0, 100.0, 0.0)
    assert state["pid_engaged"] is False and state["in_band"] is False


@pytest.mark.parametrize("args,word", [((0, 0.0, 1.0), "tolerance"), ((0, 0.1, -1), "hold_s"),
                                       ((0, 0.1, 4000), "hold_s"), ((2, 0.1, 1), "channel")])
async def test_channel_state_bad_arguments(rig, args, word):
    with pytest.raises(ValueError, match=word):
        await rig[2].channel_state(*args)


def test_summarize_streak_window_and_spread():
    points = [Point(t, 25.0 + e, 25.0, True, 0.0) for t, e in
              [(0, 0.5), (1, 0.02), (2, -0.02), (3, 0.02), (4, -0.02)]]
    s = summarize(points, 0, 0.05, 2.0, now=1.5)
    assert s["in_band_since"] == 1 and s["in_band_s"] == 3 and s["settled"] is True
    assert s["samples"] == 3 and s["window_s"] == 2
    assert s["error_mean"] == pytest.approx(-0.02 / 3)
    assert s["age_s"] == 1.5
    broken = points[:3] + [Point(3, None, 25.0, True, 0.0)] + points[4:]
    s = summarize(broken, 0, 0.05, 2.0, now=0.0)
    assert s["in_band_since"] == 4 and s["settled"] is False and s["samples"] == 3
    assert s["error_mean"] == pytest.approx(-0.02) and s["error_std"] == pytest.approx(0.0)
