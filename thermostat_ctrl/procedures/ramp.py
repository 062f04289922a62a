"""Setpoint ramp: a channel's PID target moved to a new value at a limited rate.

The host drives the ramp: on every new sample of the channel the target is
moved on by ``rate`` times the device time since the previous step (one
sample period when no sample is missed), so the firmware's PID sees a
staircase of the rate asked for and never a larger jump.  After a lost
connection the ramp goes on from the first new sample, with no catching up.

A lost connection does not leave an unknown target.  The ramp retries for
``retry_s`` wall seconds; when the device answers again it reads the target
back.  If the device kept running and its target is the last one written
(or the one before, a write lost in flight), the ramp resumes from it.  If
the device rebooted, or something else changed its target, the ramp stops
with a :class:`~.basic.ProcedureError` that says what the target is now.
If the device does not come back, the ConnectionError says which target it
was last given.  An abort (or cancellation) leaves the target where the
ramp had brought it, and says so.
"""

import asyncio
import math
import time
from typing import Callable, Optional

from .. import protocol
from ..driver import Thermostat
from .basic import (SAFE_WINDOW, Aborted, ProcedureError, check_number, check_target,
                    check_window, samples)

__all__ = ["ramp"]

_SAME_K = 1e-4  # a target read back this close to one written is that one (f32 on flash)


async def ramp(driver: Thermostat, ch: int, target: float, rate: float, *,
               safe_window: tuple = SAFE_WINDOW, retry_s: float = 30.0,
               on_progress: Optional[Callable[[dict], None]] = None,
               abort: Optional[asyncio.Event] = None) -> dict:
    """Move channel ``ch``'s PID target from its present value to ``target``
    °C at ``rate`` K/s (of device time) at most.

    Returns ``{"channel", "start", "target", "rate", "duration_s", "steps"}``
    once the target is written.  ``on_progress`` is called with ``state``
    ("ramping", "reconnecting", "done"), ``setpoint`` (the target written so
    far), ``target``, ``elapsed_s`` and ``remaining_s``.  ValueError for a
    bad argument (a rate of 0 or below, a target outside ``safe_window``)
    before anything is sent; :class:`~.basic.Aborted` on ``abort``;
    :class:`~.basic.ProcedureError` when the device rebooted or its target
    was changed by someone else; ConnectionError / TimeoutError when the
    device stays away longer than ``retry_s``.
    """
    protocol.check_channel(ch)
    check_target(target, check_window(safe_window))
    protocol.format_number(rate, "rate")
    if not rate > 0:
        raise ValueError("rate must be positive (K/s), not {!r}".format(rate))
    check_number("retry_s", retry_s)
    run = _Ramp(driver, ch, target, rate, retry_s, on_progress, abort)
    return await run.go()


