"""One device's poll loop: its connection and its drift-free schedule.

The n-th poll is due at ``start + n * period`` on the monotonic clock.  A poll
that finishes late makes the loop skip the instants it missed (counted in
:attr:`Poller.skipped`), so polls are never bunched.  Each successful poll is
stamped with the wall-clock time of its request (integer epoch ms), published
on the :class:`~.bus.SampleBus` and kept as the latest reading; a failed poll
records nothing (a gap) and is counted by reason.
"""

import asyncio
import collections
import concurrent.futures
import logging
import math
import time
from typing import Awaitable, Callable, Optional, Sequence, TypeVar

from ... import protocol
from ...driver import Thermostat
from .. import schema
from .bus import SampleBus
from .sample import Sample

logger = logging.getLogger(__name__)

# Seconds between reads of the PID targets (get_pid()) for the rows, in the time
# between two polls; they are also read after a failed poll (the device may
# have been reset), as soon as there is time.  Another
# client (an experiment) may change a target at any time: a second keeps the
# rows' setpoint, and the error plotted against it, that close to the truth,
# for one extra exchange per second.
TARGETS_EVERY_S = 1.0
# They wait for a gap between polls with room for twice the last read's
# time, but never longer than this: then they are read after the next poll
# all the same, and a poll they make late is skipped (and counted).  Without
# it, one read that took more than half a period (a slow link, or a loaded
# host for a moment) kept the next ones waiting for a gap that never came: a
# frozen setpoint column and no change by another client seen.
DETAILS_LATE_S = 5.0
# Polls this close together (ms) get distinct, increasing timestamps.
COLLISION_MS = 10
# An exchange of :meth:`Poller.exclusive` starts only when the next poll is
# at least this many poll durations away (else it waits until that poll is
# done), so that it never makes a poll late.
EXCLUSIVE_POLLS = 4
# ... and at least this many seconds away.
EXCLUSIVE_MIN_S = 0.005

T = TypeVar("T")


