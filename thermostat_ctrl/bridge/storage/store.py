"""A device's data store: recent rows in memory, every row in the CSV log,
range queries over both (gaps marked, downsampled: :mod:`.downsample`).

The CSV log is the log of record.  While its writes fail (a full disk, a
read-only remount) rows still go to memory; once a write succeeds again the
rows memory still holds are written first, in order (``rows_caught_up``),
and those memory no longer holds are counted as lost (``rows_lost``) and
logged: a gap in the log, never a reordered or half-written row."""

import logging
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .csvformat import iso_time
from .csvlog import CsvLog
from .downsample import Aggregates, bucket_width
from .gaps import gap_ms, mark_gaps
from .history import DiskHistory
from .ringbuffer import RingBuffer

logger = logging.getLogger(__name__)

__all__ = ["Store", "Table"]


@dataclass
class Table:
    """Query result: ``ts`` (int64, ascending epoch ms), column names and
    ``values`` (float64, one row per ts, NaN for missing)."""

    ts: np.ndarray
    columns: list[str]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


class Store:
    """Ring buffer + CSV log + disk history behind one thread-safe API.

    :param data_dir: CSV directory (created; :class:`~.csvlog.DataDirError`
        if not writable).
    :param columns: initial value columns (see :func:`~.schema.columns_for`).
    :param capacity: rows kept in memory.
    :param poll_period: seconds between the device's polls: samples further
        apart than a few periods have a gap between them (:mod:`.gaps`).
    """

    def __init__(self, data_dir: str, columns: Sequence[str], capacity: int,
                 poll_period: float = 1.0):
        self.capacity = int(capacity)
        self.gap_ms = gap_ms(poll_period)
        self._csv = CsvLog(data_dir, columns)
        self._ring = RingBuffer(list(columns), self.capacity)
        self._history = DiskHistory(data_dir)
        self._lock = threading.Lock()
        self._last_ts: Optional[int] = self._csv.last_ts
        self._refusing = False
        self._refused = 0
        # While the log fails: ts of the first row not written, and how many since.
        self._unwritten_from: Optional[int] = None
        self._unwritten = 0
        self.rows_caught_up = 0  #: rows written late, once the log took writes again
        self.rows_lost = 0  #: rows never written: memory no longer held them
        self._lost_in_outage = 0

    @property
    def columns(self) -> list[str]:
        """Current value columns."""
        return list(self._ring.columns)

    @property
    def out_of_order(self) -> int:
        """Rows refused because their ts was not after the last row's."""
        return self._refused

    @property
    def rows_written(self) -> int:
        """Rows written to the CSV log."""
        return self._csv.rows_written

    @property
    def write_errors(self) -> int:
        """Failed CSV writes."""
        return self._csv.write_errors

    @property
    def log_error(self) -> Optional[str]:
        """Why the CSV log is failing (rows wait in memory), None while it is not."""
        return self._csv.failing

    @property
    def history(self) -> DiskHistory:
        """The disk history (e.g. to call ``build_caches()`` in a thread)."""
        return self._history

    def close(self) -> None:
        """Close the CSV file (the next append reopens it)."""
        with self._lock:
            self._csv.close()

    def append(self, ts_ms: int, columns: Sequence[str], values: np.ndarray,
               durable: bool = False) -> bool:
        """Store one row (``durable``: also fsync the CSV).

        A change of ``columns`` starts a new ring buffer and a new CSV file.
        A row whose ts is not after the last row's (in memory or in the CSV
        log) is refused everywhere (counted in ``out_of_order``): this is the
        one place that keeps the log in time order.  Returns True when the row is in memory
        and in the CSV, False when refused or when only the CSV write failed
        (counted in ``write_errors``; the row is still served from memory).
        """
        ts_ms = int(ts_ms)
        with self._lock:
            if self._last_ts is not None and ts_ms <= self._last_ts:
                self._refused += 1
                if not self._refusing:
                    logger.warning("refusing rows from %s on: not after %s (clock "
                                   "went backwards?)", iso_time(ts_ms), iso_time(self._last_ts))
                    self._refusing = True
                return False
            self._refusing = False
            if list(columns) != self._ring.columns:
                logger.info("columns changed: %s", ",".join(columns))
                self._catch_up()
                self._lose_unwritten()  # rows of the old columns leave memory now
                self._ring = RingBuffer(list(columns), self.capacity)
                self._csv.set_columns(columns)
            self._last_ts = ts_ms
            self._ring.append(ts_ms, values)
            if self._unwritten_from is not None:
                self._unwritten += 1
                return self._catch_up(durable, newest_on_time=True)
            if self._csv.append(ts_ms, values, durable):
                return True
            self._unwritten_from, self._unwritten = ts_ms, 1
            return False

    def _catch_up(self, durable: bool = False, newest_on_time: bool = False) -> bool:
        """Write the rows memory holds that the log has not taken, in order;
        True when every one is written (``newest_on_time``: the newest is the
        row being appended, not a late one)."""
        if self._unwritten_from is None:
            return True
        ts, values = self._ring.read(self._unwritten_from, self._ring.newest_ts)
        # Rows memory no longer holds are lost now; the log says so once it resumes.
        lost = self._unwritten - len(ts)
        self.rows_lost += lost
        self._lost_in_outage += lost
        for i in range(len(ts)):
            if not self._csv.append(int(ts[i]), values[i], durable and i == len(ts) - 1):
                self.rows_caught_up += i
                self._unwritten_from, self._unwritten = int(ts[i]), len(ts) - i
                return False
        late = len(ts) - 1 if newest_on_time else len(ts)
        self.rows_caught_up += late
        self._unwritten_from, self._unwritten = None, 0
        logger.info("CSV log: wrote the %d rows memory held while it failed", late)
        self._log_lost(int(ts[0]) if len(ts) else None)
        return True

    def _lose_unwritten(self) -> None:
        """The rows not written leave memory (new columns): count them lost."""
        if self._unwritten:
            self.rows_lost += self._unwritten
            self._lost_in_outage += self._unwritten
            self._unwritten_from, self._unwritten = None, 0
            self._log_lost(None)

    def _log_lost(self, before: Optional[int]) -> None:
        if self._lost_in_outage:
            logger.error("%d rows were never written to the CSV log (memory no longer held"
                         " them): a gap in the log%s", self._lost_in_outage,
                         "" if before is None else " before " + iso_time(before))
            self._lost_in_outage = 0

    def latest(self) -> Optional[tuple[int, dict[str, float]]]:
        """The newest row in memory as ``(ts, {column: value})``."""
        with self._lock:
            row = self._ring.latest()
            columns = self._ring.columns
        if row is None:
            return None
        return row[0], dict(zip(columns, row[1].tolist()))

    @property
    def oldest_ts(self) -> Optional[int]:
        """ts of the oldest row in memory, None while memory is empty."""
        with self._lock:
            return self._ring.oldest_ts

    @property
    def memory_full(self) -> bool:
        """True once memory holds ``capacity`` rows (older ones are on disk only)."""
        with self._lock:
            return len(self._ring) == self.capacity

    def all_columns(self) -> list[str]:
        """Every column known in memory or in the CSV files."""
        names = dict.fromkeys(self.columns)
        names.update(dict.fromkeys(self._history.columns()))
        return list(names)

    def query(self, from_ms: int, to_ms: int, columns: Optional[Sequence[str]] = None,
              max_points: Optional[int] = None) -> Table:
        """Rows with ``from_ms <= ts <= to_ms`` and a NaN row inside each gap,
        downsampled to ordered min/max buckets when that is more than
        ``max_points`` rows: exactly :func:`~.downsample.downsample` of every
        row in the range.

        Rows still in memory are served from it, older ones from disk (from
        the caches' tiers where a bucket allows it); the answer is the same
        either way.  Unknown columns come out as NaN.  Without ``max_points``
        every row is returned: callers bound the range.

        :raises ValueError: with ``max_points`` below 2 or a negative ``from_ms``.
        """
        columns = self.columns if columns is None else list(columns)
        k = len(columns)
        width = None if max_points is None else bucket_width(from_ms, to_ms, max_points)
        with self._lock:
            mem_ts, ring_values = self._ring.read(from_ms, to_ms)
            ring_columns, oldest = self._ring.columns, self._ring.oldest_ts
        mem_values = _select(ring_values, ring_columns, columns)
        disk_to = to_ms if oldest is None else min(to_ms, oldest - 1)
        on_disk = from_ms <= disk_to
        memory = Aggregates.from_rows(mem_ts, mem_values)
        aggregates = memory
        if on_disk and width is not None:
            aggregates = Aggregates.concat(
                [self._history.aggregates(from_ms, disk_to, columns, width), memory], k)
        if width is None or aggregates.samples <= max_points:
            ts, values = mem_ts, mem_values
            if on_disk:
                disk_ts, disk_values = self._history.raw(from_ms, disk_to, columns)
                ts, values = np.concatenate([disk_ts, ts]), np.concatenate([disk_values, values])
            ts, values = mark_gaps(ts, values, self.gap_ms)
            if width is None or len(ts) <= max_points:
                return Table(ts, columns, values)
        ts, values = aggregates.reduce(width).rows()
        ts, values = mark_gaps(ts, values, max(self.gap_ms, width))
        return Table(ts, columns, values)


def _select(values: np.ndarray, have: list[str], want: list[str]) -> np.ndarray:
    """``values`` (columns ``have``) rearranged to columns ``want``, NaN for
    the missing ones."""
    if have == want:
        return values
    index = {c: i for i, c in enumerate(have)}
    out = np.full((len(values), len(want)), np.nan)
    for j, c in enumerate(want):
        if c in index:
            out[:, j] = values[:, index[c]]
    return out