class _Ramp:
    def __init__(self, driver, ch, target, rate, retry_s, on_progress, abort):
        self.driver, self.ch, self.target, self.rate = driver, ch, target, rate
        self.retry_s, self.on_progress, self.abort = retry_s, on_progress, abort
        self.start = self.setpoint = self.previous = None
        self.steps = 0
        self.elapsed = 0.0
        self.last_t = None     # device time of the last sample seen ...
        self.last_wall = None  # ... and the wall time it was seen
        self.origin = None     # (device, wall) time of the first sample: the device's pace

    def progress(self, state: str) -> None:
        if self.on_progress is not None:
            left = abs(self.target - self.setpoint) / self.rate
            self.on_progress({"channel": self.ch, "state": state, "setpoint": self.setpoint,
                              "target": self.target, "rate": self.rate,
                              "elapsed_s": self.elapsed, "remaining_s": left})

    async def go(self) -> dict:
        self.start = self.setpoint = (await self.driver.get_pid())[self.ch]["target"]
        self.previous = self.setpoint
        try:
            while self.setpoint != self.target:
                try:
                    await self.follow()
                except (ConnectionError, TimeoutError) as lost:
                    await self.reconnect(lost)
        except (Aborted, asyncio.CancelledError):
            self.progress("stopped")
            raise
        self.progress("done")
        return {"channel": self.ch, "start": self.start, "target": self.target,
                "rate": self.rate, "duration_s": self.elapsed, "steps": self.steps}

    async def follow(self) -> None:
        """Step the target on every new sample until it is reached."""
        since = None  # device time of the previous step (or of the stream's first sample)
        async for rep in samples(self.driver, self.ch):
            if self.abort is not None and self.abort.is_set():
                raise Aborted("channel {}: ramp aborted by the caller; the target stays at"
                              " {:.4f} degC".format(self.ch, self.setpoint))
            t = rep["time"]
            if self.last_t is not None and t < self.last_t:  # a clock gone back
                await self.stop_rebooted()
            self.seen(t)
            if since is None or t <= since:
                since = t
                continue
            step = self.rate * (t - since)
            self.elapsed += t - since
            since = t
            left = self.target - self.setpoint
            # (with a float's tolerance: the sum of the steps may fall short by a rounding)
            value = self.target if abs(left) <= step * (1 + 1e-9) else \
                self.setpoint + math.copysign(step, left)
            self.previous = self.setpoint
            await self.driver.set_target(self.ch, value)
            self.setpoint = value
            self.steps += 1
            self.progress("ramping")
            if value == self.target:
                return

    async def reconnect(self, lost: Exception) -> None:
        """Wait for the device; resume if it kept the ramp's target, else stop."""
        self.progress("reconnecting")
        deadline = time.monotonic() + self.retry_s
        while True:
            if self.abort is not None and self.abort.is_set():
                raise Aborted("channel {}: ramp aborted by the caller while the device was"
                              " away; its target was last set to {:.4f} degC".format(
                                  self.ch, self.setpoint))
            try:
                report = (await self.driver.report())[self.ch]
                now = (await self.driver.get_pid())[self.ch]["target"]
                break
            except (ConnectionError, TimeoutError) as e:
                if time.monotonic() > deadline:
                    raise type(e)(
                        "channel {}: the device is away ({}); the ramp stopped after {} s of"
                        " retries; its target was last set to {:.4f} degC ({:.4f} degC if the"
                        " last write was lost)".format(self.ch, lost, self.retry_s,
                                                       self.setpoint, self.previous)) from e
                await asyncio.sleep(0.1)
        if self.rebooted(report["time"]):
            await self.stop_rebooted(report, now)
        if not any(abs(now - known) <= _SAME_K for known in (self.setpoint, self.previous)):
            await self.stop_rebooted(report, now, "rebooted or was set by another client")
        self.setpoint = now  # resume from what the device holds

    def seen(self, t: float) -> None:
        wall = time.monotonic()
        self.last_t, self.last_wall = t, wall
        if self.origin is None:
            self.origin = (t, wall)

    def rebooted(self, t: float) -> bool:
        """After a lost connection: True when the device's uptime ``t`` has
        gone back, or is behind where its clock should be by now by more than
        half the time since the last sample (at the pace seen over 2 s of
        device time or more): it has started again."""
        if self.last_t is None:
            return False
        if t < self.last_t:
            return True
        t0, wall0 = self.origin
        if self.last_t - t0 < 2.0 or self.last_wall <= wall0:
            return False
        pace = (self.last_t - t0) / (self.last_wall - wall0)
        return t < self.last_t + 0.5 * pace * (time.monotonic() - self.last_wall)

    async def stop_rebooted(self, report: Optional[dict] = None, now: Optional[float] = None,
                            what: str = "rebooted") -> None:
        """Stop, naming the target and PID state the device has now."""
        if report is None:
            report = (await self.driver.report())[self.ch]
            now = (await self.driver.get_pid())[self.ch]["target"]
        raise ProcedureError(
            "channel {}: the device {} during the ramp ({:.4f} -> {:.4f} degC, set to {:.4f}"
            " degC so far); its target is now {:.4f} degC and its PID is {}; the ramp"
            " stopped".format(self.ch, what, self.start, self.target, self.setpoint, now,
                              "engaged" if report["pid_engaged"] else "not engaged"))
