"""Relay feedback, process identification and PID tuning rules (no I/O).

Units and signs follow the firmware: temperatures in
°C, currents in A, positive current cools.  A *per-second* PID has ``kp``
(A/K), ``ki`` (A/(K·s)) and ``kd`` (A·s/K); the firmware's incremental PID
evaluated once per sample of period ``Ts`` uses ``kp``, ``ki·Ts`` and
``kd/Ts`` (:func:`to_per_sample`).

:class:`Relay` is the state machine of an asymmetric relay with hysteresis
around a bias current that it moves to the operating point (the time-average
current of each cycle); it tells when a half-cycle has stalled short of its
switch.  :func:`analyse` turns its record into the ultimate gain and period;
:func:`tune` applies a rule on them or on the identified model
(:mod:`.model`; the default rule is designed in :mod:`.design`).
"""

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .model import Model

__all__ = ["RULES", "MODEL_RULES", "Relay", "RelayAnalysis", "noise_sigma", "analyse", "tune",
           "to_per_sample", "TuningError"]

#: Rules on the ultimate gain and period (c0, c1, c2): kp = c0·Ku,
#: Ki = c1·Ku/Pu, Kd = c2·Ku·Pu (per second), as the device's client has them.
RULES = {
    "ziegler-nichols": (0.6, 1.2, 0.075),
    "tyreus-luyben": (0.4545, 0.2066, 0.07214),
    "ciancone-marlin": (0.303, 0.1364, 0.0481),
    "pessen-integral": (0.7, 1.75, 0.105),
    "some-overshoot": (0.333, 0.667, 0.111),
    "no-overshoot": (0.2, 0.4, 0.0667),
}
#: Rules on the identified FOPDT model.
MODEL_RULES = ("simc",)

_SMOOTH = 5  # samples in the moving mean that locates the peaks
_STALL_SAMPLES = 100  # a half-cycle is judged stalled only with this many samples
_STALL_FACTOR = 2.0   # ... and this many times as long as the longest half before it


class TuningError(RuntimeError):
    """The relay experiment cannot give a model (amplitude, limits, noise)."""


def noise_sigma(*segments) -> float:
    """Sample noise (standard deviation) of slowly drifting signals, from
    their second differences (pooled over the ``segments``, sequences of
    samples), which a linear or slowly curving drift does not affect."""
    d2 = [np.diff(np.asarray(x, dtype=float), 2) for x in segments]
    n = sum(d.size for d in d2)
    if n < 6:
        raise ValueError("need at least 8 samples to measure the noise, got {}".format(
            n + 2 * len(d2)))
    return float(np.sqrt(sum(float(d @ d) for d in d2) / n / 6.0))


@dataclass
class HalfCycle:
    """One relay state from switch to switch."""

    state: str            # "cooling" or "heating"
    start: float          # device time of the switch into it
    end: float = math.nan
    command: float = 0.0
    peak: float = math.nan        # smoothed extreme reached after the switch
    peak_time: float = math.nan
    samples: list = field(default_factory=list)  # (t, temperature, current)


@dataclass
class Cycle:
    """A cooling half followed by a heating half."""

    period: float
    amplitude: float      # half the peak-to-peak of the smoothed temperature
    bias: float           # time-average command over the cycle


