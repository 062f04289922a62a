"""Fixed-capacity in-memory store of the most recent rows."""

from typing import Optional

import numpy as np

__all__ = ["RingBuffer"]


class RingBuffer:
    """The last ``capacity`` rows: int64 epoch-ms timestamps plus a float64
    value per column, preallocated so appends are O(1) and allocate nothing.

    Timestamps must be appended in strictly increasing order; reads return
    chronologically ordered copies.
    """

    def __init__(self, columns: list[str], capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.columns: list[str] = list(columns)
        self.capacity: int = int(capacity)
        self._ts = np.zeros(self.capacity, dtype=np.int64)
        self._values = np.full((self.capacity, len(self.columns)), np.nan)
        self._next = 0  # slot of the next append
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, ts_ms: int, values: np.ndarray) -> None:
        """Store one row, overwriting the oldest when full.

        :raises ValueError: if ``ts_ms`` is not after the newest timestamp.
        """
        if self._count and ts_ms <= self._ts[self._next - 1]:
            raise ValueError(f"timestamp {ts_ms} is not after {self.newest_ts}")
        i = self._next
        self._ts[i] = ts_ms
        self._values[i] = values
        self._next = 0 if i + 1 == self.capacity else i + 1
        if self._count < self.capacity:
            self._count += 1

    @property
    def oldest_ts(self) -> Optional[int]:
        """Timestamp of the oldest row held, or None when empty."""
        if not self._count:
            return None
        return int(self._ts[self._next if self._count == self.capacity else 0])

    @property
    def newest_ts(self) -> Optional[int]:
        """Timestamp of the newest row, or None when empty."""
        return int(self._ts[self._next - 1]) if self._count else None

    def latest(self) -> Optional[tuple[int, np.ndarray]]:
        """The newest row as ``(ts_ms, values copy)``, or None when empty."""
        if not self._count:
            return None
        i = self._next - 1
        return int(self._ts[i]), self._values[i].copy()

    def _segments(self) -> list[slice]:
        """Slices of the storage holding rows, oldest first; each is sorted."""
        if self._count < self.capacity:
            return [slice(0, self._count)]
        return [slice(self._next, self.capacity), slice(0, self._next)]

    def read(
        self, from_ms: Optional[int] = None, to_ms: Optional[int] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows with ``from_ms <= ts <= to_ms`` (bounds optional, inclusive),
        oldest first, as copies ``(ts int64 (n,), values float64 (n, ncols))``.
        """
        ts_parts, value_parts = [], []
        for seg in self._segments():
            ts = self._ts[seg]
            lo = 0 if from_ms is None else int(np.searchsorted(ts, from_ms, "left"))
            hi = len(ts) if to_ms is None else int(np.searchsorted(ts, to_ms, "right"))
            if lo < hi:
                ts_parts.append(ts[lo:hi])
                value_parts.append(self._values[seg][lo:hi])
        if not ts_parts:
            return (
                np.empty(0, dtype=np.int64),
                np.empty((0, len(self.columns)), dtype=np.float64),
            )
        return np.concatenate(ts_parts), np.concatenate(value_parts)
