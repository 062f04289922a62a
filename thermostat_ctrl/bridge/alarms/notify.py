"""Notifications of alarms through Apprise (mail, JSON webhooks, Slack,
Mattermost, Teams, ntfy, ...: one URL per receiver).

A message goes out when an alarm is raised and when it clears, never on
every sample; a silenced alarm sends neither.  Per alarm (its device,
channel and rule) a raise within :data:`MIN_INTERVAL_S` of the previous one
that was sent is counted as suppressed, with its clear, so a flapping alarm
does not flood anyone.  A failed delivery is retried with exponential
backoff (:data:`BACKOFF_S` doubling up to :data:`BACKOFF_MAX_S`, at most
:data:`ATTEMPTS` tries).  All of it happens on the notifier's own thread:
no delivery, slow or failing, delays a poll.
"""

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..storage.csvformat import iso_time
from .rules import duration

logger = logging.getLogger(__name__)

__all__ = ["Notifier", "NotifierState", "check_urls", "MIN_INTERVAL_S"]

MIN_INTERVAL_S = 300.0
BACKOFF_S = 2.0
BACKOFF_MAX_S = 300.0
ATTEMPTS = 8
#: Most messages waiting; beyond, the oldest is dropped (and counted).
MAX_PENDING = 1000


def _apprise():
    import apprise  # imported when needed: loading its plugins takes a while
    return apprise


def _plugin(url: str):
    return _apprise().Apprise.instantiate(url, suppress_exceptions=True)


def check_urls(urls: Sequence[str], where: str = "--notify") -> tuple:
    """``urls`` as a tuple if Apprise can deliver to each, else ValueError
    naming the one it cannot (by its scheme only: a URL may hold a password)."""
    for url in urls:
        if not isinstance(url, str) or _plugin(url) is None:
            scheme = url.split("://")[0] if isinstance(url, str) and "://" in url else "?"
            raise ValueError("{}: not a notification URL Apprise can use ({}://...); see"
                             " https://github.com/caronc/apprise/wiki".format(where, scheme))
    return tuple(urls)


@dataclass
class NotifierState:
    """Counters of one receiver."""

    url: str  #: with any secret masked
    sent: int = 0
    failed: int = 0  #: messages given up after every attempt
    retries: int = 0
    pending: int = 0
    suppressed: int = 0  #: raises (and their clears) not sent: rate limit
    dropped: int = 0  #: messages lost because too many were waiting
    last_error: Optional[str] = None


class _Target:
    def __init__(self, url: str):
        self.plugin = _plugin(url)
        self.state = NotifierState(self.plugin.url(privacy=True))


class Notifier:
    """Delivers the alarm book's raises and clears to every URL."""

    def __init__(self, urls: Sequence[str], min_interval_s: float = MIN_INTERVAL_S,
                 backoff_s: float = BACKOFF_S):
        self.min_interval_s = min_interval_s
        self.backoff_s = backoff_s
        self._targets = [_Target(url) for url in urls]
        self._queue: list = []  # heap of (due, n, target index, attempt, title, body, type)
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._last_sent: dict[tuple, float] = {}
        self._suppressed: set = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="notify")

    def states(self) -> list[NotifierState]:
        """Each receiver's counters (copies)."""
        with self._cond:
            return [NotifierState(**vars(t.state)) for t in self._targets]

    def start(self) -> None:
        """Start delivering."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; messages still waiting are given up."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def on_alarm(self, event: str, alarm: dict) -> None:
        """An :class:`~.book.AlarmBook` listener: queue the message of a raise or a clear."""
        if event not in ("raised", "cleared") or alarm.get("silenced"):
            return
        key = (alarm["device"], alarm["channel"], alarm["rule"])
        now = time.monotonic()
        with self._cond:
            if event == "raised":
                last = self._last_sent.get(key)
                if last is not None and now - last < self.min_interval_s:
                    self._suppressed.add(key)
                    for target in self._targets:
                        target.state.suppressed += 1
                    return
                self._last_sent[key] = now
            elif key in self._suppressed:
                self._suppressed.discard(key)
                return
            title, body, kind = _message(event, alarm)
            for index, target in enumerate(self._targets):
                if len(self._queue) >= MAX_PENDING * len(self._targets):
                    dropped = heapq.heappop(self._queue)
                    self._targets[dropped[2]].state.pending -= 1
                    self._targets[dropped[2]].state.dropped += 1
                heapq.heappush(self._queue, (now, next(self._order), index, 1, title, body,
                                             kind))
                target.state.pending += 1
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                        not self._queue or self._queue[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._queue
                                    else self._queue[0][0] - time.monotonic())
                if self._stopped:
                    return
                job = heapq.heappop(self._queue)
            self._deliver(*job)

    def _deliver(self, due: float, order: int, index: int, attempt: int, title: str,
                 body: str, kind: str) -> None:
        target = self._targets[index]
        apprise = _apprise()
        with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as captured:
            try:
                ok = target.plugin.notify(body=body, title=title, notify_type=kind)
            except Exception as e:  # a plugin's bug is one failed delivery
                ok = False
                logger.warning("notification to %s failed: %s", target.state.url, e)
        with self._cond:
            state = target.state
            if ok:
                state.sent += 1
                state.pending -= 1
                state.last_error = None
                return
            state.last_error = (captured.getvalue().strip().splitlines() or ["failed"])[-1]
            if attempt >= ATTEMPTS:
                state.failed += 1
                state.pending -= 1
                logger.error("gave up notifying %s after %d attempts: %s", state.url,
                             attempt, state.last_error)
                return
            state.retries += 1
            delay = min(BACKOFF_MAX_S, self.backoff_s * 2 ** (attempt - 1))
            logger.warning("notification to %s failed (%s); retrying in %s", state.url,
                           state.last_error, duration(delay))
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._order), index,
                                         attempt + 1, title, body, kind))


def _message(event: str, alarm: dict) -> tuple[str, str, Any]:
    kinds = _apprise().NotifyType
    severity = alarm["severity"].upper()
    if event == "raised":
        title = "[{}] {}".format(severity, alarm["message"])
        body = "{}\n\nRule {} ({}), raised {}.".format(
            alarm["message"], alarm["rule"], alarm["severity"], iso_time(alarm["first_seen"]))
        return title, body, kinds.FAILURE if alarm["severity"] == "critical" else kinds.WARNING
    lasted = (alarm["last_seen"] - alarm["first_seen"]) / 1000
    title = "[CLEARED] {}".format(alarm["message"])
    body = "Cleared: {}\n\nRule {} ({}), raised {}, lasted {}.".format(
        alarm["message"], alarm["rule"], alarm["severity"], iso_time(alarm["first_seen"]),
        duration(lasted))
    return title, body, kinds.SUCCESS
