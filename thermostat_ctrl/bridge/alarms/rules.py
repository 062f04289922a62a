"""Detection rules: each a pure function of a window of recent samples.

A channel rule gets a :class:`ChannelWindow` (the channel's recent samples as
arrays, oldest first, and the regulation state of :mod:`..status`), a device
rule a :class:`DeviceWindow`; both get the rule's parameters and whether the
alarm is active now (so a rule can clear at a threshold of its own, a
hysteresis).  A rule answers a :class:`Finding` (the condition holds), ``OK``
(it does not) or ``UNKNOWN`` (the window is too short to tell: an active
alarm then stays as it is).

:data:`RULES` lists every rule with its defaults; :mod:`.settings` merges the
configured overrides over them.
"""

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np

__all__ = ["ChannelWindow", "DeviceWindow", "Finding", "OK", "UNKNOWN", "Rule", "RULES",
           "duration"]


@dataclass
class ChannelWindow:
    """One channel's recent samples (arrays of equal length, oldest first).

    ``t`` is in seconds (epoch, when the bridge asked); ``device_time`` the
    device's own clock of the reading (s since boot: its ADC sample time, which
    polls bunched on a busy host do not squeeze); temperatures in °C, currents
    in A; a missing value is NaN.  ``engaged`` is 1.0 while the PID drives the
    output.
    """

    t: np.ndarray
    temperature: np.ndarray
    target: np.ndarray
    engaged: np.ndarray
    i_set: np.ndarray
    tec_i: np.ndarray
    pid_output: np.ndarray
    device_time: np.ndarray
    max_i_pos: Optional[float] = None  #: output limits, None while unknown
    max_i_neg: Optional[float] = None
    settled: bool = False  #: reached the band after the latest target change
    settling_since: Optional[float] = None  #: time of that change while not yet settled
    settled_since: Optional[float] = None  #: time it settled, while settled

    def last(self, seconds: float) -> "ChannelWindow":
        """The samples of the last ``seconds`` (relative to the newest)."""
        if not len(self.t):
            return self
        start = int(np.searchsorted(self.t, self.t[-1] - seconds, side="left"))
        return ChannelWindow(*(getattr(self, name)[start:] for name in _ARRAYS),
                             max_i_pos=self.max_i_pos, max_i_neg=self.max_i_neg,
                             settled=self.settled, settling_since=self.settling_since,
                             settled_since=self.settled_since)

    def covers(self, seconds: float) -> bool:
        """True when the samples span at least ``seconds``."""
        return len(self.t) > 1 and self.t[-1] - self.t[0] >= seconds * 0.999

    @property
    def error(self) -> np.ndarray:
        """Temperature minus target (K)."""
        return self.temperature - self.target


_ARRAYS = ("t", "temperature", "target", "engaged", "i_set", "tec_i", "pid_output",
           "device_time")


@dataclass
class DeviceWindow:
    """One device's connection: the times of its recent samples (s) and the
    age of the latest successful poll (None before the first)."""

    t: np.ndarray
    period: float
    age: Optional[float]
    now: float = field(default=0.0)  #: the time of the evaluation (s, epoch)


@dataclass(frozen=True)
class Finding:
    """A rule's condition holds: ``value`` (in the rule's unit) and what it
    means, in words (the caller prefixes the device and channel)."""

    value: float
    message: str


OK = "ok"
UNKNOWN = "unknown"
Verdict = Union[Finding, str]


def duration(seconds: float) -> str:
    """``seconds`` in words: ``"45 s"``, ``"2 min"``, ``"1.5 h"``."""
    if seconds < 120:
        return "{:.0f} s".format(seconds)
    if seconds < 7200:
        return "{:.0f} min".format(seconds / 60)
    return "{:.1f} h".format(seconds / 3600)


def _kelvin(value: float) -> str:
    return "{:.0f} mK".format(value * 1000) if abs(value) < 1 else "{:.2f} K".format(value)


# ------------------------------------------------------------- device rules

def offline(w: DeviceWindow, p: dict, active: bool) -> Verdict:
    """No successful poll for ``periods`` poll periods."""
    limit = p["periods"] * w.period
    if w.age is None:
        return UNKNOWN
    if w.age > limit:
        return Finding(w.age, "no answer for {}".format(duration(w.age)))
    return OK


