"""An append-only file of JSON lines that holds in memory what it cannot write.

The alarm log and the audit trail are such files.  Every entry reaches the
file in one ``write()`` of a complete line on an ``O_APPEND`` descriptor; a
short or failed write is truncated away again, and a line torn by a crash is
cut off when the file is opened, so the file stays parseable throughout.

While writes fail (a full disk, a read-only remount) entries are held in
memory, at most :data:`MAX_HELD` of them, and served with the written ones
(:meth:`LineLog.entries`); :attr:`LineLog.failing` says why meanwhile.  The
held entries are written first, in order, by the next append or by a retry
every :data:`RETRY_S` seconds (counted in ``caught_up``).  An entry pushed
out of a full hold is counted in ``lost`` and logged, with its line, as an
error: never dropped silently.
"""

import collections
import errno
import json
import logging
import os
import threading
from typing import BinaryIO, Callable, Iterator, Optional

from .csvlog import repair_tail

logger = logging.getLogger(__name__)

__all__ = ["LineLog", "MAX_HELD", "RETRY_S"]

#: Entries held in memory while a log cannot be written.
MAX_HELD = 10_000
#: Seconds between retries while entries are held.
RETRY_S = 2.0


class LineLog:
    """One JSON-lines file (``path``), appended to, held while failing.

    :param name: what the log is, in messages (``"alarm log"``).
    :param durable: fsync every entry.
    :param max_held: entries held in memory at most while writes fail.
    :param retry_s: seconds between retries of the held entries.
    :raises OSError: when the file cannot be opened.
    """

    def __init__(self, path: str, name: str, durable: bool = False,
                 max_held: int = MAX_HELD, retry_s: float = RETRY_S):
        self.path, self.name, self.durable = path, name, durable
        self.max_held, self.retry_s = max_held, retry_s
        self.write_errors = 0  #: failed writes
        self.caught_up = 0  #: entries written late, by a later append or a retry
        self.lost = 0  #: entries never written: more than ``max_held`` waited
        #: Why the latest write failed, None after a success.
        self.failing: Optional[str] = None
        self._held: collections.deque = collections.deque()
        self._lost_in_outage = 0
        self._lock = threading.Lock()
        self._timer: Optional[threading.Timer] = None
        self._closed = False
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            repair_tail(self._fd)
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def held(self) -> int:
        """Entries waiting in memory to be written."""
        return len(self._held)

    def append(self, entry: dict) -> bool:
        """Append ``entry`` after the held ones; True when it is in the file,
        False when it is held (or lost)."""
        line = (json.dumps(entry, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
                + "\n").encode()
        with self._lock:
            if self._closed:
                raise ValueError("{} {} is closed".format(self.name, self.path))
            self._held.append((line, entry))
            written = self._flush(newest=entry)
            while len(self._held) > self.max_held:
                self._lose(self._held.popleft()[0])
            return written

    def flush(self) -> bool:
        """Write the held entries; True when none is left."""
        with self._lock:
            return self._closed or self._flush()

    def entries(self, match: Optional[Callable[[dict], bool]] = None,
                limit: Optional[int] = None) -> list:
        """The latest ``limit`` (None: all) entries for which ``match`` is
        true (None: all), oldest first: those in the file (lines that are not
        JSON skipped), then the held ones."""
        with self._lock:
            size = os.fstat(self._fd).st_size if not self._closed else None
            held = [entry for _, entry in self._held]
        found: collections.deque = collections.deque(maxlen=limit)
        with open(self.path, "rb") as f:
            for number, line in enumerate(f if size is None else _lines(f, size), 1):
                try:
                    entry = json.loads(line)
                except ValueError:
                    logger.warning("%s line %d is not JSON; skipped", self.path, number)
                    continue
                if match is None or match(entry):
                    found.append(entry)
        found.extend(e for e in held if match is None or match(e))
        return list(found)

    def close(self) -> None:
        """Write what is held if possible (else log it as lost), close the file."""
        with self._lock:
            if self._closed:
                return
            self._flush()
            while self._held:
                self._lose(self._held.popleft()[0])
            self._report_lost()
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            os.close(self._fd)

    # ------------------------------------------------------------ internals

    def _flush(self, newest: Optional[dict] = None) -> bool:
        while self._held:
            line, entry = self._held[0]
            try:
                self._write(line)
            except OSError as exc:
                self.write_errors += 1
                if self.failing is None:
                    logger.error("could not append to the %s %s (%s); holding entries in"
                                 " memory (at most %d)", self.name, self.path, exc,
                                 self.max_held)
                self.failing = "{} write failed: {}".format(self.name, exc.strerror or exc)
                self._retry_later()
                return False
            self._held.popleft()
            if entry is not newest:
                self.caught_up += 1
        if self.failing is not None:
            logger.info("%s %s: writing again", self.name, self.path)
            self.failing = None
            self._report_lost()
        return True

    def _write(self, line: bytes) -> None:
        """One ``write()`` (and fsync when durable); undone on any failure."""
        size = os.fstat(self._fd).st_size
        try:
            if os.write(self._fd, line) != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (a short write)")
            if self.durable:
                os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                pass
            raise

    def _lose(self, line: bytes) -> None:
        self.lost += 1
        self._lost_in_outage += 1
        logger.error("%s %s: entry never written (more than %d held): %s", self.name,
                     self.path, self.max_held, line.decode().rstrip("\n"))

    def _report_lost(self) -> None:
        if self._lost_in_outage:
            logger.error("%d entries were never written to the %s %s (more than %d were"
                         " held): a gap in the log", self._lost_in_outage, self.name,
                         self.path, self.max_held)
            self._lost_in_outage = 0

    def _retry_later(self) -> None:
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(self.retry_s, self._retry)
            self._timer.daemon = True
            self._timer.start()

    def _retry(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._flush()


def _lines(f: BinaryIO, size: int) -> Iterator[bytes]:
    """The lines of the first ``size`` bytes of ``f``."""
    for line in f:
        if size <= 0:
            return
        yield line[:size]
        size -= len(line)
