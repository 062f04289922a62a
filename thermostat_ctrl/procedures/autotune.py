"""Relay autotune of one channel's PID, with the channel restored on every exit.

1. *noise*: hold the starting current for :data:`NOISE_SAMPLES` samples and
   measure the sensor noise; the relay's noise band is 3 σ unless given.
2. *relay*: relay feedback with that band around a bias current that moves to
   the operating point (the current holding the target), within the output
   limits; converged cycles give the hysteresis-corrected Ku and Pu.
3. *identify*: an open-loop doublet from the operating point (a current step
   of :data:`DOUBLET` times the relay's amplitude until the response has
   visibly slowed, then back past the target), which shows the slow time
   constant that the fast relay cycles hide.
4. *fitting*: a second-order-plus-dead-time model with the TEC's Joule heat
   fitted to the whole record (:func:`.model.fit_model`), the commands placed
   on the device's clock; a ProcedureError when the record does not
   determine it.  The sensor noise the gains must not amplify too much is
   measured again in the fit's residuals (every sample of the record).
5. *designing*: gains for every rule, in per-second and per-sample
   (firmware) units; the default rule ``"designed"`` chooses them by
   simulating a target step on the firmware's PID (:mod:`.design`).

All stages share one sample stream, so no sample is lost between them.
Aborts (window, timeout, open thermistor, lost connection, no convergence or
a stalled relay, no confident model, the caller) restore the channel's
previous state before raising.
"""

import asyncio
import bisect
import math
import time
from collections import deque
from typing import Callable, Optional

import numpy as np

from .. import protocol
from ..driver import Thermostat
from . import design, tuning
from .model import ModelError, fit_model
from .basic import (SAFE_WINDOW, Aborted, ChannelState, ProcedureError, check_number,
                    check_target, check_window, samples)

__all__ = ["autotune", "DEFAULT_RULE", "NOISE_SAMPLES", "RULE_NAMES"]

NOISE_SAMPLES = 48
#: The relay's convergence: relative standard error of amplitude and period.
RELAY_TOLERANCE = 0.1
#: The doublet's current step, as a fraction of the relay's amplitude.
DOUBLET = 0.2
_SMOOTH = 5  # samples in the moving mean that ends the doublet's halves
#: The default rule: gains chosen on the identified model by simulating a
#: target step on the firmware's PID (:mod:`.design`).
DEFAULT_RULE = DESIGNED = "designed"
RULE_NAMES = (DESIGNED,) + tuple(tuning.MODEL_RULES) + tuple(tuning.RULES)


async def autotune(driver: Thermostat, ch: int, target: float, *, rule: str = DESIGNED,
                   amplitude: Optional[float] = None, hysteresis: Optional[float] = None,
                   window: float = 3.0, timeout_s: float = 1800.0, cycles: int = 4,
                   max_cycles: int = 40, apply: bool = False, engage: bool = False,
                   save: bool = False, safe_window: tuple = SAFE_WINDOW,
                   on_progress: Optional[Callable[[dict], None]] = None,
                   abort: Optional[asyncio.Event] = None) -> dict:
    """Relay-autotune channel ``ch`` at ``target`` °C.

    :param rule: ``"designed"`` (default: SIMC's family with the closed-loop
        time constant chosen by simulating a target step on the firmware's
        PID, the derivative capped for the output noise), ``"simc"`` or one
        of :data:`thermostat_ctrl.procedures.tuning.RULES`.
    :param amplitude: cap on the relay's current swing around the operating
        point (A); default half the smaller output limit.
    :param hysteresis: relay noise band (K); default 3 σ of the measured noise.
    :param window: abort when the temperature leaves ``target ± window`` K
        (widened to include the start until the target is first crossed).
    :param timeout_s: abort after this many device (and wall) seconds.
    :param cycles: consistent cycles needed per relay stage.
    :param max_cycles: abort when a stage has not converged after this many;
        also abort when a relay half stalls (the temperature settles short of
        the switch: the relay amplitude does not reach past the operating
        point).
    :param apply: write the gains and output range (``output_min``,
        ``output_max`` = the output limits) to the channel; ``engage`` also
        sets the target and engages the PID; ``save`` then saves to flash.
    :param on_progress: called with a progress dict on every sample.
    :param abort: set it to stop the autotune (it raises :class:`Aborted`).

    The output limits are used as set (0 limits are refused); the channel's
    previous state (PID on/off, target, gains, constant current) is restored
    whatever happens, unless ``apply`` then writes the new gains.  Returns
    the gains (per sample and per second), the rule, every rule's gains with
    the ``output_noise_a`` (σ, A) they cause, Ku, Pu, the model (with its
    standard errors), the ``design`` figures, the noise, the cycles and the
    recorded data.  Raises ValueError for a bad
    argument (before anything is sent), :class:`ProcedureError` (a
    RuntimeError) or TimeoutError / ConnectionError when it stops early.
    """
    protocol.check_channel(ch)
    check_target(target, check_window(safe_window))
    if rule not in RULE_NAMES:
        raise ValueError("rule must be one of {}, not {!r}".format(", ".join(RULE_NAMES), rule))
    if amplitude is not None:
        check_number("amplitude", amplitude)
    if hysteresis is not None:
        check_number("hysteresis", hysteresis)
    check_number("window", window)
    check_number("timeout_s", timeout_s)
    for name, value in (("cycles", cycles), ("max_cycles", max_cycles)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError("{} must be an integer >= 2, not {!r}".format(name, value))
    if max_cycles < cycles:
        raise ValueError("max_cycles ({}) must not be below cycles ({})".format(
            max_cycles, cycles))
    if (engage or save) and not apply:
        raise ValueError("engage and save need apply=True")

    before = await ChannelState.capture(driver, ch)
    high, low = before.limits["max_i_pos"], -before.limits["max_i_neg"]
    if not (high > 0 and low < 0 and before.limits["max_v"] > 0):
        raise ValueError(
            "channel {}: output limits max_i_pos {}, max_i_neg {}, max_v {}: all must be"
            " above 0 (they are 0 after boot); set them first".format(
                ch, before.limits["max_i_pos"], before.limits["max_i_neg"],
                before.limits["max_v"]))
    cap = min(high, -low) / 2 if amplitude is None else amplitude
    run = _Run(driver, ch, target, window, timeout_s, on_progress, abort)
    try:
        try:
            result = await run.tune(before, low, high, cap, hysteresis, cycles, max_cycles,
                                    rule)
        except (tuning.TuningError, ModelError) as e:
            raise ProcedureError("channel {}: {}; autotune aborted".format(ch, e)) from e
    except BaseException as e:
        run.progress(state="restoring")
        try:
            await before.restore(driver)
        except (ConnectionError, TimeoutError) as lost:
            raise type(lost)("{}; channel {} could NOT be restored ({})".format(
                e, ch, lost)) from e
        run.progress(state="failed", error=str(e))
        raise
    await before.restore(driver)
    if apply:
        gains = result["gains"]
        await driver.set_pid_params(ch, kp=gains["kp"], ki=gains["ki"], kd=gains["kd"],
                                    output_min=result["output_min"],
                                    output_max=result["output_max"])
        if engage:
            await driver.set_target(ch, target)
            await driver.engage_pid(ch)
        if save:
            await driver.save_config(ch)
    result["applied"] = apply
    run.progress(state="done")
    return result


class _Run:
    """One autotune's sample loop, safety checks and progress."""

    def __init__(self, driver, ch, target, window, timeout_s, on_progress, abort):
        self.driver, self.ch, self.target = driver, ch, target
        self.window, self.timeout_s = window, timeout_s
        self.on_progress, self.abort = on_progress, abort
        self.state = "starting"
        self.start_t = None
        self.wall_start = time.monotonic()
        self.elapsed = 0.0
        self.record = []      # (device time, temperature, measured current)
        self.intervals = []
        self.command = None
        self.commands = []    # (wall time, current): what was driven when
        self.clock = []       # (device time, wall time received) of every sample
        self.bounds = None
        self.info = {}
        # one stream for all stages: a new one would poll slowly until it has
        # measured the device's pace again, losing samples at every stage's start
        self.feed = self.stream()

    def progress(self, **info) -> None:
        if "state" in info:
            self.state = info.pop("state")
        self.info.update(info)
        if self.on_progress is not None:
            self.on_progress({"channel": self.ch, "state": self.state,
                              "elapsed_s": self.elapsed, **self.info})

    async def drive(self, amps: float, low: float, high: float) -> None:
        amps = min(max(amps, low), high)
        if amps != self.command:
            sent = time.monotonic()
            await self.driver.set_current(self.ch, amps)
            self.commands.append(((sent + time.monotonic()) / 2, amps))
            self.command = amps

    def command_times(self) -> list:
        """The device times at which the commands took effect.

        The device clock runs at a steady pace against the wall clock; a
        sample is received some time after it is taken, never before, so the
        line through the earliest receptions maps wall time to device time.
        A switch is then placed to a fraction of a sample: its timing is
        what the relay record's fit is most sensitive to.
        """
        t, wall = (np.array(v) for v in zip(*self.clock))
        pace = float(np.polyfit(wall - wall[0], t, 1)[0])
        offset = float(np.max(t - pace * (wall - wall[0])))
        return [offset + pace * (w - wall[0]) for w, _ in self.commands]

    async def stream(self):
        """New samples (device time, temperature, measured current), after the
        safety checks."""
        async for rep in samples(self.driver, self.ch):
            if self.abort is not None and self.abort.is_set():
                raise Aborted("channel {}: autotune aborted by the caller".format(self.ch))
            t, temperature = rep["time"], rep["temperature"]
            if self.start_t is None or t < self.start_t:
                self.start_t = t
            self.elapsed = t - self.start_t
            if self.elapsed > self.timeout_s or time.monotonic() - self.wall_start > \
                    self.timeout_s:
                raise TimeoutError("channel {}: autotune did not finish within timeout_s = {}"
                                   " s ({})".format(self.ch, self.timeout_s, self.state))
            if temperature is None:
                raise ProcedureError("channel {}: the thermistor reads open (temperature"
                                     " null); autotune aborted".format(self.ch))
            if self.bounds is None:
                self.bounds = (min(temperature, self.target) - self.window,
                               max(temperature, self.target) + self.window)
            low, high = self.bounds
            if not low <= temperature <= high:
                raise ProcedureError(
                    "channel {}: temperature {:.3f} degC left the window {:.3f}..{:.3f} degC;"
                    " autotune aborted (reduce the amplitude or widen the window)".format(
                        self.ch, temperature, low, high))
            self.intervals.append(rep["interval"])
            self.clock.append((t, time.monotonic()))
            yield t, temperature, rep["tec_i"]

    async def relay(self, relay: tuning.Relay, stage: str, max_cycles: int, low, high,
                    remaining) -> None:
        await self.drive(relay.command, low, high)
        async for t, temperature, current in self.feed:
            self.record.append((t, temperature, current))
            await self.drive(relay.feed(t, temperature, current), low, high)
            if relay.crossed:
                self.bounds = (self.target - self.window, self.target + self.window)
            last = relay.cycles[-1] if relay.cycles else None
            self.progress(state=stage, temperature=temperature, current=current,
                          peaks=sum(not math.isnan(h.peak) for h in relay.halves[:-1]),
                          cycles=len(relay.cycles), bias=relay.bias,
                          amplitude=last.amplitude if last else None,
                          period=last.period if last else None,
                          remaining_s=remaining(relay, last))
            if relay.converged:
                return
            settled = relay.stalled_at
            if settled is not None:
                raise ProcedureError(
                    "channel {}: the relay oscillation stalled and did not converge ({}): no"
                    " switch for {:.0f} s, the temperature settles at {:.3f} degC, short of"
                    " {:.3f} degC; the current holding the target is more than the relay"
                    " amplitude {:.3g} A from {:.3g} A (increase the amplitude, or start"
                    " from a settled channel); autotune aborted".format(
                        self.ch, stage, t - relay.halves[-1].start, settled, relay.threshold,
                        relay.amplitude, relay.bias))
            if len(relay.halves) > 2 * max_cycles + 1:  # counts cycles without peaks too
                raise ProcedureError(
                    "channel {}: the relay oscillation did not converge in {} cycles ({});"
                    " autotune aborted".format(self.ch, max_cycles, stage))

    async def doublet(self, bias: float, delta: float, excursion: float, noise: float,
                      low, high) -> None:
        """Open-loop identification from the operating point: cool at ``bias +
        delta`` until the temperature's response has visibly slowed (the
        slope of the last quarter of the push at most half that of the
        first) or it is ``excursion`` K from the target, then heat at ``bias -
        delta`` until it is back at the target."""
        smooth = deque(maxlen=_SMOOTH)
        for sign in (1, -1):
            await self.drive(bias + sign * delta, low, high)
            start, times, sums = None, [], [0.0]
            async for t, temperature, current in self.feed:
                self.record.append((t, temperature, current))
                self.progress(state="identify", temperature=temperature, current=current,
                              remaining_s=None)
                smooth.append(temperature)
                level = sum(smooth) / len(smooth)
                if sign < 0:
                    if level >= self.target:
                        break
                    continue
                start = t if start is None else start
                times.append(t)
                sums.append(sums[-1] + temperature)
                if self.target - level >= excursion or _slowed(times, sums, start, noise):
                    break
        await self.drive(bias, low, high)

    async def tune(self, before, low, high, cap, hysteresis, cycles, max_cycles, rule) -> dict:
        bias = min(max(before.i_set if before.engaged else 0.0, low), high)
        self.progress(state="noise")
        await self.drive(bias, low, high)
        noise_samples = []
        async for sample in self.feed:
            self.record.append(sample)
            noise_samples.append(sample[1])
            self.progress(remaining_s=None)
            if len(noise_samples) >= NOISE_SAMPLES:
                break
        sigma = tuning.noise_sigma(noise_samples)
        eps = hysteresis if hysteresis is not None else max(3 * sigma, 1e-3)

        def remaining(relay, last):
            if last is None:
                return None
            return max(cycles - len(relay.cycles), 1) * last.period

        noise = max(sigma, eps / 3)  # a noise-free record would never stand still
        # Ku and Pu only feed the classic rules and the fit's starting point (the model
        # comes from the fit), so 10 %: a loaded host makes single cycles scatter
        first = tuning.Relay(self.target, eps, cap, low, high, bias=bias, cycles=cycles,
                             tolerance=RELAY_TOLERANCE, noise=noise)
        await self.relay(first, "relay", max_cycles, low, high, remaining)
        ultimate = tuning.analyse(first)
        await self.doublet(first.bias, DOUBLET * min(first.cool, first.heat),
                           self.window / 3, noise, low, high)
        self.progress(state="fitting")
        t, y, u = zip(*self.record)
        ts = float(np.median(self.intervals))
        driven = (self.command_times(), [amps for _, amps in self.commands])
        model = await asyncio.get_running_loop().run_in_executor(
            None, fit_model, t, y, driven, first.bias, ultimate.pu)
        sensor = model.noise  # from every sample: a few %, where the first 48 give 10
        self.progress(state="designing")
        try:
            designed = await asyncio.get_running_loop().run_in_executor(
                None, design.design, model, ts, low, high, sensor)
        except ValueError as e:
            raise ProcedureError("channel {}: {}; autotune aborted".format(self.ch, e)) from e
        rules = {}
        for name in RULE_NAMES:
            if name == DESIGNED:
                per_second = {k: designed[k] for k in ("kp", "ki", "kd")}
            else:
                per_second = tuning.tune(name, ultimate, model)
            per_sample = tuning.to_per_sample(per_second, ts)
            rules[name] = {"per_sample": per_sample, "per_second": per_second,
                           "output_noise_a": design.output_noise(per_sample, sensor)}
        return {
            "channel": self.ch, "target": self.target, "rule": rule,
            "gains": rules[rule]["per_sample"], "gains_per_second": rules[rule]["per_second"],
            "output_min": low, "output_max": high, "rules": rules,
            "output_noise_a": rules[rule]["output_noise_a"],
            "design": {k: designed[k] for k in ("tc", "settling_s", "overshoot_k",
                                                "kd_capped")},
            "ku": ultimate.ku, "pu": ultimate.pu, "oscillation_k": ultimate.amplitude,
            "relay_amplitude_a": ultimate.relay_amplitude, "model": model.as_dict(),
            "noise_k": sensor, "hysteresis_k": eps, "operating_current_a": first.bias,
            "cycles": len(first.cycles), "sample_period_s": ts,
            "duration_s": self.elapsed,
            "data": {"time": list(t), "temperature": list(y), "current": list(u)},
        }


def _slowed(times: list, sums: list, start: float, noise: float) -> bool:
    """True when the mean temperature's step over the last quarter of a push
    is at most half the step over its first quarter (a first-order response
    gets there after 1.4 time constants), the first step being clear of the
    noise."""
    n = len(times)
    if n < 8 * _SMOOTH:
        return False
    age = times[-1] - start
    cuts = [0] + [bisect.bisect_left(times, start + age * f) for f in (0.25, 0.5, 0.75)] + [n]
    counts = [b - a for a, b in zip(cuts, cuts[1:])]
    if min(counts) < 2 * _SMOOTH:
        return False
    means = [(sums[b] - sums[a]) / (b - a) for a, b in zip(cuts, cuts[1:])]
    early, late = means[0] - means[1], means[2] - means[3]  # cooling: falling
    clear = 10 * noise * math.sqrt(1 / counts[0] + 1 / counts[1])
    return early > clear and late <= early / 2
