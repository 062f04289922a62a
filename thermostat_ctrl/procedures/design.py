"""Gains designed on the identified model for the firmware's PID (no I/O).

The firmware's PID acts on the target only through its integral: the
proportional and derivative terms see the measurement.  A step of the
target therefore overshoots when the integral does, and
a textbook rule's closed-loop time constant says little about it.  So
:func:`design` simulates the firmware's PID, sample by sample with its
output clamp, on the identified :class:`~.model.Model` and chooses the
gains by what a user sees: the fastest settling of a target step with next
to no overshoot, on the model and on models with a longer dead time and a
higher gain (the identification is not exact and the plant drifts).

The family searched is SIMC's PID for a second-order process with dead time
(series form: ``Kc = T1 / (K·(tc + L))``, ``Ti = min(T1, c·(tc + L))``,
``Td = T2``, Skogestad 2003) with ``c`` = :data:`TI_FACTOR`, over the
closed-loop time constant ``tc``.  A
derivative that would make the output noisy (the sensor noise through the
PID above :data:`DERIVATIVE_SHARE` of :data:`OUTPUT_NOISE` of the smaller
output limit) is capped, and gains whose output noise would exceed
:data:`OUTPUT_NOISE` are not considered.
"""

import math
from typing import Optional

import numpy as np

from .model import Model
from .tuning import to_per_sample

__all__ = ["OUTPUT_NOISE", "STEP_K", "design", "output_noise", "simulate_step",
           "step_figures"]

#: The largest output noise (σ, as a fraction of the smaller output limit)
#: the sensor noise may cause through the PID.
OUTPUT_NOISE = 0.05
#: The design step of the target (K) and its settling band (K).
STEP_K = 2.0
BAND_K = 0.01
#: Largest overshoot the design allows (K), on the model and on the
#: perturbed models (dead time x DEAD_MARGIN plus a sample and gain x
#: GAIN_MARGIN; gain / GAIN_MARGIN).
OVERSHOOT_K = 0.01
ROBUST_OVERSHOOT_K = 0.03
DEAD_MARGIN = 1.5
GAIN_MARGIN = 1.3
#: ``Ti = min(T1, TI_FACTOR·(tc + L))``: SIMC's 4 makes the loop critically
#: damped (for a lag-dominant process) but, through the integral, the target
#: step slow; 1.5 (damping about 0.6 without the derivative) settles it
#: about twice as fast, the derivative and the checks on the perturbed
#: models keeping the overshoot away.
TI_FACTOR = 1.5
#: The derivative's own share of the output noise, at most (it is capped there).
DERIVATIVE_SHARE = 0.4


def output_noise(per_sample: dict, noise: float) -> float:
    """σ of the firmware PID's output increments caused by white sensor noise
    of σ ``noise`` (K) under per-sample gains: the increment is ``(kp + ki +
    kd)·x[n] - (kp + 2kd)·x[n-1] + kd·x[n-2]``."""
    kp, ki, kd = per_sample["kp"], per_sample["ki"], per_sample["kd"]
    return noise * math.sqrt((kp + ki + kd) ** 2 + (kp + 2 * kd) ** 2 + kd ** 2)


def simulate_step(model: Model, per_sample: dict, ts: float, low: float, high: float,
                  step: float = STEP_K, duration: Optional[float] = None) -> tuple:
    """Times and temperatures (relative to the start) of the firmware PID with
    ``per_sample`` gains and output range ``low``..``high`` (A) on ``model``,
    settled at the operating point (0 A) when the target steps by ``step`` K.

    The model's two lags are stepped exactly with the current held over each
    sample; its dead time is rounded to whole samples.
    """
    k, t1, t2, dead = model.gain, model.t1, model.t2, model.dead_time
    duration = duration if duration is not None else 4 * (t1 + t2 + dead) + 60
    n = int(duration / ts)
    delay = max(int(round(dead / ts)), 0)
    a1, a2 = math.exp(-ts / t1), math.exp(-ts / t2)
    kp, ki, kd = per_sample["kp"], per_sample["ki"], per_sample["kd"]
    queue = [0.0] * (delay + 1)
    x1 = x2 = 0.0  # the two lag states, K
    e1 = e2 = 0.0  # the measurement history, K
    y = 0.0
    out = []
    for i in range(n):
        x0 = x2  # the sensor, relative to the old target
        # positive current cools: heating is -y
        y = min(max(y + kp * (x0 - e1) + ki * (x0 - step) + kd * (x0 - 2 * e1 + e2), low),
                high)
        e2, e1 = e1, x0
        out.append(x0)
        queue.append(-y)
        u = queue.pop(0)
        x1 = a1 * x1 + (1 - a1) * k * u
        x2 = a2 * x2 + (1 - a2) * x1 if t2 > 0 else x1
    return np.arange(n) * ts, np.array(out)


def step_figures(t: np.ndarray, y: np.ndarray, step: float = STEP_K, band: float = BAND_K,
                 smooth_s: float = 1.0) -> tuple:
    """(settling time in s, or inf; overshoot in K) of a simulated step,
    judged like :func:`~.step.step_metrics` on a ``smooth_s`` moving mean."""
    ts = t[1] - t[0]
    width = max(1, int(round(smooth_s / ts)))
    mean = np.convolve(y, np.ones(width) / width, mode="valid")
    mt = t[width - 1:]
    if not np.all(np.isfinite(mean)):
        return math.inf, math.inf
    overshoot = max(0.0, float(np.max(mean - step)))
    outside = np.nonzero(np.abs(mean - step) > band)[0]
    if outside.size and outside[-1] == mean.size - 1:
        return math.inf, overshoot
    return (float(mt[outside[-1] + 1]) if outside.size else 0.0), overshoot


def simc_pid(model: Model, tc: float, ti_factor: float = 4.0) -> dict:
    """Per-second gains of SIMC's series PID on ``model`` with closed-loop
    time constant ``tc`` (s); ``ti_factor`` is SIMC's 4 in ``Ti = min(T1,
    4·(tc + L))``."""
    kc = model.t1 / (model.gain * (tc + model.dead_time))
    ti = min(model.t1, ti_factor * (tc + model.dead_time))
    td = model.t2
    factor = 1 + td / ti  # series to parallel form
    return {"kp": kc * factor, "ki": kc / ti, "kd": kc * td}


def design(model: Model, ts: float, low: float, high: float, noise: float,
           ti_factor: float = TI_FACTOR) -> dict:
    """Per-second gains of SIMC's PID family (module docstring) with the
    smallest ``tc`` whose simulated step settles, without overshoot on the
    model and the perturbed models, within the output-noise budget.

    ``ts`` is the sample period (s), ``low``..``high`` the output range (A),
    ``noise`` the sensor noise (K, σ).  The returned dict also has ``tc``,
    the predicted ``settling_s`` and ``overshoot_k`` of the design step, the
    ``output_noise_a`` the gains cause and ``kd_capped`` (the derivative was
    reduced for the output noise).
    """
    limit = OUTPUT_NOISE * min(high, -low)
    perturbed = (Model(model.gain * GAIN_MARGIN, model.t1, model.t2,
                       model.dead_time * DEAD_MARGIN + ts),
                 Model(model.gain / GAIN_MARGIN, model.t1, model.t2, model.dead_time))

    # the derivative's own share of the output noise: kd·σ·√6 per sample
    kd_max = DERIVATIVE_SHARE * limit / (noise * math.sqrt(6)) * ts

    def gains(tc: float) -> dict:
        g = {k: float(v) for k, v in simc_pid(model, tc, ti_factor).items()}
        g["kd_capped"] = bool(g["kd"] > kd_max)
        g["kd"] = min(g["kd"], kd_max)
        return g

    def judged(tc: float) -> tuple:
        per = to_per_sample(gains(tc), ts)
        settle, over = step_figures(*simulate_step(model, per, ts, low, high))
        robust = max(step_figures(*simulate_step(m, per, ts, low, high))[1]
                     for m in perturbed)
        return settle, over, robust

    def good(tc: float) -> bool:
        if output_noise(to_per_sample(gains(tc), ts), noise) > limit:
            return False  # too noisy
        settle, over, robust = judged(tc)
        return math.isfinite(settle) and over <= OVERSHOOT_K and robust <= ROBUST_OVERSHOOT_K

    dead = max(model.dead_time, ts)
    candidates = np.geomspace(0.25 * dead, max(64 * dead, model.t1), 30)
    # the smallest good tc (the fastest loop that passes): on the grid, then between it
    # and the grid point below it; a boundary, so it moves smoothly with the model
    i = next((i for i, tc in enumerate(candidates) if good(tc)), None)
    if i is None:
        raise ValueError("no closed-loop time constant up to {:.3g} s settles the model's step"
                         " without overshoot".format(candidates[-1]))
    lo, hi = (candidates[i - 1] if i > 0 else candidates[0] / 2), candidates[i]
    for _ in range(12):
        mid = math.sqrt(lo * hi)
        if good(mid):
            hi = mid
        else:
            lo = mid
    tc = hi
    g = gains(tc)
    settle_s, over, _ = judged(tc)
    return {**g, "tc": float(tc), "settling_s": float(settle_s), "overshoot_k": float(over),
            "output_noise_a": float(output_noise(to_per_sample(g, ts), noise))}
