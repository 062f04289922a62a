"""Min/max downsampling into time buckets aligned to the epoch.

Each non-empty bucket of width ``W`` becomes at most two rows: every column's
minimum at the time of the bucket's first sample and, if the bucket holds
more than one sample, every column's maximum at the time of its last sample.
NaNs are ignored (NaN only if all are NaN); empty buckets produce no row, so
gaps stay gaps.  Because min and max are exact and associative, the same rows
come out whether the raw samples or pre-aggregated partial buckets
(:class:`Aggregates`, e.g. per-minute summaries of closed days) are reduced.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["LADDER_MS", "bucket_width", "Aggregates", "minmax"]

_S, _MIN, _H, _D = 1_000, 60_000, 3_600_000, 86_400_000

#: "Nice" bucket widths in ms; :func:`bucket_width` doubles the last one
#: for ranges longer than it covers.
LADDER_MS: tuple[int, ...] = (
    _S, 2 * _S, 5 * _S, 10 * _S, 15 * _S, 30 * _S,
    _MIN, 2 * _MIN, 5 * _MIN, 10 * _MIN, 15 * _MIN, 30 * _MIN,
    _H, 2 * _H, 3 * _H, 6 * _H, 12 * _H,
    _D, 2 * _D, 7 * _D, 14 * _D, 30 * _D, 60 * _D, 90 * _D, 180 * _D, 365 * _D,
)


def _buckets(from_ms: int, to_ms: int, width: int) -> int:
    return to_ms // width - from_ms // width + 1


def bucket_width(from_ms: int, to_ms: int, max_points: int) -> int:
    """The smallest ladder width whose aligned buckets touching
    ``[from_ms, to_ms]`` number at most ``max_points // 2``.

    :raises ValueError: if ``from_ms`` is negative or ``max_points < 2``.
    """
    from_ms, to_ms = int(from_ms), int(to_ms)
    if from_ms < 0 or max_points < 2:
        raise ValueError(f"need from_ms >= 0 and max_points >= 2, got {from_ms}, {max_points}")
    limit = max_points // 2
    for width in LADDER_MS:
        if _buckets(from_ms, to_ms, width) <= limit:
            return width
    width = LADDER_MS[-1]
    while _buckets(from_ms, to_ms, width) > limit:
        width *= 2
    return width


@dataclass
class Aggregates:
    """Time-ordered, non-overlapping partial buckets of samples.

    Row ``i`` summarises ``count[i]`` samples taken from ``first_ts[i]`` to
    ``last_ts[i]`` with per-column NaN-ignoring ``min``/``max``.  Raw rows are
    the special case ``count == 1``, ``first_ts == last_ts``, ``min == max``.
    """

    first_ts: np.ndarray  # int64 (m,)
    last_ts: np.ndarray  # int64 (m,)
    count: np.ndarray  # int64 (m,)
    min: np.ndarray  # float64 (m, k)
    max: np.ndarray  # float64 (m, k)

    @classmethod
    def from_rows(cls, ts: np.ndarray, values: np.ndarray) -> "Aggregates":
        """Raw rows as one-sample aggregates (no copy)."""
        return cls(ts, ts, np.ones(len(ts), dtype=np.int64), values, values)

    @classmethod
    def concat(cls, parts: list["Aggregates"], ncols: int) -> "Aggregates":
        """Time-ordered parts joined into one."""
        parts = [p for p in parts if len(p.first_ts)]
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            nan = np.empty((0, ncols), dtype=np.float64)
            return cls(empty, empty, empty, nan, nan)
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("first_ts", "last_ts", "count", "min", "max")))

    def __len__(self) -> int:
        return len(self.first_ts)

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
        ends = np.append(starts[1:], len(keys)) - 1
        return Aggregates(
            self.first_ts[starts],
            self.last_ts[ends],
            np.add.reduceat(self.count, starts),
            np.fmin.reduceat(self.min, starts, axis=0),
            np.fmax.reduceat(self.max, starts, axis=0),
        )

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Min row at each bucket's first sample, then (if it holds more than
        one sample) max row at its last: ``(ts, values)``."""
        n, k = len(self), self.min.shape[1]
        ts = np.empty(2 * n, dtype=np.int64)
        values = np.empty((2 * n, k), dtype=np.float64)
        ts[0::2], ts[1::2] = self.first_ts, self.last_ts
        values[0::2], values[1::2] = self.min, self.max
        keep = np.ones(2 * n, dtype=bool)
        keep[1::2] = self.count > 1
        return ts[keep], values[keep]


def minmax(
    ts: np.ndarray,
    values: np.ndarray,
    from_ms: int,
    to_ms: int,
    max_points: Optional[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Downsample time-ordered rows lying in ``[from_ms, to_ms]`` to at most
    ``max_points`` rows (unchanged if there are no more than that), using
    :func:`bucket_width` buckets."""
    if max_points is None or len(ts) <= max_points:
        return ts, values
    width = bucket_width(from_ms, to_ms, max_points)
    return Aggregates.from_rows(ts, values).reduce(width).rows()
