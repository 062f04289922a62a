"""Datasets: per-point records of a scan, and the live values of a lab's
channels that the dashboard's applets show.

Live datasets (written by the ``ThermostatMonitor`` experiment and by the
bridge's ``--artiq-master`` sink, under the same names):

* ``thermostat.<device>.ch<N>.temperature``, ``.error``, ``.target``
  (degC, K; NaN while unknown) and ``.state`` (a string: ``in_band``,
  ``out_of_band``, ``off``, ``fault``, ...), for ``big_number``;
* ``thermostat.<device>.ch<N>.window_time`` (s before the latest sample,
  ``-window_s..0``) and ``.window_temperature``: the rolling window as
  arrays, for ``plot_xy ... --x ...window_time``.
"""

import collections
import math
from typing import Any, Optional

import numpy as np

__all__ = ["PointRecorder", "FIELDS", "LiveWindow", "live_key", "live_values", "WINDOW_S"]

#: Seconds of samples in a rolling window by default.
WINDOW_S = 600.0


def live_key(device: str, ch: int, field: str) -> str:
    """The live dataset of ``field`` of channel ``ch`` of ``device``."""
    return "thermostat.{}.ch{}.{}".format(device, ch, field)


class LiveWindow:
    """The last ``window_s`` seconds of one channel's temperatures."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._points: collections.deque = collections.deque()

    def add(self, t: float, temperature: Optional[float]) -> None:
        """Add the sample of time ``t`` (s); a sample at the latest's time is
        ignored, one before it (a device clock after a reboot) starts the
        window again; a None temperature is kept as a gap (NaN)."""
        points = self._points
        if points and t == points[-1][0]:
            return
        if points and t < points[-1][0]:
            points.clear()
        points.append((t, math.nan if temperature is None else float(temperature)))
        while points[-1][0] - points[0][0] > self.window_s:
            points.popleft()

    def arrays(self) -> tuple:
        """``(time, temperature)`` arrays, time in s before the latest sample."""
        if not self._points:
            return np.zeros(0), np.zeros(0)
        t, y = (np.array(column, dtype=float) for column in zip(*self._points))
        return t - t[-1], y


def live_values(device: str, ch: int, temperature: Optional[float], target: Optional[float],
                state: Optional[str], window: LiveWindow) -> dict:
    """Every live dataset of one channel: key -> value (see the module doc)."""
    def number(value):
        return math.nan if value is None else float(value)

    error = None if temperature is None or target is None else temperature - target
    times, temperatures = window.arrays()
    return {live_key(device, ch, "temperature"): number(temperature),
            live_key(device, ch, "error"): number(error),
            live_key(device, ch, "target"): number(target),
            live_key(device, ch, "state"): state or "unknown",
            live_key(device, ch, "window_time"): times,
            live_key(device, ch, "window_temperature"): temperatures}

#: The arrays a :class:`PointRecorder` keeps, one value per point, and what
#: each is taken from in a ``channel_state``.
FIELDS = {
    "setpoint": "target",          # degC
    "temperature": "temperature",  # degC, the latest sample
    "error": "error_mean",         # K, mean over the hold window
    "error_std": "error_std",      # K, spread over the hold window
    "time": "time",                # device clock, s
}


class PointRecorder:
    """Datasets ``<prefix>.<field>`` for each of :data:`FIELDS`, arrays of
    ``points`` values (NaN until recorded), archived into the run's HDF5
    results (``datasets/<prefix>.<field>``) and, with ``broadcast``, shown
    live in the dashboard (``plot_xy <prefix>.temperature --x
    <prefix>.setpoint``).
    """

    def __init__(self, experiment: Any, prefix: str, points: int, broadcast: bool = True):
        if not isinstance(points, int) or points < 1:
            raise ValueError("points must be a positive integer, not {!r}".format(points))
        self.experiment = experiment
        self.prefix = prefix
        self.points = points
        for field in FIELDS:
            experiment.set_dataset(self.key(field), np.full(points, np.nan),
                                   broadcast=broadcast, archive=True)

    def key(self, field: str) -> str:
        """The dataset key of ``field``."""
        return "{}.{}".format(self.prefix, field)

    def record(self, index: int, state: dict) -> None:
        """Record point ``index`` from a ``channel_state`` (None values: NaN)."""
        if not 0 <= index < self.points:
            raise ValueError("index must be 0..{}, not {!r}".format(self.points - 1, index))
        for field, source in FIELDS.items():
            value = state.get(source)
            self.experiment.mutate_dataset(self.key(field), index,
                                           math.nan if value is None else float(value))