def flapping(w: DeviceWindow, p: dict, active: bool) -> Verdict:
    """At least ``drops`` interruptions (gaps of more than 3 poll periods)
    among the samples of the last ``window_s``."""
    t = w.t[w.t >= w.now - p["window_s"]] if len(w.t) else w.t
    if len(t) < 2:
        return UNKNOWN if active else OK
    gaps = int(np.count_nonzero(np.diff(t) > 3 * w.period))
    if gaps >= p["drops"]:
        return Finding(gaps, "connection lost {} times in {}".format(
            gaps, duration(p["window_s"])))
    return OK


# ------------------------------------------------------------ channel rules

def sensor_open(w: ChannelWindow, p: dict, active: bool) -> Verdict:
    """No temperature in the latest ``samples`` samples (the firmware reads
    an open thermistor as full scale and powers the output down)."""
    n = p["samples"]
    if len(w.temperature) < n:
        return UNKNOWN
    if np.isnan(w.temperature[-n:]).all():
        return Finding(math.nan, "no temperature reading: thermistor open or unplugged"
                                 " (the firmware has switched the output off)")
    return OK


def sensor_implausible(w: ChannelWindow, p: dict, active: bool) -> Verdict:
    """A temperature outside ``min_c``..``max_c`` (a shorted thermistor reads
    far from any real temperature), or a change of at least ``min_jump_k``
    faster than ``max_rate_k_per_s`` between two readings (by the device's
    clock), within the last ``window_s``."""
    w = w.last(p["window_s"])
    temperature = w.temperature
    valid = ~np.isnan(temperature)
    if not valid.any():
        return UNKNOWN if active else OK
    outside = valid & ((temperature < p["min_c"]) | (temperature > p["max_c"]))
    if outside.any():
        value = float(temperature[outside][-1])
        return Finding(value, "reads {:.1f} °C, outside {:g}..{:g} °C: thermistor shorted or"
                              " miswired".format(value, p["min_c"], p["max_c"]))
    clock, temp = w.device_time[valid], temperature[valid]
    if len(clock) > 1:
        step, dt = np.abs(np.diff(temp)), np.diff(clock)
        new = dt > 0  # the same reading polled twice is no change
        rate = step[new] / dt[new]
        jumps = rate[(rate > p["max_rate_k_per_s"]) & (step[new] >= p["min_jump_k"])]
        if len(jumps):
            worst = float(jumps.max())
            return Finding(worst, "temperature jumped at {:.1f} K/s, faster than any thermal"
                                  " mass: a loose contact or a failing thermistor".format(worst))
    return OK


def tec_open(w: ChannelWindow, p: dict, active: bool) -> Verdict:
    """A set current of at least ``min_set_a`` while the measured current
    stays below ``max_measured_a``, for ``hold_s``: the TEC circuit is open."""
    w = w.last(p["hold_s"])
    if not w.covers(p["hold_s"]):
        return UNKNOWN
    set_, measured = np.abs(w.i_set), np.abs(w.tec_i)
    if np.isnan(set_).any() or np.isnan(measured).any():
        return UNKNOWN if active else OK
    if (set_ >= p["min_set_a"]).all() and (measured < p["max_measured_a"]).all():
        value = float(np.median(set_))
        return Finding(value, "{:.2f} A set but no current flows for {}: TEC disconnected"
                              " or its cable cut".format(value, duration(p["hold_s"])))
    return OK


def runaway(w: ChannelWindow, p: dict, active: bool) -> Verdict:
    """The PID engaged, its output pinned within ``margin`` of an output
    limit for ``hold_s`` and the error not shrinking by ``shrink_k``: the
    TEC can no longer move the heat (heat sink too hot, wrong polarity)."""
    w = w.last(p["hold_s"])
    if not w.covers(p["hold_s"]) or w.max_i_pos is None or w.max_i_neg is None:
        return UNKNOWN
    if not w.engaged.all():
        return OK
    out = w.i_set
    high = out >= (1 - p["margin"]) * w.max_i_pos
    low = out <= -(1 - p["margin"]) * w.max_i_neg
    if not (high.all() or low.all()):
        return OK
    error = np.abs(w.error)
    if np.isnan(error[[0, -1]]).any():
        return UNKNOWN
    shrunk = error[0] - error[-1]
    if shrunk >= p["shrink_k"]:
        return OK
    return Finding(float(error[-1]), "output pinned at its {:.2f} A limit for {} and still"
                                     " {} off target: the TEC cannot carry the heat (heat"
                                     " sink too hot?)".format(float(out[-1]), duration(p["hold_s"]),
                                                             _kelvin(float(error[-1]))))


