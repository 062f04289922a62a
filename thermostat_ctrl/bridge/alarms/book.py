"""The alarm lifecycle: raised, maybe acknowledged, cleared; silences.

An alarm is identified by its key ``(device, channel, rule)`` (channel None
for a device rule).  :meth:`AlarmBook.observe` takes each verdict of a rule:
a finding raises the alarm (or updates its value and ``last_seen``); an
``OK`` clears it once it has held for :attr:`AlarmBook.clear_s` seconds (the
hysteresis that keeps a value at the threshold from flapping).

Acknowledgements and silences survive a restart: the active alarms and the
silences are kept in ``<data-dir>/alarms-state.json`` (replaced atomically on
every change), and every raise, acknowledgement, clear and silence is
appended as one JSON line to ``<data-dir>/alarms.jsonl``, the alarm log
(held in memory while it cannot be written: :mod:`..storage.linelog`).
Listeners (:meth:`AlarmBook.listen`) get every event: the notifiers, the
stream.  Thread-safe.
"""

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from ..storage.linelog import LineLog
from .rules import Finding

logger = logging.getLogger(__name__)

__all__ = ["Alarm", "Silence", "AlarmBook", "HISTORY_NAME", "STATE_NAME"]

HISTORY_NAME = "alarms.jsonl"
STATE_NAME = "alarms-state.json"
#: Longest silence one may ask for (7 days).
MAX_SILENCE_S = 7 * 86400


