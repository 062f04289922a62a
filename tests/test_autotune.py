"""Autotune on the simulator at high --speed: tuned gains settle a 2 K step
on three plants, the model and gains repeat over noise seeds, every
abort restoring the channel, no gains without a confident model, the
per-sample conversion against the simulator's firmware PID, the model fit and
the design on known models."""

import asyncio

import numpy as np
import pytest

from procedures_kit import EXAMPLE_GAINS, PLANTS, bench, state
from thermostat_ctrl import procedures
from thermostat_ctrl.procedures import design, model, tuning
from thermostat_ctrl.simulator.physics import NOISE_K, Pid

SPEED = 40.0  # a loaded host stalls for tens of ms: at 100x a light plant runs away meanwhile


async def _step(driver, gains: dict, output=(-2.0, 2.0)) -> dict:
    await procedures.power_up(driver, 0, 25.0, **gains)
    await driver.set_pid_params(0, output_min=output[0], output_max=output[1])
    return await procedures.step_response(driver, 0, 2.0, band=0.01, duration_s=300,
                                          hold_s=20)


#: The plants, the heavy one (several simulated minutes per autotune) marked slow.
HEAVY_SLOW = [pytest.param(p, marks=pytest.mark.slow) if p == "heavy" else p for p in PLANTS]


@pytest.mark.parametrize("plant", HEAVY_SLOW)
async def test_autotuned_gains_settle_a_2k_step(plant):
    async with bench(SPEED, PLANTS[plant]) as b:
        result = await procedures.autotune(b.driver, 0, 25.0)
        assert result["rule"] == "designed" and result["applied"] is False
        assert (await b.driver.get_pid())[0]["parameters"]["kp"] == 0.0  # only reported
        ours = await _step(b.driver, result["gains"],
                           (result["output_min"], result["output_max"]))
        example = await _step(b.driver, EXAMPLE_GAINS)
    for figures in (ours["up"], ours["down"]):
        assert figures["settling_time_s"] is not None and figures["settling_time_s"] < 300
        assert figures["overshoot_k"] < 0.05
    slowest_example = example["up"]["settling_time_s"] or np.inf
    assert ours["up"]["settling_time_s"] <= slowest_example


@pytest.mark.parametrize("plant", HEAVY_SLOW)
async def test_model_and_gains_repeat_over_noise_seeds(plant):
    """The same plant, different noise: the model and the default
    rule's gains agree within ±10 %."""
    runs = []
    for seed in (11, 12, 13):
        async with bench(SPEED, PLANTS[plant], seed=seed) as b:
            runs.append(await procedures.autotune(b.driver, 0, 25.0))
    figures = {k: [r["model"][k] for r in runs] for k in ("K", "T", "L")}
    figures.update({k: [r["gains"][k] for r in runs] for k in ("kp", "ki", "kd")})
    for name, values in figures.items():
        mean = np.mean(values)
        assert np.max(np.abs(np.array(values) / mean - 1)) < 0.10, (name, values)
    for r in runs:
        assert max(r["model"]["errors"].values()) < model.CONFIDENCE
        assert r["noise_k"] == pytest.approx(NOISE_K, rel=0.1)  # the gains' noise budget
        assert r["output_noise_a"] <= design.OUTPUT_NOISE * 1.0 + 1e-9  # 1 A limits
    # the physics the simulator has: 12 K/A at 0 A, C·R time constant, 1 s sensor lag
    assert np.mean(figures["K"]) == pytest.approx(12.0, rel=0.05)
    assert np.mean(figures["T"]) == pytest.approx(
        PLANTS[plant].time_constant + 0.5, rel=0.05)


