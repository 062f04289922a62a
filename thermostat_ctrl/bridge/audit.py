"""The audit trail: every change made through the bridge, and every change
of a polled setting that the bridge did not make.

:class:`AuditLog` appends one JSON object a line to ``<data-dir>/audit.jsonl``
with one ``write()`` and an ``fsync`` per entry, on a thread of its own; a
line torn by a crash is cut off when the log is opened again (as the CSV log
does).  While the file cannot be written (a full disk) entries are held in
memory and written once it can again (:mod:`.storage.linelog`).  An entry (:data:`FIELDS`): ``ts`` (epoch ms) and ``time``,
``device``, ``channel`` (None for the device as a whole), ``what`` (the
setting or action), ``who`` (the write token's name; ``outside the bridge``
for a change detected in the polled settings), ``client`` (address),
``before`` and ``after`` (as read back from the device), ``requested``,
``result`` (``ok``, ``conflict``, ``invalid``, ``device down``, ``device
error``, ``busy``, ``aborted``, ``failed``) and ``detail``.

:class:`SettingsWatch` compares each device's polled targets, PID
parameters and output limits with the last ones it knew, and logs any
difference the bridge's own writes (:meth:`SettingsWatch.accept`) do not
explain.
"""

import concurrent.futures
import os
import threading
import time
from typing import Any, Callable, Optional

from .storage.csvformat import iso_time
from .storage.linelog import LineLog

__all__ = ["AuditLog", "SettingsWatch", "OUTSIDE", "FILE_NAME", "WATCHED"]

FILE_NAME = "audit.jsonl"
#: ``who`` of a change the bridge did not make.
OUTSIDE = "outside the bridge"
FIELDS = ("ts", "time", "device", "channel", "what", "who", "client", "before", "after",
          "requested", "result", "detail")
#: The polled settings watched for outside changes: resource -> fields.
WATCHED = {"target": ("target",),
           "pid": ("kp", "ki", "kd", "output_min", "output_max"),
           "limits": ("max_i_pos", "max_i_neg", "max_v")}


class AuditLog:
    """The append-only audit trail of one bridge, in ``data_dir``.

    Entries are kept in memory too (they are few: a person's changes), for
    :meth:`entries`, whether or not they could be written; :attr:`file` has
    the write counters and why writing fails.  Raises OSError when the file
    cannot be opened.
    """

    def __init__(self, data_dir: str, wall_clock: Callable[[], float] = time.time):
        self.path = os.path.join(data_dir, FILE_NAME)
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self.file = LineLog(self.path, "audit trail", durable=True)
        try:
            self._entries: list = self.file.entries()
        except BaseException:
            self.file.close()
            raise
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="audit")

    @property
    def write_errors(self) -> int:
        """Failed writes of the file."""
        return self.file.write_errors

    def record(self, device: str, what: str, who: str, *, channel: Optional[int] = None,
               client: Optional[str] = None, before: Any = None, after: Any = None,
               requested: Any = None, result: str = "ok",
               detail: Optional[str] = None) -> concurrent.futures.Future:
        """Append an entry (stamped now); the future is done once it is on
        disk (its result: the entry) or, while the file cannot be written,
        held in memory (its exception: an OSError saying why).  Safe from
        any thread."""
        ts = int(self.wall_clock() * 1000)
        entry = dict(ts=ts, time=iso_time(ts), device=device, channel=channel, what=what,
                     who=who, client=client, before=before, after=after, requested=requested,
                     result=result, detail=detail)
        return self._writer.submit(self._append, entry)

    def _append(self, entry: dict) -> dict:
        with self._lock:
            self._entries.append(entry)
        if not self.file.append(entry):
            raise OSError(self.file.failing or "audit entry not written")
        return entry

    def entries(self, device: Optional[str] = None, start: Optional[int] = None,
                end: Optional[int] = None) -> list:
        """Entries (oldest first) of ``device`` (all when None) with ``start
        <= ts <= end`` (epoch ms; open ends when None)."""
        with self._lock:
            entries = list(self._entries)
        return [e for e in entries
                if (device is None or e["device"] == device)
                and (start is None or e["ts"] >= start) and (end is None or e["ts"] <= end)]

    def close(self) -> None:
        """Write what is queued and held, then close the file."""
        self._writer.shutdown(wait=True)
        self.file.close()


def polled_settings(poller: Any) -> Optional[list]:
    """Per channel ``{field: value}`` of the watched settings a poller last
    read, None while any of them is unknown."""
    if poller.targets is None or poller.gains is None or poller.limits is None:
        return None
    return [{"target": target, **{k: gains.get(k) for k in WATCHED["pid"]},
             **{k: limits.get(k) for k in WATCHED["limits"]}}
            for target, gains, limits in zip(poller.targets, poller.gains, poller.limits)]


class SettingsWatch:
    """Detects changes of one device's watched settings made outside the bridge.

    :meth:`polled` is the poller's ``on_details`` hook; :meth:`accept` is
    called by a bridge write with what it read back, on the same connection
    and loop, so that the next poll finds no difference.  ``expected(ch,
    field, value)`` may explain a change (the simulation's own target
    steps); a change on a channel marked :meth:`busy` (a procedure the
    bridge runs) is logged under that procedure's name.
    """

    def __init__(self, device: str, audit: AuditLog,
                 expected: Optional[Callable[[int, str, Any], bool]] = None):
        self.device = device
        self.audit = audit
        self.expected = expected
        self.known: Optional[list] = None
        self._busy: dict = {}

    def busy(self, ch: int, who: Optional[str]) -> None:
        """Attribute changes on channel ``ch`` to ``who`` (None: no longer)."""
        if who is None:
            self._busy.pop(ch, None)
        else:
            self._busy[ch] = who

    def accept(self, ch: int, values: dict) -> None:
        """The bridge set channel ``ch``'s ``values`` (as read back)."""
        if self.known is not None:
            self.known[ch].update({k: v for k, v in values.items() if k in self.known[ch]})

    def observe(self, ch: int, values: dict) -> None:
        """Channel ``ch``'s ``values`` as just read (before a bridge write):
        a difference from the known ones is a change made outside, logged
        now so that the write does not hide it."""
        if self.known is None:
            return
        old = self.known[ch]
        self._compare(ch, old, {**old, **{k: v for k, v in values.items() if k in old}})
        self.accept(ch, values)

    def polled(self, poller: Any) -> None:
        """Compare the poller's latest settings with the known ones; log differences."""
        now = polled_settings(poller)
        if now is None:
            return
        if self.known is not None:
            for ch, (old, new) in enumerate(zip(self.known, now)):
                self._compare(ch, old, new)
        self.known = [dict(c) for c in now]

    def _compare(self, ch: int, old: dict, new: dict) -> None:
        for what, fields in WATCHED.items():
            changed = [k for k in fields if old.get(k) != new.get(k)
                       and not (self.expected is not None and self.expected(ch, k, new.get(k)))]
            if not changed:
                continue
            self.audit.record(
                self.device, what, self._busy.get(ch, OUTSIDE), channel=ch,
                before={k: old.get(k) for k in changed}, after={k: new.get(k) for k in changed},
                detail="seen in the polled settings")