@dataclass
class Alarm:
    """One active alarm."""

    id: int
    rule: str
    device: str
    channel: Optional[int]
    severity: str
    message: str  #: in words, with the device and channel
    value: Optional[float]
    first_seen: int  #: epoch ms
    last_seen: int
    acknowledged_by: Optional[str] = None
    acknowledged_at: Optional[int] = None
    silenced: bool = False
    _ok_since: Optional[float] = field(default=None, repr=False)

    @property
    def key(self) -> tuple:
        """``(device, channel, rule)``."""
        return self.device, self.channel, self.rule

    def public(self) -> dict:
        """The alarm as the API shows it."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass
class Silence:
    """Notifications and the banner muted, until ``until`` (epoch ms), for
    the alarms matching every given field (None: any)."""

    id: int
    until: int
    created_by: str
    created_at: int
    comment: str = ""
    device: Optional[str] = None
    channel: Optional[int] = None
    rule: Optional[str] = None

    def matches(self, alarm: Alarm, now_ms: int) -> bool:
        """True while this silence covers ``alarm``."""
        return (now_ms < self.until
                and self.device in (None, alarm.device)
                and (self.channel is None or self.channel == alarm.channel)
                and self.rule in (None, alarm.rule))


def label(device: str, channel: Optional[int]) -> str:
    """``"cavity"`` or ``"cavity ch1"``."""
    return device if channel is None else "{} ch{}".format(device, channel)


class AlarmBook:
    """The active alarms, the silences and the alarm log of one bridge.

    :param data_dir: where the state and the log are kept (None: nowhere,
        for tests of the lifecycle alone).
    :param clock: wall clock, epoch seconds.
    """

    def __init__(self, data_dir: Optional[str], clear_s: float = 3.0,
                 clock: Callable[[], float] = time.time):
        self.clear_s = clear_s
        self._clock = clock
        self._lock = threading.RLock()
        self._active: dict[tuple, Alarm] = {}
        self._silences: dict[int, Silence] = {}
        self._next_id = 1
        self._listeners: list[Callable[[str, dict], None]] = []
        self.version = 0  #: increases with every change of the active alarms
        self._state_path: Optional[str] = None
        #: The alarm log (None without a data directory).
        self.log: Optional[LineLog] = None
        if data_dir is not None:
            self._state_path = os.path.join(data_dir, STATE_NAME)
            self.log = LineLog(os.path.join(data_dir, HISTORY_NAME), "alarm log")
            self._load()

    # ------------------------------------------------------------ reading

    def active(self, device: Optional[str] = None) -> list[Alarm]:
        """The active alarms (of ``device``), oldest first."""
        with self._lock:
            self._expire_silences()
            return [a for a in self._active.values() if device in (None, a.device)]

    def silences(self) -> list[Silence]:
        """The silences in force."""
        with self._lock:
            self._expire_silences()
            return list(self._silences.values())

    def history(self, device: Optional[str] = None, limit: int = 1000) -> list[dict]:
        """The latest ``limit`` entries of the alarm log (of ``device``), those
        held in memory while it cannot be written among them, oldest first."""
        if self.log is None:
            return []
        return self.log.entries(lambda e: device in (None, e.get("device")), limit)

    # ------------------------------------------------------------ changing

    def listen(self, listener: Callable[[str, dict], None]) -> None:
        """Call ``listener(event, alarm_or_silence_dict)`` on every raise,
        update of ``silenced``, acknowledgement, clear and silence."""
        self._listeners.append(listener)

    def observe(self, device: str, channel: Optional[int], rule: str, severity: str,
                verdict, now: Optional[float] = None) -> None:
        """Account for one verdict of ``rule`` on ``device`` (``channel``):
        a :class:`~.rules.Finding`, ``"ok"`` or ``"unknown"``."""
        now = self._clock() if now is None else now
        key = (device, channel, rule)
        with self._lock:
            alarm = self._active.get(key)
            if isinstance(verdict, Finding):
                message = "{}: {}".format(label(device, channel), verdict.message)
                if alarm is None:
                    alarm = Alarm(self._new_id(), rule, device, channel, severity, message,
                                  _json_number(verdict.value), int(now * 1000), int(now * 1000))
                    alarm.silenced = self._silenced(alarm)
                    self._active[key] = alarm
                    self._changed("raised", alarm)
                else:
                    alarm.value, alarm.message = _json_number(verdict.value), message
                    alarm.last_seen, alarm._ok_since = int(now * 1000), None
            elif verdict == "ok" and alarm is not None:
                if alarm._ok_since is None:
                    alarm._ok_since = now
                if now - alarm._ok_since >= self.clear_s:
                    del self._active[key]
                    self._changed("cleared", alarm)

    def acknowledge(self, alarm_id: int, by: str) -> Alarm:
        """Acknowledge an active alarm; KeyError when there is none of that id."""
        with self._lock:
            alarm = next((a for a in self._active.values() if a.id == alarm_id), None)
            if alarm is None:
                raise KeyError(alarm_id)
            if alarm.acknowledged_by is None:
                alarm.acknowledged_by, alarm.acknowledged_at = by, int(self._clock() * 1000)
                self._changed("acknowledged", alarm)
            return alarm

    def silence(self, duration_s: float, by: str, comment: str = "",
                device: Optional[str] = None, channel: Optional[int] = None,
                rule: Optional[str] = None) -> Silence:
        """Silence the alarms matching ``device``, ``channel`` and ``rule``
        (None: any) for ``duration_s`` seconds."""
        if not 0 < duration_s <= MAX_SILENCE_S:
            raise ValueError("duration_s must be above 0 and at most {} (7 days), not {!r}"
                             .format(MAX_SILENCE_S, duration_s))
        now_ms = int(self._clock() * 1000)
        with self._lock:
            silence = Silence(self._new_id(), now_ms + int(duration_s * 1000), by, now_ms,
                              comment, device, channel, rule)
            self._silences[silence.id] = silence
            self._log("silenced", asdict(silence))
            self._update_silenced()
            self._save()
            return silence

    def unsilence(self, silence_id: int, by: str) -> Silence:
        """End a silence now; KeyError when there is none of that id."""
        with self._lock:
            silence = self._silences.pop(silence_id)
            self._log("unsilenced", {**asdict(silence), "by": by})
            self._update_silenced()
            self._save()
            return silence

    def close(self) -> None:
        """Write what the alarm log holds (or log it as lost) and close it."""
        if self.log is not None:
            self.log.close()

    # ------------------------------------------------------------ internals

    def _silenced(self, alarm: Alarm) -> bool:
        now_ms = int(self._clock() * 1000)
        return any(s.matches(alarm, now_ms) for s in self._silences.values())

    def _expire_silences(self) -> None:
        now_ms = int(self._clock() * 1000)
        expired = [s for s in self._silences.values() if s.until <= now_ms]
        for silence in expired:
            del self._silences[silence.id]
            self._log("silence_expired", asdict(silence))
        if expired:
            self._update_silenced()
            self._save()

    def _update_silenced(self) -> None:
        for alarm in self._active.values():
            silenced = self._silenced(alarm)
            if silenced != alarm.silenced:
                alarm.silenced = silenced
                self.version += 1

    def _changed(self, event: str, alarm: Alarm) -> None:
        self.version += 1
        entry = alarm.public()
        self._log(event, entry)
        self._save()
        for listener in self._listeners:
            try:
                listener(event, entry)
            except Exception:  # a listener's bug must not stop the alarms
                logger.exception("alarm listener failed on %s", event)

    def _log(self, event: str, entry: dict) -> None:
        if self.log is not None:
            self.log.append({"event": event, "ts": int(self._clock() * 1000), **entry})

    def _save(self) -> None:
        if self._state_path is None:
            return
        state = {"next_id": self._next_id,
                 "active": [a.public() for a in self._active.values()],
                 "silences": [asdict(s) for s in self._silences.values()]}
        tmp = self._state_path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._state_path)
        except OSError as e:
            logger.error("could not save the alarm state %s: %s", self._state_path, e)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _load(self) -> None:
        if not os.path.exists(self._state_path):
            return
        try:
            with open(self._state_path, encoding="utf-8") as f:
                state = json.load(f)
            active = [Alarm(**a) for a in state["active"]]
            silences = [Silence(**s) for s in state["silences"]]
            next_id = int(state["next_id"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.error("ignoring the unreadable alarm state %s: %s", self._state_path, e)
            return
        self._active = {a.key: a for a in active}
        self._silences = {s.id: s for s in silences}
        self._next_id = next_id
        logger.info("alarm state: %d active alarm(s), %d silence(s) from %s", len(active),
                    len(silences), self._state_path)


def _json_number(value: float) -> Optional[float]:
    return None if value is None or value != value else float(value)

