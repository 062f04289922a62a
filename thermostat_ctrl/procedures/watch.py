"""A channel's regulation at a glance, without waiting: in band or not, since
when, and the error's mean and spread over a hold window.

:class:`ChannelWatch` keeps the channel's recent samples from a background
task started by the first question and stopped after :data:`IDLE_S` without
one, so each later :meth:`ChannelWatch.state` answers from memory at once.
An experiment can therefore check before each point instead of blocking in
:func:`~.basic.wait_settled`.  Time is the device's sample clock.
"""

import asyncio
import collections
import math
import time
from typing import NamedTuple, Optional

from ..driver import Thermostat
from .basic import check_number, samples

__all__ = ["ChannelWatch", "summarize", "HOLD_MAX_S", "IDLE_S"]

#: Longest hold window a question may ask for (device seconds).
HOLD_MAX_S = 3600.0
#: Samples kept: at least this many device seconds, and twice the longest hold asked.
RETAIN_MIN_S = 60.0
#: Wall seconds without a question after which the background sampling stops.
IDLE_S = 60.0


class Point(NamedTuple):
    """One sample of the channel."""

    time: float                   #: device clock, s
    temperature: Optional[float]  #: degC, None without thermistor
    target: float                 #: degC
    engaged: bool                 #: PID engaged
    taken: float                  #: wall clock (monotonic) when it was read


def _in_band(p: Point, tolerance: float) -> bool:
    return p.engaged and p.temperature is not None and abs(p.temperature - p.target) <= tolerance


def summarize(points, ch: int, tolerance: float, hold_s: float,
              now: Optional[float] = None) -> dict:
    """The state of channel ``ch`` from its ``points`` (oldest first, at least
    one): see :meth:`ChannelWatch.state` for the keys."""
    last = points[-1]
    since = None
    for p in reversed(points):
        if not _in_band(p, tolerance):
            break
        since = p.time
    window = [p for p in points if p.time >= last.time - hold_s]
    errors = [p.temperature - p.target for p in window if p.temperature is not None]
    mean = math.fsum(errors) / len(errors) if errors else None
    std = (math.sqrt(math.fsum((e - mean) ** 2 for e in errors) / len(errors))
           if errors else None)
    in_band_s = 0.0 if since is None else last.time - since
    return {
        "channel": ch,
        "time": last.time,
        "age_s": max(0.0, (time.monotonic() if now is None else now) - last.taken),
        "temperature": last.temperature,
        "target": last.target,
        "error": None if last.temperature is None else last.temperature - last.target,
        "pid_engaged": last.engaged,
        "tolerance": tolerance,
        "in_band": since is not None,
        "in_band_since": since,
        "in_band_s": in_band_s,
        "hold_s": hold_s,
        "settled": since is not None and in_band_s >= hold_s,
        "window_s": last.time - window[0].time,
        "samples": len(window),
        "error_mean": mean,
        "error_std": std,
    }


class ChannelWatch:
    """The recent samples of channel ``ch`` of ``driver``, kept by a
    background task on the running loop."""

    def __init__(self, driver: Thermostat, ch: int):
        self._driver = driver
        self.ch = ch
        self._points: collections.deque = collections.deque()
        self._retain_s = RETAIN_MIN_S
        self._asked = time.monotonic()
        self._task: Optional[asyncio.Task] = None
        self._fresh = asyncio.Event()

    async def state(self, tolerance: float = 0.01, hold_s: float = 10.0) -> dict:
        """The channel's state now, from the samples kept:

        ``time`` (device s) and ``age_s`` (wall s) of the latest sample, its
        ``temperature``, ``target``, ``error`` (K) and ``pid_engaged``;
        ``in_band`` (within ``tolerance`` K of the target, PID engaged),
        ``in_band_since`` (device time of the first sample of the present
        streak, None out of band; the oldest sample kept when the streak is
        older), ``in_band_s``, ``settled`` (in band for ``hold_s``), and over
        the last ``hold_s`` device seconds: ``window_s`` (their span),
        ``samples``, ``error_mean`` and ``error_std`` (K).

        The first question (and the first after :data:`IDLE_S` s without
        one, or after a connection failure) waits for one sample; the
        device's errors reach the caller then.
        """
        check_number("tolerance", tolerance)
        check_number("hold_s", hold_s, zero_ok=True)
        if hold_s > HOLD_MAX_S:
            raise ValueError("hold_s must be at most {} s, not {!r}".format(HOLD_MAX_S, hold_s))
        self._retain_s = max(self._retain_s, 2 * hold_s)
        self._asked = time.monotonic()
        if self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled():
                self._task.exception()  # retrieved: it is raised again below if it persists
            self._points.clear()
            self._fresh.clear()
            self._task = asyncio.ensure_future(self._sample())
        if not self._points:
            fresh = asyncio.ensure_future(self._fresh.wait())
            try:
                await asyncio.wait({fresh, self._task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                fresh.cancel()
            if not self._points:
                await self._task  # raises the sampler's error
                raise ConnectionError("channel {}: the device gave no sample".format(self.ch))
        return summarize(self._points, self.ch, float(tolerance), float(hold_s))

    async def _sample(self) -> None:
        async for rep in samples(self._driver, self.ch):
            target = (await self._driver.get_pid())[self.ch]["target"]
            points = self._points
            if points and rep["time"] < points[-1].time:
                points.clear()  # the device rebooted: the streak ends here
            points.append(Point(rep["time"], rep["temperature"], target,
                                bool(rep["pid_engaged"]), time.monotonic()))
            while points[-1].time - points[0].time > self._retain_s:
                points.popleft()
            self._fresh.set()
            if time.monotonic() - self._asked > IDLE_S:
                return

    def close(self) -> None:
        """Stop the background sampling."""
        if self._task is not None:
            self._task.cancel()
