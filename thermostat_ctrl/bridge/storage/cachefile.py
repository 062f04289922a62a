"""The columnar cache of one closed CSV file, and the rows and tiers it holds.

Every closed CSV file gets a cache in ``<device dir>/.cache/``, named after
it (``thermostat-YYYY-MM-DD[.N].csv.<part>``):

* ``ts.npy`` (int64) and ``values.npy`` (float64, rows x columns): the rows
  of the file, time-sorted, memory-mapped and binary-searched;
* ``m.npy`` and ``h.npy``: per-minute and per-hour :class:`~.downsample.Aggregates`
  (first/last ts, count, per-column min and max and the time of each) packed
  as float64 rows ``[first_ts, last_ts, count, min..., max..., min_ts...,
  max_ts...]`` (epoch ms are exact in float64);
* ``json``: written last, it records the CSV's size and mtime the cache was
  built from and the columns.  A cache whose CSV changed is rebuilt.

The CSV stays the log of record: caches can be deleted at any time.  Only
complete lines count, so a torn tail never gets into a cache.
"""

import json
import os
import threading
from typing import Optional

import numpy as np

from .csvformat import parse_file, parse_file_name
from .downsample import Aggregates

__all__ = ["CACHE_DIR", "MINUTE_MS", "HOUR_MS", "ClosedFile", "build_cache", "stat_key",
           "sorted_unique"]

CACHE_DIR = ".cache"
_VERSION = 2  # 2: tiers hold the times of the minima and maxima
MINUTE_MS, HOUR_MS = 60_000, 3_600_000

#: A CSV file's identity and state: (inode, size, mtime ns).
StatKey = tuple[int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    """The :data:`StatKey` of a ``stat()`` result."""
    return st.st_ino, st.st_size, st.st_mtime_ns


def sorted_unique(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by ts, first of duplicates kept (files written by the
    bridge already are; foreign or hand-edited ones may not be)."""
    if len(ts) < 2 or bool(np.all(ts[1:] > ts[:-1])):
        return ts, values
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    keep = np.append(True, ts[1:] != ts[:-1])
    return ts[keep], values[keep]


def _pack(agg: Aggregates) -> np.ndarray:
    return np.column_stack([getattr(agg, f) for f in Aggregates.FIELDS]).astype(np.float64)


def _packed_width(k: int) -> int:
    return 3 + 4 * k


def _unpack(packed: np.ndarray, k: int) -> Aggregates:
    def ints(block: np.ndarray) -> np.ndarray:
        return block.astype(np.int64)

    return Aggregates(
        ints(packed[:, 0]), ints(packed[:, 1]), ints(packed[:, 2]),
        packed[:, 3:3 + k], packed[:, 3 + k:3 + 2 * k],
        ints(packed[:, 3 + 2 * k:3 + 3 * k]), ints(packed[:, 3 + 3 * k:3 + 4 * k]),
    )


class ClosedFile:
    """Rows and tiers of one closed CSV file, from its disk cache.

    The hour tier and the metadata stay in memory once loaded; rows and the
    minute tier are memory maps, opened by :meth:`open_maps` and dropped by
    :meth:`close_maps`.
    """

    live = False

    def __init__(self, csv_path: str, cache_prefix: str, day: int):
        self.csv_path = csv_path
        self.cache_prefix = cache_prefix
        self.day = day
        self.columns: list[str] = []
        self.key: Optional[StatKey] = None  # CSV state the cache is from
        self.ts: Optional[np.ndarray] = None
        self.values: Optional[np.ndarray] = None
        self.hour: Optional[Aggregates] = None
        self.minute: Optional[Aggregates] = None

    def _cache(self, part: str) -> str:
        return f"{self.cache_prefix}.{part}"

    def load(self, key: StatKey) -> bool:
        """Load the hour tier and metadata of a cache built from this CSV
        state; False if missing, stale or unreadable."""
        try:
            with open(self._cache("json"), encoding="utf-8") as f:
                meta = json.load(f)
            if (meta.get("version") != _VERSION
                    or [meta["csv_size"], meta["csv_mtime_ns"]] != list(key[1:])):
                return False
            k = len(meta["columns"])
            hour = np.load(self._cache("h.npy"))
            if hour.ndim != 2 or hour.shape[1] != _packed_width(k):
                return False
        except (OSError, ValueError, KeyError, TypeError):
            return False
        self.columns, self.key = meta["columns"], key
        self.hour = _unpack(hour, k)
        self.close_maps()
        return True

    @property
    def mapped(self) -> bool:
        """True while rows and minute tier are memory-mapped."""
        return self.ts is not None

    def open_maps(self) -> None:
        """Memory-map the rows and the minute tier."""
        if self.mapped:
            return
        k = len(self.columns)
        ts = np.load(self._cache("ts.npy"), mmap_mode="r")
        values = np.load(self._cache("values.npy"), mmap_mode="r")
        minute = np.load(self._cache("m.npy"), mmap_mode="r")
        if values.shape != (len(ts), k) or minute.shape[1:] != (_packed_width(k),):
            raise ValueError(f"cache of {self.csv_path} is inconsistent")
        self.ts, self.values, self.minute = ts, values, _unpack(minute, k)

    def close_maps(self) -> None:
        """Drop memory maps (they are reopened when needed)."""
        self.ts = self.values = self.minute = None

    def _write(self, columns: list[str], ts: np.ndarray, values: np.ndarray,
               key: StatKey) -> None:
        """Write the cache files for rows parsed from the CSV in state ``key``."""
        minute = Aggregates.from_rows(ts, values).reduce(MINUTE_MS)
        parts = {
            "ts.npy": ts, "values.npy": values,
            "m.npy": _pack(minute), "h.npy": _pack(minute.reduce(HOUR_MS)),
        }
        os.makedirs(os.path.dirname(self.cache_prefix), exist_ok=True)
        tmp_suffix = f".tmp{os.getpid()}.{threading.get_ident()}"
        for part, array in parts.items():
            tmp = self._cache(part) + tmp_suffix + ".npy"
            np.save(tmp, array)
            os.replace(tmp, self._cache(part))
        meta = {"version": _VERSION, "csv_size": key[1], "csv_mtime_ns": key[2],
                "columns": columns, "rows": int(len(ts))}
        tmp = self._cache("json") + tmp_suffix
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(tmp, self._cache("json"))

    def build(self, key: StatKey,
              rows: Optional[tuple[list[str], np.ndarray, np.ndarray]] = None) -> None:
        """(Re)build the cache from the CSV in state ``key``, or from ``rows``
        (columns, ts, values) already parsed from exactly that state; then
        load it."""
        if rows is None:
            columns, ts, values = parse_file(self.csv_path)
            ts, values = sorted_unique(ts, values)
        else:
            columns, ts, values = rows
        self._write(columns, ts, values, key)
        if not self.load(key):
            raise OSError(f"cache of {self.csv_path} did not load back")


def build_cache(csv_path: str) -> bool:
    """Build the cache of one closed CSV file unless it is fresh; return
    True if it was built.  Safe to run in parallel processes on distinct
    files (e.g. to prepare a large history ahead of time)."""
    data_dir, name = os.path.split(os.path.abspath(csv_path))
    parsed = parse_file_name(name)
    if parsed is None:
        raise ValueError(f"{csv_path} is not a log file name")
    closed = ClosedFile(csv_path, os.path.join(data_dir, CACHE_DIR, name), parsed[0])
    key = stat_key(os.stat(csv_path))
    if closed.load(key):
        return False
    closed.build(key)
    return True
