"""The bridge's poll loop: one device connection, a drift-free schedule.

The n-th poll is due at ``start + n * period`` on the monotonic clock.  A poll
that finishes late makes the loop skip the instants it missed (counted in
:attr:`Poller.skipped`), so polls are never bunched.  Each successful poll is
stamped with the wall-clock time of its request (integer epoch ms), appended to
the :class:`~.store.Store` and kept as the latest reading; a failed poll
records nothing (a gap) and is counted by reason.
"""

import asyncio
import collections
import logging
import math
import sys
import threading
import time
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from .. import protocol
from ..driver import Thermostat
from . import schema
from .store import Store

logger = logging.getLogger(__name__)

# get_pid() (PID targets) is fetched on every n-th successful poll only.
PID_EVERY = 10
# Longest time the poll thread waits for the GIL while another thread runs.
SWITCH_INTERVAL_S = 0.0005
# Polls this close together (ms) get distinct, increasing timestamps.
COLLISION_MS = 10


async def cancel_task(task: asyncio.Task) -> None:
    """Cancel ``task`` and wait until it has ended."""
    # asyncio.wait_for (Python < 3.12) can swallow a cancellation that races
    # with a reply, so cancel until the task has really ended.
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)


class Sample(NamedTuple):
    """One successful poll."""

    ts: int                  #: epoch ms of the reply
    monotonic: float         #: monotonic clock at the reply, for freshness
    report: list             #: both channels' report objects as received
    columns: tuple           #: the stored columns
    values: np.ndarray       #: the stored row, float64 (NaN for null)
    stored: bool = True      #: False when the store refused the row or the CSV write failed

    @property
    def time(self) -> str:
        """``ts`` as ISO-8601 UTC with milliseconds."""
        return schema.iso_time(self.ts)

    def row(self) -> dict:
        """The stored row keyed by CSV column names, None for missing values."""
        values = [None if math.isnan(v) else v for v in self.values.tolist()]
        return {"time": self.time, "ts": self.ts, **dict(zip(self.columns, values))}


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
    """Polls one Thermostat and records the samples in a store.

    :param store: where samples go (memory ring and CSV log).
    :param period: seconds between polls.
    :param fields: report fields to record, or None for every numeric or
        boolean field of the first report.  Checked against the first
        report: an unknown name makes the poller stop with :attr:`fatal` set.
    :param on_sample: called with each new :class:`Sample`.
    :param clock: monotonic clock (seconds), for the schedule and freshness.
    :param wall_clock: wall clock (epoch seconds), for the samples' ``ts``.
    """

    def __init__(self, store: Store, period: float, fields: Optional[Sequence[str]] = None,
                 on_sample: Optional[Callable[["Sample"], None]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.store = store
        self.period = period
        self.requested_fields = None if fields is None else list(fields)
        self.fields: Optional[list] = None
        self.columns: tuple = ()
        self.driver: Optional[Thermostat] = None
        self.latest: Optional[Sample] = None
        self.targets: Optional[list] = None
        self.hwrev: Optional[str] = None
        self.polls_ok = 0
        self.failures: collections.Counter = collections.Counter()
        self.skipped = 0
        self.last_duration: Optional[float] = None
        self.last_error: Optional[str] = None
        self.fatal: Optional[str] = None
        self.stopped = asyncio.Event()
        self._available: Optional[list] = None
        self._on_sample = on_sample
        self._clock = clock
        self.wall_clock = wall_clock
        self._lock = asyncio.Lock()
        self._task: Optional[asyncio.Task] = None
        self._owner: Optional[asyncio.AbstractEventLoop] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    # ----------------------------------------------------------------- state

    @property
    def polls_failed(self) -> int:
        """Failed polls, all reasons."""
        return sum(self.failures.values())

    @property
    def stale_after(self) -> float:
        """Age in seconds beyond which the latest sample is stale (3 periods)."""
        return 3 * self.period

    def sample_age(self) -> Optional[float]:
        """Seconds since the latest successful poll, None before the first."""
        if self.latest is None:
            return None
        return max(0.0, self._clock() - self.latest.monotonic)

    def fresh(self) -> Optional[Sample]:
        """The latest sample if it is not stale, else None."""
        age = self.sample_age()
        return self.latest if age is not None and age <= self.stale_after else None

    @property
    def connected(self) -> bool:
        """True while the driver holds a device connection."""
        return self.driver is not None and self.driver.connected

    @property
    def firmware(self) -> Optional[str]:
        """The device's firmware dialect, None before it is known."""
        return None if self.driver is None else self.driver.firmware

    # ------------------------------------------------------------- lifecycle

    def start(self, driver: Thermostat) -> None:
        """Start polling ``driver`` on the schedule.

        The poll loop runs on a thread and event loop of its own, so that a
        busy HTTP server never delays a poll; the driver is used only there.
        """
        self.driver = driver
        # A poll takes the GIL several times (wake-up, send, reply, store); at
        # the default 5 ms switch interval a busy HTTP thread delays each step.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._owner = asyncio.get_running_loop()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="thermostat-poller",
                                        daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    async def stop(self) -> None:
        """Stop polling and close the device connection."""
        if self._loop is not None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._shutdown(),
                                                                       self._loop))
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join)
            self._loop.close()
            self._loop = None
        self.stopped.set()

    async def _shutdown(self) -> None:
        """In the poll loop: end the schedule and close the connection."""
        if self._task is not None:
            await cancel_task(self._task)
        if self.driver is not None:
            await self.driver.close()

    def _set_stopped(self) -> None:
        """Set :attr:`stopped` from the poll thread."""
        if self._owner is not None and not self._owner.is_closed():
            self._owner.call_soon_threadsafe(self.stopped.set)

    async def _run(self) -> None:
        self._task = asyncio.current_task()
        start = self._clock()
        n = 0
        while True:
            delay = start + n * self.period - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self._poll(durable=False)
            except PollError:
                pass  # counted and logged by _poll
            except ValueError as e:
                logger.error("%s", e)
                self._set_stopped()
                return
            # The next poll is the first instant not yet passed; those missed are skipped.
            elapsed = (self._clock() - start) / self.period
            following = max(n + 1, math.ceil(elapsed - 1e-9))
            self.skipped += following - n - 1
            n = following

    # ------------------------------------------------------------------ poll

    async def poll_once(self, durable: bool = False) -> Sample:
        """Poll the device now and record the sample; one exchange at a time.

        May be awaited from any event loop: the poll itself runs in the poll
        loop, in turn with the scheduled polls.

        ``durable`` asks the store to sync the CSV row to disk; the sample's
        ``stored`` says whether the row reached the CSV log.  Raises
        :class:`PollError` (after counting it) when the device does not answer
        properly, ValueError when the requested fields are not in the report.
        """
        if self._loop is None or asyncio.get_running_loop() is self._loop:
            return await self._poll(durable)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._poll(durable),
                                                                          self._loop))

    async def _poll(self, durable: bool) -> Sample:
        if self.driver is None:
            raise PollError("not_started", "the poller has not been started")
        if self.fatal is not None:
            raise ValueError(self.fatal)
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
                           "poll failed (%s): %s", reason, e)
                self.last_error = str(e)
                raise PollError(reason, str(e)) from e
            if self.last_error:
                logger.info("polling again after %s", self.last_error)
                self.last_error = None
            ts = self._stamp(requested)
            self.last_duration = self._clock() - began
            try:
                self._resolve_fields(report)
            except ValueError as e:
                self.fatal = str(e)
                raise
            values = schema.row_values(report, self.fields)
            stored = self.store.append(ts, list(self.columns), values, durable=durable)
            if not stored:
                logger.debug("the row at ts %d is not in the CSV log", ts)
            self.latest = Sample(ts, self._clock(), report, self.columns, values, stored)
            if self._on_sample is not None:
                self._on_sample(self.latest)
            # Counted before the details are fetched, so that rows written and
            # polls_ok never disagree while the poll is still busy.
            self.polls_ok += 1
            if (self.polls_ok - 1) % PID_EVERY == 0:
                await self._refresh_details()
            return self.latest

    def _stamp(self, wall: float) -> int:
        """Epoch ms for a new sample, after the latest one even when two polls
        share a millisecond; a larger backward clock step is left to the store."""
        ts = int(wall * 1000)
        if self.latest is not None and self.latest.ts - COLLISION_MS < ts <= self.latest.ts:
            ts = self.latest.ts + 1
        return ts

    async def _refresh_details(self) -> None:
        """Fetch the PID targets (and the hardware revision once); a failure
        here only leaves them as they were."""
        assert self.driver is not None
        try:
            self.targets = [c.get("target") for c in await self.driver.get_pid()]
            if self.hwrev is None:
                rev = (await self.driver.get_hwrev()).get("rev", {})
                self.hwrev = "v{}.{}".format(rev.get("major", "?"), rev.get("minor", "?"))
        except (ConnectionError, TimeoutError, protocol.DeviceError) as e:
            logger.debug("could not fetch PID targets or hardware revision: %s", e)

    def _resolve_fields(self, report: list) -> None:
        available = schema.report_fields(report)
        if available == self._available:
            return
        if self.requested_fields is not None:
            try:
                schema.check_fields(self.requested_fields, available)
            except ValueError as e:
                raise ValueError("--fields: {}".format(e)) from None
            fields = self.requested_fields
        else:
            fields = available
        if self._available is not None and fields != self.fields:
            logger.info("report fields changed; recording %s", ", ".join(fields))
        self._available = available
        self.fields = fields
        self.columns = tuple(schema.columns_for(fields))

    def available_fields(self) -> Optional[list]:
        """Every recordable field of the latest report, None before the first."""
        return None if self._available is None else list(self._available)