class Relay:
    """Relay with hysteresis around a moving bias current.

    Cools at ``bias + d`` while the temperature is above ``target -
    hysteresis`` coming down, heats at ``bias - d`` while below ``target +
    hysteresis`` coming up.  After each full cycle the bias becomes the
    cycle's time-average command (the current that holds the mean at the
    target) and ``d = min(amplitude, high - bias, bias - low)``, or the two
    sides' own headroom when ``symmetric`` is False.  ``converged`` once the
    means of the :attr:`used` cycles' amplitude and period (the later half,
    at least ``cycles`` of them) are known to ``tolerance`` (relative
    standard error; a switch comes up to one sample
    late, so single cycles scatter) and the bias's to ``tolerance·d``.

    A half-cycle whose drive does not reach past the operating point (the bias
    is off by more than ``d``) never ends: the temperature settles short of
    the switch.  :attr:`stalled_at` tells it from a slow half by the
    temperature standing still or settling, measured against the sample
    ``noise`` (K, σ; default a third of the hysteresis, the 3 σ band).
    """

    def __init__(self, target: float, hysteresis: float, amplitude: float, low: float,
                 high: float, bias: float = 0.0, cycles: int = 4, tolerance: float = 0.05,
                 symmetric: bool = True, noise: Optional[float] = None):
        if not low < high:
            raise ValueError("low ({}) must be below high ({})".format(low, high))
        self.target = target
        self.hysteresis = hysteresis
        self.noise = hysteresis / 3 if noise is None else noise
        self.amplitude = amplitude
        self.low, self.high = low, high
        self.needed = cycles
        self.tolerance = tolerance
        self.symmetric = symmetric
        self.bias = min(max(bias, low), high)
        self.halves: list = []
        self.cycles: list = []
        self.crossed = False
        self._smooth: deque = deque(maxlen=_SMOOTH)
        self._times: list = []     # the present half's sample times ...
        self._sums: list = [0.0]   # ... and the running sums of its temperatures
        self._longest = 0.0        # the longest half so far (s)
        self._amplitudes()

    def _amplitudes(self) -> None:
        up, down = self.high - self.bias, self.bias - self.low
        if self.symmetric:
            up = down = min(up, down)
        self.cool = min(self.amplitude, up)
        self.heat = min(self.amplitude, down)
        if min(self.cool, self.heat) < 0.05 * self.amplitude:
            raise TuningError(
                "the operating point {:.3f} A is at the output limit ({:.3f}..{:.3f} A): the"
                " relay has no room on one side; widen the limits or choose another target"
                .format(self.bias, self.low, self.high))

    @property
    def state(self) -> Optional[str]:
        """``"cooling"``, ``"heating"``, or None before the first sample."""
        return self.halves[-1].state if self.halves else None

    @property
    def command(self) -> float:
        """The current to drive now."""
        return self.halves[-1].command if self.halves else self.bias

    @property
    def used(self) -> list:
        """The cycles the relay is judged on: the later half of them, at
        least ``cycles`` (the earlier ones carry the start and the bias
        moving to the operating point)."""
        return self.cycles[-max(self.needed, len(self.cycles) // 2):]

    @property
    def converged(self) -> bool:
        """True when the cycles :attr:`used` agree (see the class docstring)."""
        last = self.used
        if len(last) < self.needed:
            return False
        biases = [c.bias for c in last]
        return (_error(c.amplitude for c in last) < self.tolerance
                and _error(c.period for c in last) < self.tolerance
                and np.std(biases) / math.sqrt(len(last))
                < self.tolerance * min(self.cool, self.heat))

    @property
    def threshold(self) -> Optional[float]:
        """The temperature whose crossing ends the present half (None before
        the first sample)."""
        if not self.halves:
            return None
        sign = 1 if self.state == "heating" else -1
        return self.target + sign * self.hysteresis

    @property
    def stalled_at(self) -> Optional[float]:
        """The temperature at which the present half has stalled short of its
        switch, or None.

        Judged once the half has ``_STALL_SAMPLES`` samples and has lasted
        ``_STALL_FACTOR`` times as long as the longest half before it, on the
        mean temperatures of the last three quarters of its age: the step of
        the last quarter's mean toward the :attr:`threshold` (or away from
        it) is either within 3 σ of its noise (standing still: another four
        ages at the fastest pace that noise allows), or at most 1/e of the
        step before (settling, seen over four time constants or more: at
        most 1/(e - 1) of the step is left to come); stalled when the last
        quarter is short of the threshold by more than is left to come, plus
        3 σ of its noise.  A half that still moves toward its switch, however
        slowly, is not stalled.
        """
        n = len(self._times)
        if n < _STALL_SAMPLES:
            return None
        start = self.halves[-1].start
        age = self._times[-1] - start
        if age < _STALL_FACTOR * self._longest:
            return None
        cuts = [bisect.bisect_left(self._times, start + age * f) for f in (0.25, 0.5, 0.75)]
        cuts.append(n)
        counts = [b - a for a, b in zip(cuts, cuts[1:])]
        if min(counts) < _SMOOTH:
            return None
        means = [(self._sums[b] - self._sums[a]) / (b - a) for a, b in zip(cuts, cuts[1:])]
        spread = [3 * self.noise * math.sqrt(1 / a + 1 / b) for a, b in zip(counts, counts[1:])]
        toward = 1 if self.state == "heating" else -1
        step1, step2 = (toward * (b - a) for a, b in zip(means, means[1:]))
        if abs(step2) <= spread[1]:
            left = 16 * (abs(step2) + spread[1])  # 4 ages = 16 quarters
        elif step1 * step2 > 0 and abs(step2) + spread[1] <= (abs(step1) - spread[0]) / math.e:
            left = max(step2 + spread[1], 0.0) / (math.e - 1)
        else:
            return None
        short = toward * (self.threshold - means[2])
        return means[2] if short > left + 3 * self.noise / math.sqrt(counts[2]) else None

    def feed(self, t: float, temperature: float, current: float) -> float:
        """Take one sample (device time, temperature, measured current);
        return the current to drive."""
        self._smooth.append((t, temperature))
        if not self.halves:
            self._switch(t, "cooling" if temperature > self.target else "heating")
        half = self.halves[-1]
        half.samples.append((t, temperature, current))
        self._times.append(t)
        self._sums.append(self._sums[-1] + temperature)
        if len(self._smooth) == _SMOOTH:
            mid_t = self._smooth[_SMOOTH // 2][0]
            mean = sum(v for _, v in self._smooth) / _SMOOTH
            further = mean > half.peak if half.state == "cooling" else mean < half.peak
            if mid_t >= half.start and (math.isnan(half.peak) or further):
                half.peak, half.peak_time = mean, mid_t
        if half.state == "heating" and temperature > self.target + self.hysteresis:
            self._switch(t, "cooling")
        elif half.state == "cooling" and temperature < self.target - self.hysteresis:
            self._switch(t, "heating")
        return self.command

    def _switch(self, t: float, state: str) -> None:
        if self.halves:
            half = self.halves[-1]
            half.end = t
            self._longest = max(self._longest, half.end - half.start)
            self.crossed = True
        self._times, self._sums = [], [0.0]
        if state == "cooling" and len(self.halves) >= 3:
            self._close_cycle()
        command = self.bias + self.cool if state == "cooling" else self.bias - self.heat
        self.halves.append(HalfCycle(state, t, command=command))

    def _close_cycle(self) -> None:
        cool, heat = self.halves[-2], self.halves[-1]
        if cool.state != "cooling" or math.isnan(cool.peak) or math.isnan(heat.peak):
            return
        period = heat.end - cool.start
        bias = (cool.command * (cool.end - cool.start)
                + heat.command * (heat.end - heat.start)) / period
        self.cycles.append(Cycle(period, (cool.peak - heat.peak) / 2, bias))
        self.bias = bias
        self._amplitudes()


def _error(values) -> float:
    """Relative standard error of the mean of ``values``."""
    x = np.fromiter(values, dtype=float)
    mean = abs(float(np.mean(x)))
    return float(np.std(x)) / (mean * math.sqrt(x.size)) if mean else math.inf


@dataclass
class RelayAnalysis:
    """What a converged relay experiment measured."""

    ku: float               # hysteresis-corrected ultimate gain (A/K)
    pu: float               # ultimate period (s)
    amplitude: float        # temperature oscillation, half peak-to-peak (K)
    relay_amplitude: float  # half the measured current swing (A)
    delay: float            # mean time from a switch to the following peak (s)
    cycles: int


def analyse(relay: Relay) -> RelayAnalysis:
    """Hysteresis-corrected ultimate gain and period of the relay's last cycles,
    with the relay amplitude taken from the measured currents."""
    cycles = relay.used
    n = len(cycles)
    halves = relay.halves[-2 * n - 1:-1]  # the complete halves of those cycles
    a = sum(c.amplitude for c in cycles) / n
    pu = sum(c.period for c in cycles) / n
    cooling = [s[2] for h in halves if h.state == "cooling" for s in h.samples]
    heating = [s[2] for h in halves if h.state == "heating" for s in h.samples]
    d = float(np.mean(cooling) - np.mean(heating)) / 2
    eps = relay.hysteresis
    if not a > 1.2 * eps:
        raise TuningError(
            "the oscillation ({:.4f} K) is not above the noise band ({:.4f} K): increase the"
            " relay amplitude".format(a, eps))
    if not d > 0:
        raise TuningError("no current flowed during the relay: check the output limits"
                          " and the TEC wiring")
    ku = 4 * d / (math.pi * math.sqrt(a * a - eps * eps))
    delay = float(np.mean([h.peak_time - h.start for h in halves]))
    return RelayAnalysis(ku, pu, a, d, max(delay, 0.0), n)


def tune(rule: str, analysis: RelayAnalysis, model: Model) -> dict:
    """Per-second gains ``{"kp", "ki", "kd"}`` from ``rule``: one of
    :data:`RULES` (on Ku, Pu) or ``"simc"`` (Skogestad's SIMC on the FOPDT
    model, closed-loop time constant = dead time, with a derivative of a
    third of the dead time in series form, Grimholt & Skogestad 2012)."""
    if rule in RULES:
        c0, c1, c2 = RULES[rule]
        ku, pu = analysis.ku, analysis.pu
        return {"kp": c0 * ku, "ki": c1 * ku / pu, "kd": c2 * ku * pu}
    if rule == "simc":
        gain, tau, dead = model.fopdt
        dead = max(dead, 1e-3)
        tc = dead
        kc = tau / (gain * (tc + dead))
        ti = min(tau, 4 * (tc + dead))
        td = dead / 3
        factor = 1 + td / ti  # series to parallel form
        return {"kp": kc * factor, "ki": kc / ti, "kd": kc * td}
    raise ValueError("rule must be one of {}, not {!r}".format(
        ", ".join(list(RULES) + list(MODEL_RULES)), rule))


def to_per_sample(gains: dict, sample_period: float) -> dict:
    """Firmware gains of per-second ``gains``: kp, ki·Ts, kd/Ts."""
    if not sample_period > 0:
        raise ValueError("sample_period must be positive, not {!r}".format(sample_period))
    return {"kp": gains["kp"], "ki": gains["ki"] * sample_period,
            "kd": gains["kd"] / sample_period}
