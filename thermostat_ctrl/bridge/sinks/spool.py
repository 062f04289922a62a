"""The spool of a sink: every point on disk from its arrival until the
database has acknowledged it.

A spool is a directory of numbered segment files (``000000000001.spool``,
...) and an ``ack`` file.  Records are appended, never rewritten:

* a record is one sample's points: a header (payload length, CRC-32, the
  sample's ``ts``, the number of points) and the line-protocol payload;
* every :meth:`Spool.append` reaches the file in one ``write()`` on an
  ``O_APPEND`` descriptor, so a crash leaves at most a torn last record; on
  open, records are checked (length and CRC) and a torn tail is cut off, so
  a torn record is never sent nor counted;
* ``ack`` holds the position up to which the database has acknowledged the
  records (replaced atomically after each acknowledged batch); segments
  wholly before it are deleted.  After a crash the records after it are sent
  again; a resent point is the same point (see :mod:`.lineproto`), so the
  database keeps one;
* the spool is bounded: once its files exceed the limit, the oldest segment
  is deleted and its unsent points are counted as dropped (and logged).
  Segments are an eighth of the limit (64 KiB to 8 MiB), so a drop loses
  the oldest eighth at most;
* records the disk refuses (full, read-only) are held in memory, up to a
  segment's size, and written first, in order, once it takes writes again
  (counted as caught up); older ones beyond that bound are counted as
  dropped.  An ``ack`` file the disk refuses lags behind: after a crash its
  records are sent again, which the database keeps once.

Like the CSV log, the spool survives a crash of the process; what the OS
had not yet written out may be lost in a power cut.
"""

import logging
import math
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Optional

logger = logging.getLogger(__name__)

__all__ = ["Spool", "Batch", "SpoolStats", "SUFFIX"]

#: Record header: payload length, CRC-32 (of the rest of the header and the
#: payload), sample ts (epoch ms), number of points.
HEADER = struct.Struct("<IIqI")
_TAIL = struct.Struct("<qI")
SUFFIX = ".spool"
ACK_NAME = "ack"
#: Bounds of a segment's size.
SEGMENT_MIN, SEGMENT_MAX = 64 * 1024, 8 * 1024 * 1024
#: Largest payload of one record (a sample's points are a few hundred bytes).
RECORD_MAX = 1 << 20


@dataclass(frozen=True)
class Batch:
    """Consecutive records of one segment, read for sending."""

    seq: int          #: segment number
    start: int        #: offset of the first record
    end: int          #: offset after the last record
    payload: bytes    #: the records' line protocol, concatenated
    points: int       #: number of points (lines)
    records: int      #: number of records (samples)
    first_ts: int     #: ts of the first sample
    last_ts: int      #: ts of the last sample
    drained: bool     #: nothing else was waiting when it was read
    read_at: float    #: monotonic time it was read


@dataclass(frozen=True)
class SpoolStats:
    """Counters of a spool."""

    backlog_points: int        #: points not yet acknowledged
    backlog_bytes: int         #: bytes of the records not yet acknowledged
    oldest_unsent_ts: Optional[int]  #: ts of the oldest unacknowledged sample
    dropped_points: int        #: points lost unsent: the spool full, or too many held
    write_errors: int          #: appends that failed (their records are held)
    size_bytes: int            #: bytes of every segment file
    held_points: int = 0       #: points the disk refused, held in memory to be written
    caught_up_points: int = 0  #: points written late, once the disk took writes again
    error: Optional[str] = None  #: why appends fail now; None while they succeed


def _record(ts: int, payload: bytes, points: int) -> bytes:
    tail = _TAIL.pack(ts, points)
    crc = zlib.crc32(payload, zlib.crc32(tail))
    return HEADER.pack(len(payload), crc, ts, points) + payload


def _parse(data: bytes, start: int = 0):
    """Yield ``(offset, end, ts, points, payload start)`` of each valid record
    of ``data`` from ``start``; stops at the first incomplete or corrupt one."""
    pos = start
    while pos + HEADER.size <= len(data):
        length, crc, ts, points = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if length > RECORD_MAX or end > len(data):
            return
        body = memoryview(data)[pos + HEADER.size:end]
        if zlib.crc32(body, zlib.crc32(_TAIL.pack(ts, points))) != crc:
            return
        yield pos, end, ts, points, pos + HEADER.size
        pos = end