async def test_no_confident_model_is_a_procedure_error_and_restores():
    async with bench(SPEED, PLANTS["heavy"]) as b:
        before = await _prepare(b.driver)
        await procedures.wait_settled(b.driver, 0)
        # a window of 0.3 K stops the doublet 0.1 K out, long before the heavy plant's
        # 160 s time constant shows
        with pytest.raises(procedures.ProcedureError, match="no confident model.*T"):
            await procedures.autotune(b.driver, 0, 25.0, window=0.3)
        assert await state(b.driver, 0) == before


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
        # settled: power_up's PID can start with a kick of ~0.3 A (a sample between the
        # gains and the target), which would take the relay out of the window instead
        await procedures.wait_settled(b.driver, 0)
        seen = []
        # a noise band of 1 mK (a third of the noise): noise-triggered switching; a bias
        # (the PID's last output) more than 20 mA off makes a half stall instead
        with pytest.raises(procedures.ProcedureError, match="converge|noise band"):
            await procedures.autotune(b.driver, 0, 25.0, hysteresis=0.001, amplitude=0.02,
                                      cycles=8, max_cycles=8, on_progress=seen.append)
        assert seen[-1]["state"] == "failed" and seen[-1]["elapsed_s"] < 900  # timeout 1800
        assert await state(b.driver, 0) == before


async def test_relay_that_never_forms_stalls_and_restores():
    async with bench(SPEED) as b:
        await b.driver.set_current(0, 0.0)  # 0 A holds the ambient 25 degC
        before = await state(b.driver, 0)
        seen = []
        # 20 mA of cooling holds 24.76 degC: the first half never reaches 24 degC
        with pytest.raises(procedures.ProcedureError, match="stalled.*24.7"):
            await procedures.autotune(b.driver, 0, 24.0, amplitude=0.02,
                                      on_progress=seen.append)
        assert seen[-1]["elapsed_s"] < 900
        assert await state(b.driver, 0) == before


async def test_no_room_at_the_operating_point_is_a_procedure_error_and_restores():
    async with bench(SPEED) as b:
        # 1 A of cooling holds 14.5 degC at best: the PID regulating to 10 degC saturates
        await procedures.power_up(b.driver, 0, 10.0, **EXAMPLE_GAINS)
        async for rep in procedures.samples(b.driver, 0):
            if rep["i_set"] >= 1.0:
                break
        before = await state(b.driver, 0)
        with pytest.raises(procedures.ProcedureError, match="output limit"):
            await procedures.autotune(b.driver, 0, 10.0)
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


def _relay_on_plant(relay: tuning.Relay, holding: float, seconds: float,
                    start: float = 0.0) -> list:
    """Feed ``relay`` from a first-order plant (tau 40 s, 0.3 K/(A s), a 1 s sensor
    lag, 3 mK noise, 0.1 s samples) held at the target by ``holding`` A, starting
    ``start`` K from it; the stalled_at values, one a sample, until the relay
    converges."""
    rng = np.random.default_rng(3)
    mass = sensor = relay.target + start
    current = relay.command
    seen = []
    for k in range(int(seconds / 0.1)):
        mass += 0.1 * ((relay.target - mass) / 40 - 0.3 * (current - holding))
        sensor += 0.1 * (mass - sensor)
        current = relay.feed(0.1 * k, sensor + rng.normal(0, 0.003), current)
        seen.append(relay.stalled_at)
        if relay.converged:
            break
    return seen


@pytest.mark.parametrize("holding, start", [
    (0.0, 0.0), (0.04, 0.0), (-0.04, 0.0),  # the bias 0 A off by 0 or 80 % of the relay's
    (0.0, 1.0), (0.0, -1.0)])  # a long first half: 1 K from the target at 50 mA
def test_a_relay_whose_drive_reaches_the_operating_point_never_stalls(holding, start):
    relay = tuning.Relay(25.0, 0.009, 0.05, -1.0, 1.0, bias=0.0, noise=0.003)
    seen = _relay_on_plant(relay, holding, 3000, start)
    assert relay.converged and seen.count(None) == len(seen)
    assert relay.bias == pytest.approx(holding, abs=0.01)
    if start:
        assert relay.halves[0].end - relay.halves[0].start > 20


def test_a_relay_that_never_reaches_its_switch_stalls():
    relay = tuning.Relay(25.0, 0.009, 0.02, -1.0, 1.0, bias=0.0, noise=0.003)
    seen = _relay_on_plant(relay, 0.05, 3000)  # 30 mA beyond the relay's reach
    stalled = [i for i, v in enumerate(seen) if v is not None]
    assert len(relay.halves) == 1 and stalled
    assert 0.1 * stalled[0] < 600  # a few plant time constants, once standing still
    assert seen[stalled[0]] == pytest.approx(25.0 + 0.03 * 0.3 * 40, abs=0.02)


def test_noise_sigma_ignores_drift():
    rng = np.random.default_rng(2)
    x = np.linspace(20, 25, 500) + 0.001 * np.linspace(0, 10, 500) ** 2 + rng.normal(0, 0.003,
                                                                                       500)
    assert tuning.noise_sigma(x) == pytest.approx(0.003, rel=0.15)


def test_fast_noise_ignores_a_slow_part_and_missed_samples():
    rng = np.random.default_rng(3)
    t = np.arange(0, 300, 0.119)
    t = t[rng.random(t.size) > 0.3]  # a host that misses 30 % of the samples
    slow = 0.05 * np.sin(2 * np.pi * t / 30) + 0.002 * t  # what a model leaves, slowly
    x = slow + rng.normal(0, 0.003, t.size)
    assert model.fast_noise(t, x) == pytest.approx(0.003, rel=0.05)
    assert np.std(x) > 0.01  # the slow part alone would dwarf the noise
    with pytest.raises(ValueError, match="three samples within"):
        model.fast_noise([0.0, 10.0, 20.0], [1.0, 2.0, 3.0])


# --------------------------------------------------- model fit and design

def _record(gain=12.0, t1=40.0, t2=1.0, lag=0.2, seed=5):
    """Samples of the exact model (0.119 s, 3 mK noise) under commands at
    times between samples: a relay-like square wave, then a doublet."""
    rng = np.random.default_rng(seed)
    when = [0.0] + list(np.arange(5.03, 60, 1.57)) + [61.3, 130.7]
    amps = [0.0] + [0.4 * (-1) ** i for i in range(len(when) - 3)] + [0.1, -0.1]
    t = np.arange(0, 170, 0.119)
    rec = model._Record(t, np.zeros_like(t), (when, amps), 0.0)
    clean = rec.basis(t1, t2, lag)[:, 1] * -gain + 25.0
    return t, clean + rng.normal(0, 0.003, t.size), (when, amps)


def test_the_fit_recovers_a_known_model():
    t, y, driven = _record()
    m = model.fit_model(t, y, driven, 0.0, 3.0)
    assert m.gain == pytest.approx(12.0, rel=0.02)
    assert m.t1 == pytest.approx(40.0, rel=0.02) and m.t2 == pytest.approx(1.0, rel=0.05)
    assert m.fopdt[2] == pytest.approx(0.7, rel=0.05)
    assert m.noise == pytest.approx(0.003, rel=0.1)
    assert max(m.errors.values()) < model.CONFIDENCE


def test_the_fit_refuses_a_record_without_the_slow_response():
    t, y, (when, amps) = _record()
    fast = t < 30  # part of the relay only: the 40 s time constant does not show
    with pytest.raises(model.ModelError, match="no confident model"):
        model.fit_model(t[fast], y[fast], (when[:-2], amps[:-2]), 0.0, 3.0)


@pytest.mark.parametrize("t1", [14.0, 40.0, 160.0])
def test_the_design_settles_the_model_without_overshoot_and_caps_the_noise(t1):
    m = model.Model(12.0, t1, 1.0, 0.0)
    g = design.design(m, 0.119, -1.0, 1.0, 0.003)
    per = tuning.to_per_sample(g, 0.119)
    settle, over = design.step_figures(*design.simulate_step(m, per, 0.119, -1.0, 1.0))
    assert settle == pytest.approx(g["settling_s"]) and settle < 40
    assert over <= design.OVERSHOOT_K
    assert design.output_noise(per, 0.003) <= design.OUTPUT_NOISE + 1e-9
    uncapped = design.simc_pid(m, g["tc"], design.TI_FACTOR)["kd"]
    assert g["kd_capped"] is (g["kd"] < uncapped)