def out_of_band(w: ChannelWindow, p: dict, active: bool) -> Verdict:
    """A settled, engaged channel with |error| above ``band_k`` for
    ``hold_s``; clears once it is back within ``(1 - hysteresis)`` of the band."""
    if not len(w.t):
        return UNKNOWN
    if not w.engaged[-1]:
        return OK
    if active:
        recent = np.abs(w.last(0).error)
        if np.isnan(recent).any():
            return UNKNOWN
        return OK if recent.max() <= p["band_k"] * (1 - p["hysteresis"]) else \
            Finding(float(w.error[-1]), _band_message(w, p))
    if not w.settled:
        return OK  # settling is the not_settled rule's business
    held = w.last(p["hold_s"])
    if not held.covers(p["hold_s"]) or not held.engaged.all():
        return OK
    error = np.abs(held.error)
    if np.isnan(error).any():
        return UNKNOWN
    if (error > p["band_k"]).all():
        return Finding(float(held.error[-1]), _band_message(held, p))
    return OK


def _band_message(w: ChannelWindow, p: dict) -> str:
    error = float(w.error[-1])
    return "{} {} its setpoint ({:.3f} °C), outside the ±{} band for over {}".format(
        _kelvin(abs(error)), "above" if error > 0 else "below", float(w.target[-1]),
        _kelvin(p["band_k"]), duration(p["hold_s"]))


def not_settled(w: ChannelWindow, p: dict, active: bool) -> Verdict:
    """Still outside the band ``settle_timeout_s`` after a target change."""
    if not len(w.t) or not w.engaged[-1] or w.settled or w.settling_since is None:
        return OK
    waited = float(w.t[-1] - w.settling_since)
    if waited > p["settle_timeout_s"]:
        return Finding(waited, "not settled {} after its target changed to {:.3f} °C (error"
                               " {})".format(duration(waited), float(w.target[-1]),
                                             _kelvin(float(w.error[-1]))))
    return OK


def drift(w: ChannelWindow, p: dict, active: bool) -> Verdict:
    """The least-squares slope of the error over ``window_s`` above
    ``max_k_per_h``, on a channel settled for the whole window (a settling
    transient is no drift)."""
    w = w.last(p["window_s"])
    if not w.covers(p["window_s"] * 0.9):
        return UNKNOWN if active else OK
    if not w.settled or w.settled_since is None or w.settled_since > w.t[0]:
        return OK
    error = w.error
    keep = ~np.isnan(error) & (w.engaged > 0)
    if keep.sum() < 10:
        return UNKNOWN if active else OK
    slope = float(np.polyfit(w.t[keep] - w.t[-1], error[keep], 1)[0]) * 3600
    if abs(slope) > p["max_k_per_h"]:
        return Finding(slope, "error drifting by {}/h over the last {}".format(
            _kelvin(slope), duration(p["window_s"])))
    return OK


@dataclass(frozen=True)
class Rule:
    """A detection rule: its function, scope, default severity and parameters."""

    name: str
    check: Callable[..., Verdict]
    scope: str  #: ``"device"`` or ``"channel"``
    severity: str
    defaults: dict
    enabled: bool = True

    def window_s(self, params: dict) -> float:
        """Seconds of samples the rule looks at."""
        return max((v for k, v in params.items() if k.endswith("_s")), default=0.0)


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("offline", offline, "device", "critical", {"periods": 10}),
    Rule("flapping", flapping, "device", "warning", {"window_s": 600.0, "drops": 3}),
    Rule("sensor_open", sensor_open, "channel", "critical", {"samples": 2}),
    Rule("sensor_implausible", sensor_implausible, "channel", "critical",
         {"min_c": -40.0, "max_c": 150.0, "max_rate_k_per_s": 5.0, "min_jump_k": 1.0,
          "window_s": 10.0}),
    Rule("tec_open", tec_open, "channel", "critical",
         {"min_set_a": 0.3, "max_measured_a": 0.1, "hold_s": 10.0}),
    Rule("runaway", runaway, "channel", "critical",
         {"margin": 0.02, "hold_s": 60.0, "shrink_k": 0.05}),
    Rule("out_of_band", out_of_band, "channel", "warning",
         {"band_k": 0.05, "hold_s": 60.0, "hysteresis": 0.2}),
    Rule("not_settled", not_settled, "channel", "warning", {"settle_timeout_s": 600.0}),
    Rule("drift", drift, "channel", "warning", {"window_s": 3600.0, "max_k_per_h": 0.01},
         enabled=False),
)}
