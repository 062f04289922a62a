"""Ordered min/max downsampling into time buckets aligned to the epoch.

Each non-empty bucket of width ``W`` becomes at most two rows, at the times
of its first and its last sample.  For every column, the first row holds
whichever of the column's minimum and maximum occurred first in the bucket
and the second row the other, so a line drawn through one column's rows
passes through each bucket's true extremes in the order they happened (a
falling channel keeps falling).  A bucket of one sample is that sample.
NaNs are ignored (NaN only if all are NaN).

Gaps (:mod:`.gaps`) are marked in a downsampled answer too, where two
consecutive samples are further apart than both the gap threshold and the
bucket width: an interval within one bucket is never a gap, a shorter gap is
finer than the answer resolves.  So a bucket's rows are never split, and
with ``B`` buckets an answer holds at most ``3B - 1`` rows.

Minimum, maximum and the time of each are exact and associative (ties go to
the earlier sample), so the same rows come out whether the raw samples or
pre-aggregated partial buckets (:class:`Aggregates`, e.g. per-minute
summaries of closed days) are reduced.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .gaps import mark_gaps

__all__ = ["LADDER_MS", "NO_TS", "bucket_width", "Aggregates", "downsample"]

_S, _MIN, _H, _D = 1_000, 60_000, 3_600_000, 86_400_000

#: "Nice" bucket widths in ms; :func:`bucket_width` doubles the last one
#: for ranges longer than it covers.
LADDER_MS: tuple[int, ...] = (
    _S, 2 * _S, 5 * _S, 10 * _S, 15 * _S, 30 * _S,
    _MIN, 2 * _MIN, 5 * _MIN, 10 * _MIN, 15 * _MIN, 30 * _MIN,
    _H, 2 * _H, 3 * _H, 6 * _H, 12 * _H,
    _D, 2 * _D, 7 * _D, 14 * _D, 30 * _D, 60 * _D, 90 * _D, 180 * _D, 365 * _D,
)

#: The time of the minimum or maximum of a column that has no value (later
#: than any sample; exact in float64, as the caches store it).
NO_TS = 2 ** 62


def _buckets(from_ms: int, to_ms: int, width: int) -> int:
    return to_ms // width - from_ms // width + 1


def max_buckets(max_points: int) -> int:
    """Buckets whose rows and gap marks fit in ``max_points`` rows."""
    return (max_points + 1) // 3


def bucket_width(from_ms: int, to_ms: int, max_points: int) -> int:
    """The smallest ladder width whose aligned buckets touching
    ``[from_ms, to_ms]`` number at most :func:`max_buckets` (``max_points``).

    :raises ValueError: if ``from_ms`` is negative or ``max_points < 2``.
    """
    from_ms, to_ms = int(from_ms), int(to_ms)
    if from_ms < 0 or max_points < 2:
        raise ValueError(f"need from_ms >= 0 and max_points >= 2, got {from_ms}, {max_points}")
    limit = max_buckets(max_points)
    for width in LADDER_MS:
        if _buckets(from_ms, to_ms, width) <= limit:
            return width
    width = LADDER_MS[-1]
    while _buckets(from_ms, to_ms, width) > limit:
        width *= 2
    return width


def _extremes(op: np.ufunc, values: np.ndarray, when: np.ndarray, starts: np.ndarray,
              sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bucket (rows ``starts[i]`` on, ``sizes[i]`` of them) and column:
    the extreme ``op`` (``fmin``/``fmax``) of ``values`` and the earliest
    ``when`` it was reached (NaN never matches: :data:`NO_TS`).

    Reduced along the columns of the transposed arrays: with column-major
    values (as parsed files are) each column is contiguous, several times
    faster than reducing row-major rows."""
    values_t, when_t = values.T, when.T
    extreme = op.reduceat(values_t, starts, axis=1)
    reached = values_t == np.repeat(extreme, sizes, axis=1)
    first = np.minimum.reduceat(np.where(reached, when_t, NO_TS), starts, axis=1)
    return extreme.T, first.T


@dataclass
class Aggregates:
    """Time-ordered, non-overlapping partial buckets of samples.

    Row ``i`` summarises ``count[i]`` samples taken from ``first_ts[i]`` to
    ``last_ts[i]`` with per-column NaN-ignoring ``min``/``max`` and the time
    of the first sample holding each (``min_ts``/``max_ts``, :data:`NO_TS`
    for a column without a value).  Raw rows are the special case
    ``count == 1``, ``first_ts == last_ts``, ``min == max``.
    """

    first_ts: np.ndarray  # int64 (m,)
    last_ts: np.ndarray  # int64 (m,)
    count: np.ndarray  # int64 (m,)
    min: np.ndarray  # float64 (m, k)
    max: np.ndarray  # float64 (m, k)
    min_ts: np.ndarray  # int64 (m, k)
    max_ts: np.ndarray  # int64 (m, k)

    FIELDS = ("first_ts", "last_ts", "count", "min", "max", "min_ts", "max_ts")

    @classmethod
    def from_rows(cls, ts: np.ndarray, values: np.ndarray) -> "Aggregates":
        """Raw rows as one-sample aggregates (without copying the values)."""
        when = np.broadcast_to(ts[:, np.newaxis], values.shape)
        return cls(ts, ts, np.ones(len(ts), dtype=np.int64), values, values, when, when)

    @classmethod
    def empty(cls, ncols: int) -> "Aggregates":
        """No aggregates, ``ncols`` columns."""
        none = np.empty(0, dtype=np.int64)
        nan = np.empty((0, ncols), dtype=np.float64)
        when = np.empty((0, ncols), dtype=np.int64)
        return cls(none, none, none, nan, nan, when, when)

    @classmethod
    def concat(cls, parts: list["Aggregates"], ncols: int) -> "Aggregates":
        """Time-ordered parts joined into one."""
        parts = [p for p in parts if len(p.first_ts)]
        if not parts:
            return cls.empty(ncols)
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.FIELDS))

    def __len__(self) -> int:
        return len(self.first_ts)

    def slice(self, start: int, stop: int) -> "Aggregates":
        """Rows ``start:stop`` (views)."""
        return Aggregates(*(getattr(self, f)[start:stop] for f in self.FIELDS))

    @property
    def samples(self) -> int:
        """Number of raw samples summarised."""
        return int(self.count.sum())

    def reduce(self, width: int) -> "Aggregates":
        """Merge into buckets of ``width`` ms aligned to the epoch."""
        if not len(self):
            return self
        keys = self.first_ts // width
        starts = np.flatnonzero(np.diff(keys, prepend=keys[0] - 1))
        sizes = np.diff(np.append(starts, len(keys)))
        low, low_ts = _extremes(np.fmin, self.min, self.min_ts, starts, sizes)
        high, high_ts = _extremes(np.fmax, self.max, self.max_ts, starts, sizes)
        return Aggregates(self.first_ts[starts], self.last_ts[starts + sizes - 1],
                          np.add.reduceat(self.count, starts), low, high, low_ts, high_ts)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Each bucket's earlier extreme per column at its first sample, then
        (if it holds more than one sample) the later one at its last:
        ``(ts, values)``."""
        n, k = len(self), self.min.shape[1]
        min_first = self.min_ts <= self.max_ts
        ts = np.empty(2 * n, dtype=np.int64)
        values = np.empty((2 * n, k), dtype=np.float64)
        ts[0::2], ts[1::2] = self.first_ts, self.last_ts
        values[0::2] = np.where(min_first, self.min, self.max)
        values[1::2] = np.where(min_first, self.max, self.min)
        keep = np.ones(2 * n, dtype=bool)
        keep[1::2] = self.count > 1
        return ts[keep], values[keep]


def downsample(ts: np.ndarray, values: np.ndarray, from_ms: int, to_ms: int,
               max_points: Optional[int], gap_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """The answer to a query over time-ordered rows lying in
    ``[from_ms, to_ms]``: the rows with their gaps marked if that fits in
    ``max_points`` rows (or ``max_points`` is None), else their
    :func:`bucket_width` buckets with the gaps longer than a bucket marked.

    This is the definition; the store computes the same from partial
    aggregates without reading every row.
    """
    if max_points is not None:
        width = bucket_width(from_ms, to_ms, max_points)
    if max_points is None or len(ts) <= max_points:
        marked = mark_gaps(ts, values, gap_ms)
        if max_points is None or len(marked[0]) <= max_points:
            return marked
    ts, values = Aggregates.from_rows(ts, values).reduce(width).rows()
    return mark_gaps(ts, values, max(gap_ms, width))
