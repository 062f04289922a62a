"""Closed-loop step test: a setpoint step of ``delta`` and back, with its figures."""

import asyncio
from typing import Optional

import numpy as np

from .. import protocol
from ..driver import Thermostat
from .basic import (SAFE_WINDOW, Aborted, check_number, check_target, check_window, samples,
                    wait_settled)

__all__ = ["step_response", "step_metrics"]


def step_metrics(t, temperature, start: float, target: float, band: float = 0.01,
                 smooth_s: float = 1.0, tail_s: float = 30.0) -> dict:
    """Figures of a step from ``start`` to ``target`` °C recorded as device
    times ``t`` (s after the step) and temperatures.

    Judged on a moving mean over ``smooth_s`` (the sensor noise would otherwise
    decide a narrow band by chance): ``rise_time_s`` (10 % to 90 % of the
    step), ``overshoot_k`` (beyond the target, in the step's direction, ≥ 0),
    ``settling_time_s`` (from the step until the mean stays within ``band``;
    None if it never does), and on the raw samples of the last ``tail_s``
    after settling: ``steady_std_k`` and ``steady_error_k``.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(temperature, dtype=float)
    if t.size < 2:
        raise ValueError("need at least 2 samples, got {}".format(t.size))
    period = float(np.median(np.diff(t)))
    width = max(1, int(round(smooth_s / period)))
    mean = np.convolve(y, np.ones(width) / width, mode="valid")
    mt = t[width - 1:]
    delta = target - start
    progress = (mean - start) / delta if delta else np.ones_like(mean)
    rise = None
    above10 = np.nonzero(progress >= 0.1)[0]
    above90 = np.nonzero(progress >= 0.9)[0]
    if above10.size and above90.size:
        rise = float(mt[above90[0]] - mt[above10[0]])
    sign = 1.0 if delta >= 0 else -1.0
    overshoot = max(0.0, float(np.max(sign * (mean - target))))
    outside = np.nonzero(np.abs(mean - target) > band)[0]
    if outside.size == 0:
        settling: Optional[float] = 0.0
    elif outside[-1] == mean.size - 1:
        settling = None
    else:
        settling = float(mt[outside[-1] + 1])
    tail = y[t >= (t[-1] - tail_s if settling is None else max(settling, t[-1] - tail_s))]
    return {"rise_time_s": rise, "overshoot_k": overshoot, "settling_time_s": settling,
            "steady_std_k": float(np.std(tail)), "steady_error_k": float(np.mean(tail) - target)}


async def step_response(driver: Thermostat, ch: int, delta: float, *, band: float = 0.01,
                        duration_s: float = 300.0, hold_s: float = 30.0, smooth_s: float = 1.0,
                        back: bool = True, settle_tolerance: float = 0.05,
                        safe_window: tuple = SAFE_WINDOW,
                        abort: Optional[asyncio.Event] = None) -> dict:
    """Step channel ``ch``'s target by ``delta`` K and (with ``back``) back again.

    The PID must be engaged; the channel is first left to settle within
    ``settle_tolerance`` K for 5 s.  Each step is recorded until its moving
    mean (``smooth_s``) has stayed within ``band`` K for ``hold_s`` s, or for
    ``duration_s`` s (device time).  Returns ``{"up": figures, "down":
    figures or None, "start", "target"}`` with the figures of
    :func:`step_metrics` and the ``data`` recorded.  The target is put back
    on every exit.  ValueError for bad arguments or a stepped target outside
    ``safe_window``; RuntimeError when the PID is not engaged.
    """
    protocol.check_channel(ch)
    protocol.format_number(delta, "delta")
    if delta == 0:
        raise ValueError("delta must not be 0")
    for name, value in (("band", band), ("duration_s", duration_s), ("hold_s", hold_s),
                        ("smooth_s", smooth_s), ("settle_tolerance", settle_tolerance)):
        check_number(name, value)
    if hold_s > duration_s:
        raise ValueError("hold_s ({}) must not exceed duration_s ({})".format(
            hold_s, duration_s))
    window = check_window(safe_window)
    start = (await driver.get_pid())[ch]["target"]
    check_target(start + delta, window, "target + delta")
    await wait_settled(driver, ch, tolerance=settle_tolerance, settle_s=5, timeout_s=duration_s)
    try:
        up = await _record(driver, ch, start, start + delta, band, duration_s, hold_s,
                           smooth_s, abort)
        down = (await _record(driver, ch, start + delta, start, band, duration_s, hold_s,
                              smooth_s, abort) if back else None)
    finally:
        await driver.set_target(ch, start if back else start + delta)
    return {"channel": ch, "start": start, "target": start + delta, "up": up, "down": down}


async def _record(driver, ch, start, target, band, duration_s, hold_s, smooth_s, abort) -> dict:
    await driver.set_target(ch, target)
    t, y = [], []
    t0 = None
    async for rep in samples(driver, ch):
        if abort is not None and abort.is_set():
            raise Aborted("channel {}: step test aborted by the caller".format(ch))
        if not rep["pid_engaged"]:
            raise RuntimeError("channel {}: the PID was disengaged during the step test"
                               .format(ch))
        if rep["temperature"] is None:
            raise RuntimeError("channel {}: the thermistor reads open (temperature null)"
                               .format(ch))
        t0 = rep["time"] if t0 is None else t0
        t.append(rep["time"] - t0)
        y.append(rep["temperature"])
        if t[-1] >= duration_s:
            break
        if t[-1] > hold_s + smooth_s and len(t) > 2:
            recent = step_metrics(t, y, start, target, band, smooth_s)["settling_time_s"]
            if recent is not None and t[-1] - recent >= hold_s:
                break
    figures = step_metrics(t, y, start, target, band, smooth_s)
    figures["data"] = {"time": t, "temperature": y}
    return figures