class PollError(Exception):
    """A poll failed; ``reason`` is the counter label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def failure_reason(e: BaseException) -> str:
    """Counter label for a failed poll."""
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, protocol.ProtocolError):
        return "protocol"
    if isinstance(e, ConnectionError):
        return "connection"
    if isinstance(e, protocol.DeviceError):
        return "device_error"
    return "other"


class Poller:
    """Polls one Thermostat and publishes its samples.

    :param name: the device's name, carried by every sample.
    :param bus: where samples go.
    :param period: seconds between polls.
    :param fields: report fields to record, or None for every numeric or
        boolean field of the first report.  Checked against every report
        whose fields differ from the previous one's: while the device's
        report lacks one of them, its polls record nothing, fail with reason
        ``fields`` and :attr:`fault` says why; polling goes on, so a device
        whose firmware changes back is recorded again.
    :param clock: monotonic clock (seconds), for the schedule and freshness.
    :param wall_clock: wall clock (epoch seconds), for the samples' ``ts``.
    """

    def __init__(self, name: str, bus: SampleBus, period: float,
                 fields: Optional[Sequence[str]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.name = name
        self.bus = bus
        self.period = period
        self.requested_fields = None if fields is None else list(fields)
        self.fields: Optional[list] = None
        self.columns: tuple = ()
        self.driver: Optional[Thermostat] = None
        self.latest: Optional[Sample] = None
        self.targets: Optional[list] = None
        #: Per channel ``{"max_i_pos", "max_i_neg", "max_v"}``, fetched with the targets.
        self.limits: Optional[list] = None
        #: Per channel PID ``parameters`` (gains, output range), fetched with the targets.
        self.gains: Optional[list] = None
        #: Called (in the poll loop, holding the connection) after each read of
        #: the targets, gains and limits.
        self.on_details: Optional[Callable[["Poller"], None]] = None
        self.hwrev: Optional[str] = None
        self.polls_ok = 0
        self.failures: collections.Counter = collections.Counter()
        self.skipped = 0
        self.last_duration: Optional[float] = None
        self.last_error: Optional[str] = None
        #: Why the device's reports cannot be recorded (fields missing), None while they can.
        self.fault: Optional[str] = None
        self._available: Optional[list] = None
        self._clock = clock
        self._targets_read: Optional[float] = None  # clock of the last read, None: due
        self._details_duration = 0.0  # seconds the last read took
        self.wall_clock = wall_clock
        self._lock: Optional[asyncio.Lock] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._next_due: Optional[float] = None  # clock of the next scheduled poll

    # ----------------------------------------------------------------- state

    @property
    def polls_failed(self) -> int:
        """Failed polls, all reasons."""
        return sum(self.failures.values())

    def sample_age(self) -> Optional[float]:
        """Seconds since the latest successful poll, None before the first."""
        if self.latest is None:
            return None
        return max(0.0, self._clock() - self.latest.monotonic)

    @property
    def connected(self) -> bool:
        """True while the driver holds a device connection."""
        return self.driver is not None and self.driver.connected

    @property
    def firmware(self) -> Optional[str]:
        """The device's firmware dialect, None before it is known."""
        return None if self.driver is None else self.driver.firmware

    def available_fields(self) -> Optional[list]:
        """Every recordable field of the latest report, None before the first."""
        return None if self._available is None else list(self._available)

    # -------------------------------------------------------------- schedule

    async def run(self, driver: Thermostat) -> None:
        """Poll ``driver`` on the schedule until cancelled (then close it).

        Every exchange with the device happens in the event loop running this.
        """
        self.driver = driver
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        try:
            await self._schedule()
        finally:
            await driver.close()

    async def _schedule(self) -> None:
        start = self._clock()
        n = 0
        while True:
            self._next_due = start + n * self.period
            delay = self._next_due - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self._poll(None)
            except PollError:
                pass  # counted and logged by _poll
            # The next poll is the first instant not yet passed; those missed are skipped.
            following = self._first_instant_ahead(start, n + 1)
            if self._details_due():
                # In the time left before the next poll, so that reading them
                # does not make a poll late, unless they are overdue.
                slack = start + following * self.period - self._clock()
                if slack > max(self.period / 2, 2 * self._details_duration) or \
                        self._details_overdue():
                    async with self._lock:
                        await self.refresh_details()
                    following = self._first_instant_ahead(start, following)
            self.skipped += following - n - 1
            n = following

    def _first_instant_ahead(self, start: float, n: int) -> int:
        """The first poll instant, ``n`` or after, not yet passed."""
        return max(n, math.ceil((self._clock() - start) / self.period - 1e-9))

    # ------------------------------------------------------------------ poll

    async def poll_once(self, durable: bool = False) -> tuple[Sample, bool]:
        """Poll the device now and publish the sample, in turn with the
        scheduled polls; may be awaited from any event loop.

        With ``durable`` the answer waits until the store has synced the row
        to the CSV log.  Returns ``(sample, stored)``: ``stored`` is False when
        the row did not reach the log (always True without ``durable``).
        Raises :class:`PollError` (after counting it) when the device does
        not answer properly or its report lacks a requested field.
        """
        if self._loop is None:
            raise PollError("not_started", "the poller has not been started")
        ack: Optional[concurrent.futures.Future] = (
            concurrent.futures.Future() if durable else None)
        if asyncio.get_running_loop() is self._loop:
            sample = await self._poll(ack)
        else:
            sample = await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self._poll(ack), self._loop))
        stored = True if ack is None else await asyncio.wrap_future(ack)
        return sample, stored

    async def exclusive(self, work: Callable[[Thermostat], Awaitable[T]]) -> T:
        """Await ``work(driver)`` on this device's connection, between two
        polls, with no other exchange in between; may be awaited from any
        event loop.

        It starts only when the next scheduled poll is not imminent (see
        :data:`EXCLUSIVE_POLLS`), otherwise just after that poll, so the poll
        schedule is kept.  Raises :class:`PollError` before the poller has
        started; whatever ``work`` raises otherwise.
        """
        if self._loop is None:
            raise PollError("not_started", "the poller has not been started")
        if asyncio.get_running_loop() is self._loop:
            return await self._exclusive(work)
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._exclusive(work), self._loop))

    async def _exclusive(self, work: Callable[[Thermostat], Awaitable[T]]) -> T:
        assert self.driver is not None and self._lock is not None
        if self._next_due is not None:
            budget = max(EXCLUSIVE_MIN_S, EXCLUSIVE_POLLS * (self.last_duration or 0.0))
            wait = self._next_due - self._clock()
            if wait < budget:
                # The poll due wakes first (its timer is earlier) and takes
                # the connection; this waits for it in turn.
                await asyncio.sleep(max(0.0, wait) + EXCLUSIVE_MIN_S)
        async with self._lock:
            return await work(self.driver)

    async def _poll(self, ack: Optional[concurrent.futures.Future]) -> Sample:
        assert self.driver is not None and self._lock is not None
        async with self._lock:
            began = self._clock()
            requested = self.wall_clock()
            try:
                report = await self.driver.report()
            except (ConnectionError, TimeoutError, protocol.DeviceError) as e:
                self.last_duration = self._clock() - began
                reason = failure_reason(e)
                self.failures[reason] += 1
                # Only the first failure of a streak is a warning: no log flood
                # while the device is away.
                logger.log(logging.DEBUG if self.last_error else logging.WARNING,
                           "%s: poll failed (%s): %s", self.name, reason, e)
                self.last_error = str(e)
                self.targets = self._targets_read = None  # unknown until read again
                raise PollError(reason, str(e)) from e
            if self.last_error:
                logger.info("%s: polling again after %s", self.name, self.last_error)
                self.last_error = None
            ts = self._stamp(requested)
            self.last_duration = self._clock() - began
            self._resolve_fields(report)
            values = schema.row_values(report, self.fields, targets=self.targets)
            self.latest = Sample(self.name, ts, self._clock(), report, self.columns, values, ack)
            self.bus.publish(self.latest)
            self.polls_ok += 1
            return self.latest

    def _stamp(self, wall: float) -> int:
        """Epoch ms for a new sample, after the latest one even when two polls
        share a millisecond; a larger backward clock step is left to the store."""
        ts = int(wall * 1000)
        if self.latest is not None and self.latest.ts - COLLISION_MS < ts <= self.latest.ts:
            ts = self.latest.ts + 1
        return ts

    def _details_due(self) -> bool:
        return self._targets_read is None or \
            self._clock() - self._targets_read >= TARGETS_EVERY_S

    def _details_overdue(self) -> bool:
        # Not while the device fails to answer polls: the read would fail too.
        return self.last_error is None and (
            self._targets_read is None or
            self._clock() - self._targets_read >= DETAILS_LATE_S)

    def target_written(self, ch: int, value: float) -> None:
        """Channel ``ch``'s target was just written (and taken) on this
        connection: the next rows carry it, without waiting for the next
        read of the targets."""
        if self.targets is not None:
            self.targets[ch] = value

    async def refresh_details(self) -> None:
        """Fetch the PID targets, gains and output limits (and the hardware
        revision once); a failure here only leaves them as they were.  Only
        while holding the connection: in the schedule, or in
        :meth:`exclusive` (a write that changed them)."""
        assert self.driver is not None
        began = self._targets_read = self._clock()
        try:
            pid = await self.driver.get_pid()
            self.targets = [c.get("target") for c in pid]
            self.gains = [dict(c.get("parameters") or {}) for c in pid]
            self.limits = [{k: c.get(k) for k in ("max_i_pos", "max_i_neg", "max_v")}
                           for c in await self.driver.get_output()]
            if self.hwrev is None:
                rev = (await self.driver.get_hwrev()).get("rev", {})
                self.hwrev = "v{}.{}".format(rev.get("major", "?"), rev.get("minor", "?"))
        except (ConnectionError, TimeoutError, protocol.DeviceError) as e:
            logger.debug("%s: could not fetch PID targets, limits or hardware revision: %s",
                         self.name, e)
        else:
            if self.on_details is not None:
                try:
                    self.on_details(self)
                except Exception:  # a bug there must not stop polling
                    logger.exception("%s: handling the polled settings failed", self.name)
        self._details_duration = self._clock() - began

    def _resolve_fields(self, report: list) -> None:
        """Take the fields of ``report``; PollError (counted as ``fields``)
        when it lacks a requested one."""
        available = schema.recordable_fields(report)
        if available == self._available and self.fault is None:
            return
        if self.requested_fields is not None:
            missing = [f for f in self.requested_fields if f not in available]
            if missing:
                self.failures["fields"] += 1
                fault = "the report lacks the configured field(s) {}; it has {}".format(
                    ", ".join(missing), ", ".join(available))
                if fault != self.fault:
                    logger.error("%s: %s; nothing is recorded until it has them", self.name,
                                 fault)
                self.fault = fault
                self._available = available
                raise PollError("fields", fault)
            if self.fault is not None:
                logger.info("%s: the report has the configured fields again", self.name)
                self.fault = None
            fields = self.requested_fields
        else:
            fields = available
        if self._available is not None and fields != self.fields:
            logger.info("%s: report fields changed; recording %s", self.name, ", ".join(fields))
        self._available = available
        self.fields = fields
        self.columns = tuple(schema.columns_for(fields))
