"""The newest CSV file of a device, which the bridge appends to.

It is not cached on disk: it is parsed incrementally (from a remembered
offset) into growable in-memory arrays, with per-minute and per-hour
aggregates maintained as rows arrive.
"""

from typing import Optional

import numpy as np

from .cachefile import HOUR_MS, MINUTE_MS, StatKey, sorted_unique
from .csvformat import parse_csv
from .downsample import Aggregates

__all__ = ["LiveFile"]


class LiveFile:
    """Rows and tiers of the file being appended to, parsed incrementally.

    Has the attributes queries read from a :class:`~.cachefile.ClosedFile`
    (``columns``, ``ts``, ``values``, ``minute``, ``hour``, ``day``).
    """

    live = True
    mapped = True

    def __init__(self, csv_path: str, day: int):
        self.csv_path = csv_path
        self.day = day
        self.key: Optional[StatKey] = None  # CSV state parsed so far
        self._reset()

    def _reset(self) -> None:
        self.columns: list[str] = []
        self.ts = np.empty(0, np.int64)
        self.values = np.empty((0, 0))
        self.minute = self.hour = Aggregates.concat([], 0)
        self._n = 0  # rows held
        self._ts_buf = np.empty(0, np.int64)  # growable row storage
        self._val_buf = np.empty((0, 0))
        self._offset = 0  # bytes of the CSV parsed
        self._minute_stable = 0  # minute rows that are complete

    def open_maps(self) -> None:
        """Nothing to map: the rows are in memory."""

    def rows(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(columns, ts, values)`` of every row parsed (state :attr:`key`)."""
        return self.columns, self.ts, self.values

    def refresh(self, key: StatKey) -> None:
        """Parse what was appended since the last call (the file in state ``key``)."""
        if self.key is None or key[0] != self.key[0] or key[1] < self._offset:
            self._reset()  # first call, or the file was replaced or truncated
        with open(self.csv_path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read(key[1] - self._offset)
        chunk = chunk[: chunk.rfind(b"\n") + 1]
        if self._offset == 0:
            columns, ts, values = parse_csv(chunk)
            self.columns = columns
            self.values = np.empty((0, len(columns)))
            self.minute = self.hour = Aggregates.concat([], len(columns))
        else:
            _, ts, values = parse_csv(chunk, self.columns)
        self._offset += len(chunk)
        self.key = key
        if self._n:
            keep = ts > self.ts[self._n - 1]  # keep the file's rows sorted
            ts, values = ts[keep], values[keep]
        ts, values = sorted_unique(ts, values)
        if len(ts):
            self._append(ts, values)

    def _append(self, ts: np.ndarray, values: np.ndarray) -> None:
        n, m = self._n, len(ts)
        if n + m > len(self._ts_buf):
            cap = (n + m) * 5 // 4 + 4096  # geometric growth, modest slack
            ts_buf = np.empty(cap, np.int64)
            val_buf = np.empty((cap, len(self.columns)))
            ts_buf[:n], val_buf[:n] = self.ts, self.values
            self._ts_buf, self._val_buf = ts_buf, val_buf
        self._ts_buf[n:n + m], self._val_buf[n:n + m] = ts, values
        self._n = n + m
        self.ts, self.values = self._ts_buf[:self._n], self._val_buf[:self._n]
        # Re-aggregate from the first row of the last (possibly open) minute.
        old, i = self.minute, self._minute_stable
        stable = old.slice(0, i)
        start = stable.samples
        tail = Aggregates.from_rows(self.ts[start:], self.values[start:]).reduce(MINUTE_MS)
        self.minute = Aggregates.concat([stable, tail], len(self.columns))
        self._minute_stable = len(self.minute) - 1
        self.hour = self.minute.reduce(HOUR_MS)