class Spool:
    """An append-only, bounded, crash-safe queue of records in ``directory``
    (created if needed; OSError when it cannot be).

    Thread-safe: one thread appends, another reads and acknowledges.

    :param limit_bytes: the most bytes its files may take.
    """

    def __init__(self, directory: str, limit_bytes: int):
        if limit_bytes < 8 * SEGMENT_MIN:
            raise ValueError("a spool needs at least {} bytes, not {}".format(
                8 * SEGMENT_MIN, limit_bytes))
        self.directory = os.path.abspath(directory)
        self.limit_bytes = int(limit_bytes)
        self.segment_bytes = max(SEGMENT_MIN, min(SEGMENT_MAX, self.limit_bytes // 8))
        self._cond = threading.Condition()
        self._segments: dict[int, list[int]] = {}  # seq -> [size, points after ack start]
        self._ack = (1, 0)
        self._acked_points = 0  # points acknowledged in the ack segment
        self._dropped = 0
        self._write_errors = 0
        self._error: Optional[str] = None
        self._held: list[bytes] = []  # records the disk refused, oldest first
        self._held_points: list[int] = []
        self._caught_up = 0
        self._fd: Optional[int] = None  # the newest segment, for appending
        self._pending_since: Optional[float] = None  # monotonic time the backlog began
        os.makedirs(self.directory, exist_ok=True)
        self._recover()

    # ------------------------------------------------------------ recovery

    def _path(self, seq: int) -> str:
        return os.path.join(self.directory, "{:012d}{}".format(seq, SUFFIX))

    def _recover(self) -> None:
        seqs = sorted(int(name[:-len(SUFFIX)]) for name in os.listdir(self.directory)
                      if name.endswith(SUFFIX) and name[:-len(SUFFIX)].isdigit())
        ack_seq, ack_off = self._read_ack()
        for seq in [s for s in seqs if s < ack_seq]:
            os.unlink(self._path(seq))
        seqs = [s for s in seqs if s >= ack_seq]
        if not seqs:
            seqs = [max(ack_seq, 1)]
            ack_off = 0
        if seqs[0] != ack_seq:
            ack_seq, ack_off = seqs[0], 0
        for seq in seqs:
            start = ack_off if seq == ack_seq else 0
            with open(self._path(seq), "a+b") as f:
                f.seek(0)
                data = f.read()
                start = min(start, len(data))
                end, points = start, 0
                for _, end, _, n, _ in _parse(data, start):
                    points += n
                if end < len(data):
                    # A torn tail (a crash mid-append) or damage: keep what parses.
                    logger.warning("spool %s: dropping %d bytes of a torn or damaged record",
                                   self._path(seq), len(data) - end)
                    f.truncate(end)
                self._segments[seq] = [end, points]
            if seq == ack_seq:
                ack_off = min(ack_off, end)
        self._ack = (ack_seq, ack_off)
        if self._unsent_points() > 0:
            self._pending_since = -math.inf  # a backlog from before: send at once
        self._fd = os.open(self._path(seqs[-1]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _read_ack(self) -> tuple[int, int]:
        try:
            with open(os.path.join(self.directory, ACK_NAME), encoding="ascii") as f:
                seq, off = (int(part) for part in f.read().split())
            if seq >= 1 and off >= 0:
                return seq, off
        except (OSError, ValueError):
            pass
        return 0, 0

    def _write_ack(self) -> None:
        path = os.path.join(self.directory, ACK_NAME)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w", encoding="ascii") as f:
                f.write("{} {}\n".format(*self._ack))
            os.replace(tmp, path)
        except OSError as e:  # the file lags: its records would be sent again after a crash
            logger.warning("spool %s: ack not written (%s)", self.directory, e)

    # --------------------------------------------------------------- state

    def _unsent_points(self) -> int:
        return sum(points for _, points in self._segments.values()) - self._acked_points

    def _unsent_bytes(self) -> int:
        return sum(size for size, _ in self._segments.values()) - self._ack[1]

    def _oldest_ts(self) -> Optional[int]:
        seq, off = self._ack
        for s, (size, _) in self._segments.items():
            if s < seq:
                continue
            start = off if s == seq else 0
            if start < size:
                fd = os.open(self._path(s), os.O_RDONLY)
                try:
                    header = os.pread(fd, HEADER.size, start)
                finally:
                    os.close(fd)
                return HEADER.unpack(header)[2] if len(header) == HEADER.size else None
        return None

    def stats(self) -> SpoolStats:
        """The spool's counters now."""
        with self._cond:
            try:
                oldest = self._oldest_ts()
            except OSError:
                oldest = None
            return SpoolStats(self._unsent_points(), self._unsent_bytes(), oldest,
                              self._dropped, self._write_errors,
                              sum(size for size, _ in self._segments.values()),
                              sum(self._held_points), self._caught_up, self._error)

    # -------------------------------------------------------------- append

    def append(self, records: list[tuple[int, bytes, int]]) -> bool:
        """Append ``(ts, payload, points)`` records, after those held, in one
        write; True when written.  When the write fails the records are held
        (see the module doc) and the failure logged once per streak."""
        records = [r for r in records if r[2] > 0]
        if not records:
            return True
        with self._cond:
            self._held += [_record(*r) for r in records]
            self._held_points += [r[2] for r in records]
            blob, points = b"".join(self._held), sum(self._held_points)
            try:
                self._write(blob)
            except OSError as e:
                self._write_errors += 1
                self._hold_failed(e)
                return False
            late = points - sum(r[2] for r in records)
            if self._error is not None:
                logger.info("spool %s: writing again; %d held points written", self.directory,
                            late)
                self._error = None
            self._caught_up += late
            self._held, self._held_points = [], []
            newest = max(self._segments)
            self._segments[newest][0] += len(blob)
            self._segments[newest][1] += points
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            self._enforce_limit()
            self._cond.notify_all()
        return True

    def _hold_failed(self, error: OSError) -> None:
        """After a failed write: keep the newest held records, a segment's
        bytes at most, and count the older ones dropped."""
        if self._error is None:
            logger.error("spool %s: write failed (%s); holding the points in memory",
                         self.directory, error)
        self._error = "spool write failed: {}".format(error.strerror or error)
        size = sum(map(len, self._held))
        while size > self.segment_bytes and len(self._held) > 1:
            size -= len(self._held.pop(0))
            lost = self._held_points.pop(0)
            self._dropped += lost
            logger.warning("spool %s: %d held points dropped (more than %d bytes held)",
                           self.directory, lost, self.segment_bytes)

    def _write(self, blob: bytes) -> None:
        newest = max(self._segments)
        size = self._segments[newest][0]
        if size and size + len(blob) > self.segment_bytes:
            fd = os.open(self._path(newest + 1), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.close(self._fd)
            self._fd = fd
            newest += 1
            self._segments[newest] = [0, 0]
            size = 0
        view, written = memoryview(blob), 0
        try:
            while written < len(blob):  # a short write is retried: it raises the reason
                written += os.write(self._fd, view[written:])
        except OSError:
            _truncate(self._fd, size)
            raise

    def _enforce_limit(self) -> None:
        total = sum(size for size, _ in self._segments.values())
        while total > self.limit_bytes and len(self._segments) > 1:
            seq = min(self._segments)
            size, points = self._segments.pop(seq)
            lost = points - self._acked_points
            self._dropped += lost
            self._ack, self._acked_points = (min(self._segments), 0), 0
            self._write_ack()
            os.unlink(self._path(seq))
            total -= size
            logger.warning("spool %s is full (%d bytes): dropped its oldest %d unsent points",
                           self.directory, self.limit_bytes, lost)

    # ---------------------------------------------------------------- read

    def wait_due(self, max_points: int, max_age_s: float, timeout: float) -> bool:
        """Wait until a batch is due (``max_points`` points are waiting, or the
        oldest has waited ``max_age_s``) or ``timeout`` passes; True if due."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                unsent = self._unsent_points()
                if unsent >= max_points:
                    return True
                if unsent > 0 and self._pending_since is not None:
                    due = self._pending_since + max_age_s
                    if now >= due:
                        return True
                    wake = min(deadline, due)
                else:
                    wake = deadline
                if now >= deadline:
                    return False
                self._cond.wait(wake - now)

    def wake(self) -> None:
        """Wake :meth:`wait_due` (to stop)."""
        with self._cond:
            self._cond.notify_all()

    def read(self, max_points: int, max_bytes: int) -> Optional[Batch]:
        """The oldest unacknowledged records, at most ``max_points`` points
        (and about ``max_bytes``, at least one record), within one segment;
        None when everything is acknowledged."""
        with self._cond:
            read_at = time.monotonic()
            seq, off = self._ack
            size = self._segments[seq][0]
            if off >= size and seq < max(self._segments):
                # That segment is done: continue in the next one.
                self._ack, self._acked_points = (seq + 1, 0), 0
                self._write_ack()
                del self._segments[seq]
                os.unlink(self._path(seq))
                seq, off = self._ack
                size = self._segments[seq][0]
            if off >= size:
                return None
            newest = seq == max(self._segments)
            # Opened under the lock: a full spool may delete the file, not this descriptor.
            fd = os.open(self._path(seq), os.O_RDONLY)
        try:
            data = os.pread(fd, min(size - off, max_bytes), off)
            length = HEADER.unpack_from(data)[0] if len(data) >= HEADER.size else 0
            if HEADER.size + length > len(data):
                data = os.pread(fd, HEADER.size + length, off)
        finally:
            os.close(fd)
        parts, points, records, first, last, end = [], 0, 0, None, None, 0
        for _, end, ts, n, body in _parse(data):
            parts.append(data[body:end])
            points += n
            records += 1
            first = ts if first is None else first
            last = ts
            if points >= max_points:
                break
        if not records:
            raise OSError("spool {}: unreadable record at {} of segment {}".format(
                self.directory, off, seq))
        return Batch(seq, off, off + end, b"".join(parts), points, records, first, last,
                     newest and off + end == size, read_at)

    def ack(self, batch: Batch) -> bool:
        """Mark ``batch`` as acknowledged by the database; False when it was
        dropped (the spool was full) while it was being sent."""
        with self._cond:
            if self._ack != (batch.seq, batch.start):
                return False
            self._ack = (batch.seq, batch.end)
            self._acked_points += batch.points
            self._write_ack()
            if self._unsent_points() == 0:
                self._pending_since = None
            elif batch.drained:
                # What waits now arrived during the send: it is due by its own age.
                self._pending_since = batch.read_at
            return True

    def close(self) -> None:
        """Close the segment being appended to."""
        with self._cond:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass
