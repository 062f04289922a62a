"""Range queries over the CSV log without parsing whole files per request.

Every CSV file gets a columnar cache in ``data_dir/.cache/``, named after it
(``thermostat-YYYY-MM-DD[.N].csv.<part>``):

* ``ts.npy`` (int64) and ``values.npy`` (float64, rows x columns): the rows
  of the file, time-sorted, memory-mapped and binary-searched;
* ``m.npy`` and ``h.npy``: per-minute and per-hour :class:`Aggregates`
  (first/last ts, count, per-column min and max) packed as float64 rows
  ``[first_ts, last_ts, count, min..., max...]`` (epoch ms are exact in
  float64);
* ``json``: written last, it records the CSV's size and mtime the cache was
  built from and the columns.  A cache whose CSV changed is rebuilt.

The CSV stays the log of record: caches can be deleted at any time.  Caches
are built lazily on first use (or ahead of time with
:meth:`DiskHistory.build_caches`); only complete lines count, so a torn tail
never gets into a cache.  The newest file, which the bridge appends to, is
not cached on disk: it is parsed incrementally (from a remembered offset)
into memory, with per-minute aggregates maintained as rows arrive.

Downsampled queries use a tier when the bucket width is a multiple of the
tier's width: a range is cut into whole hours (hour tier), the minutes at
its edges (minute tier) and the seconds at the very edges (raw rows); since
min and max are exact, the result equals downsampling the raw rows.
Memory is bounded: a fixed number of files keep their hour tier in memory
and fewer still keep memory maps open (least recently used are dropped).
"""

import io
import json
import logging
import multiprocessing
import os
import threading
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from typing import Optional, Sequence

import numpy as np

from .csvlog import DAY_MS, parse_file_name
from .downsample import Aggregates

logger = logging.getLogger(__name__)

__all__ = ["DiskHistory", "build_cache", "parse_csv", "CACHE_DIR"]

CACHE_DIR = ".cache"
_VERSION = 1
MINUTE_MS, HOUR_MS = 60_000, 3_600_000
_CHUNK = 1 << 17  # bytes of CSV parsed per C call
#: Tier widths, coarsest first.
TIERS = (HOUR_MS, MINUTE_MS)


def parse_csv(data: bytes, columns: Optional[list[str]] = None
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Parse complete CSV lines ``time,ts,<columns...>``.

    ``data`` starts with the header unless ``columns`` is given (a chunk from
    the middle of a file); anything after the last newline is ignored.  Lines
    that do not parse (wrong field count, garbage) are skipped.  Returns
    ``(columns, ts int64, values float64)`` in file order.
    """
    data = data[: data.rfind(b"\n") + 1]
    if columns is None:
        header, _, data = data.partition(b"\n")
        columns = header.decode("utf-8", "replace").strip().split(",")[2:]
    k = len(columns)
    tables = [np.empty((0, k + 1))]
    start = 0
    while start < len(data):
        # Parse in chunks: each C call holds the GIL only briefly, so a parse
        # in a worker thread never stalls the poll loop for long.
        end = data.find(b"\n", start + _CHUNK) + 1 or len(data)
        tables.append(_parse_chunk(data[start:end], k))
        start = end
    table = np.concatenate(tables)
    return columns, table[:, 0].astype(np.int64), np.ascontiguousarray(table[:, 1:])


def _parse_chunk(data: bytes, k: int) -> np.ndarray:
    """``ts`` and values of complete lines as float64 rows of ``k + 1``."""
    if not data.strip():
        return np.empty((0, k + 1))
    # loadtxt rejects empty cells: write them as nan (twice for ",,,").
    filled = (data.replace(b",,", b",nan,").replace(b",,", b",nan,")
              .replace(b",\n", b",nan\n").replace(b",\r\n", b",nan\r\n"))
    try:
        return np.loadtxt(io.BytesIO(filled), delimiter=",", dtype=np.float64,
                          usecols=range(1, k + 2), ndmin=2, comments=None)
    except ValueError:
        return _parse_lines_slowly(filled, k)


def _parse_lines_slowly(data: bytes, k: int) -> np.ndarray:
    rows = []
    for line in data.splitlines():
        cells = line.split(b",")
        if len(cells) != k + 2:
            continue
        try:
            rows.append([float(c) for c in cells[1:]])
        except ValueError:
            continue
    logger.warning("skipped %d malformed CSV lines", len(data.splitlines()) - len(rows))
    return np.array(rows, dtype=np.float64).reshape(len(rows), k + 1)


def _sorted_unique(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by ts, first of duplicates kept (files written by the
    bridge already are; foreign or hand-edited ones may not be)."""
    if len(ts) < 2 or bool(np.all(ts[1:] > ts[:-1])):
        return ts, values
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    keep = np.append(True, ts[1:] != ts[:-1])
    return ts[keep], values[keep]


def _pack(agg: Aggregates) -> np.ndarray:
    return np.column_stack([agg.first_ts, agg.last_ts, agg.count, agg.min, agg.max]
                           ).astype(np.float64)


def _unpack(packed: np.ndarray, k: int) -> Aggregates:
    return Aggregates(
        packed[:, 0].astype(np.int64), packed[:, 1].astype(np.int64),
        packed[:, 2].astype(np.int64), packed[:, 3:3 + k], packed[:, 3 + k:3 + 2 * k],
    )


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


class _FileData:
    """Rows and tiers of one CSV file: from its disk cache (closed files) or
    parsed incrementally into memory (the live file)."""

    def __init__(self, csv_path: str, cache_prefix: str, day: int):
        self.csv_path = csv_path
        self.cache_prefix = cache_prefix
        self.day = day
        self.columns: list[str] = []
        self.key: Optional[tuple[int, int, int]] = None  # CSV stat the data is from
        self.live = False
        self.ts = np.empty(0, np.int64)
        self.values = np.empty((0, 0))
        self.hour: Optional[Aggregates] = None
        self.minute: Optional[Aggregates] = None
        self.mapped = False  # ts/values/minute are memory maps
        self._n = 0  # live: rows held
        self._ts_buf = np.empty(0, np.int64)  # live: growable row storage
        self._val_buf = np.empty((0, 0))
        self._offset = 0  # live: bytes of the CSV parsed
        self._minute_stable = 0  # live: minute rows that are complete

    # -- closed files -------------------------------------------------------
    def _cache(self, part: str) -> str:
        return f"{self.cache_prefix}.{part}"

    def load_cache(self, key: tuple[int, int, int]) -> bool:
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
            if hour.ndim != 2 or hour.shape[1] != 3 + 2 * k:
                return False
        except (OSError, ValueError, KeyError, TypeError):
            return False
        self.columns, self.key, self.live = meta["columns"], key, False
        self.hour = _unpack(hour, k)
        self.ts = self.values = self.minute = None
        self.mapped = False
        self._ts_buf, self._val_buf = np.empty(0, np.int64), np.empty((0, 0))
        return True

    def open_maps(self) -> None:
        """Memory-map the rows and the minute tier (closed files)."""
        if self.mapped or self.live:
            return
        k = len(self.columns)
        ts = np.load(self._cache("ts.npy"), mmap_mode="r")
        values = np.load(self._cache("values.npy"), mmap_mode="r")
        minute = np.load(self._cache("m.npy"), mmap_mode="r")
        if values.shape != (len(ts), k) or minute.shape[1:] != (3 + 2 * k,):
            raise ValueError(f"cache of {self.csv_path} is inconsistent")
        self.ts, self.values, self.minute = ts, values, _unpack(minute, k)
        self.mapped = True

    def close_maps(self) -> None:
        """Drop memory maps (they are reopened when needed)."""
        if self.mapped:
            self.ts = self.values = self.minute = None
            self.mapped = False

    def write_cache(self, columns: list[str], ts: np.ndarray, values: np.ndarray,
                    key: tuple[int, int, int]) -> None:
        """Write the cache files for rows parsed from the CSV in state ``key``."""
        raw = Aggregates.from_rows(ts, values)
        minute = raw.reduce(MINUTE_MS)
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

    def build(self, key: tuple[int, int, int]) -> None:
        """(Re)build the cache from the CSV, or from the live rows if they
        cover the whole file, then load it."""
        if self.live and self.key == key:
            columns, ts, values = self.columns, self.ts, self.values
        else:
            with open(self.csv_path, "rb") as f:
                columns, ts, values = parse_csv(f.read())
            ts, values = _sorted_unique(ts, values)
        self.write_cache(columns, ts, values, key)
        if not self.load_cache(key):
            raise OSError(f"cache of {self.csv_path} did not load back")

    # -- the live file ------------------------------------------------------
    def refresh_live(self, key: tuple[int, int, int]) -> None:
        """Parse what was appended to the live file since the last call."""
        if not self.live or self.key is None or key[0] != self.key[0] or key[1] < self._offset:
            self.live, self._n, self._offset, self._minute_stable = True, 0, 0, 0
            self.mapped, self.hour, self.minute = False, None, None
            self._ts_buf, self._val_buf = np.empty(0, np.int64), np.empty((0, 0))
        with open(self.csv_path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read(key[1] - self._offset)
        chunk = chunk[: chunk.rfind(b"\n") + 1]
        if self._offset == 0:
            columns, ts, values = parse_csv(chunk)
            self.columns = columns
            self.ts = np.empty(0, np.int64)
            self.values = np.empty((0, len(columns)))
            self.minute = self.hour = Aggregates.concat([], len(columns))
        else:
            _, ts, values = parse_csv(chunk, self.columns)
        self._offset += len(chunk)
        self.key = key
        if self._n:
            keep = ts > self.ts[self._n - 1]  # keep the file's rows sorted
            ts, values = ts[keep], values[keep]
        ts, values = _sorted_unique(ts, values)
        if len(ts):
            self._append_live(ts, values)

    def _append_live(self, ts: np.ndarray, values: np.ndarray) -> None:
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
        stable = Aggregates(old.first_ts[:i], old.last_ts[:i], old.count[:i],
                            old.min[:i], old.max[:i])
        start = stable.samples
        tail = Aggregates.from_rows(self.ts[start:], self.values[start:]).reduce(MINUTE_MS)
        self.minute = Aggregates.concat([stable, tail], len(self.columns))
        self._minute_stable = len(self.minute) - 1
        self.hour = self.minute.reduce(HOUR_MS)


def build_cache(csv_path: str) -> bool:
    """Build the cache of one closed CSV file unless it is fresh; return
    True if it was built.  Safe to run in parallel processes on distinct
    files (e.g. to prepare a large history ahead of time)."""
    data_dir, name = os.path.split(os.path.abspath(csv_path))
    parsed = parse_file_name(name)
    if parsed is None:
        raise ValueError(f"{csv_path} is not a log file name")
    fd = _FileData(csv_path, os.path.join(data_dir, CACHE_DIR, name), parsed[0])
    key = _stat_key(os.stat(csv_path))
    if fd.load_cache(key):
        return False
    fd.build(key)
    return True


def _build_cache_quietly(csv_path: str) -> bool:
    """:func:`build_cache` for a worker process: False instead of an error
    (the file is then read, and the error logged, by the bridge itself)."""
    try:
        return build_cache(csv_path)
    except (OSError, ValueError):
        return False


class DiskHistory:
    """Rows and min/max aggregates of the CSV files in ``data_dir``.

    Thread-safe.  ``max_files`` files keep metadata and hour tier in memory
    (about 11 kB each with 26 columns); ``max_open`` keep memory maps of rows
    and minute tiers.
    """

    def __init__(self, data_dir: str, max_files: int = 1200, max_open: int = 32):
        self.data_dir = os.path.abspath(data_dir)
        self.cache_dir = os.path.join(self.data_dir, CACHE_DIR)
        self.max_files = max_files
        self.max_open = max_open
        self._lock = threading.RLock()
        self._files: "OrderedDict[str, _FileData]" = OrderedDict()
        self._open: "OrderedDict[str, None]" = OrderedDict()
        self._listing: dict[str, tuple[int, int]] = {}
        self._headers: dict[str, list[str]] = {}
        self._headers_lock = threading.Lock()
        self._live: Optional[_FileData] = None
        #: Number of caches (re)built by this instance.
        self.caches_built = 0

    # -- files --------------------------------------------------------------
    def _list(self) -> list[tuple[tuple[int, int], str]]:
        """``((day, seq), name)`` of every log file, in time order."""
        try:
            names = os.listdir(self.data_dir)
        except FileNotFoundError:
            return []
        listing = {}
        for name in names:
            key = self._listing.get(name) or parse_file_name(name)
            if key:
                listing[name] = key
        self._listing = listing
        return sorted((key, name) for name, key in listing.items())

    def _file(self, name: str, day: int, live: bool) -> Optional[_FileData]:
        """Fresh data of one file, or None if it vanished or is unreadable.

        The live file is held apart from the LRU: it is parsed incrementally
        and dropping it would mean parsing it all again.
        """
        path = os.path.join(self.data_dir, name)
        try:
            key = _stat_key(os.stat(path))
        except FileNotFoundError:
            self._forget(name)
            return None
        if self._live is not None and self._live.csv_path == path:
            fd = self._live
        else:
            fd = self._files.get(name) or _FileData(
                path, os.path.join(self.cache_dir, name), day)
        try:
            if live:
                self._files.pop(name, None)
                self._live = fd
                if not fd.live or fd.key != key:
                    fd.refresh_live(key)
                return fd
            if fd is self._live:
                self._live = None
            if fd.live or fd.key != key:
                if fd.live or not fd.load_cache(key):
                    self._build(fd, key)
        except (OSError, ValueError) as exc:
            logger.error("cannot read %s: %s", path, exc)
            self._forget(name)
            return None
        self._files[name] = fd
        self._files.move_to_end(name)
        while len(self._files) > self.max_files:
            old, old_fd = self._files.popitem(last=False)
            old_fd.close_maps()
            self._open.pop(old, None)
        return fd

    def _forget(self, name: str) -> None:
        self._files.pop(name, None)
        self._open.pop(name, None)
        if self._live is not None and os.path.basename(self._live.csv_path) == name:
            self._live = None

    def _build(self, fd: _FileData, key: tuple[int, int, int]) -> None:
        logger.info("building history cache of %s", fd.csv_path)
        fd.build(key)
        self.caches_built += 1

    def _touch_open(self, fd: _FileData) -> None:
        """Make sure a closed file's maps are open; close the least recently
        used beyond ``max_open``."""
        if fd.live:
            return
        fd.open_maps()
        name = os.path.basename(fd.csv_path)
        self._open[name] = None
        self._open.move_to_end(name)
        while len(self._open) > self.max_open:
            old, _ = self._open.popitem(last=False)
            old_fd = self._files.get(old)
            if old_fd is not None:
                old_fd.close_maps()

    def _files_between(self, from_ms: int, to_ms: int) -> list[_FileData]:
        listing = self._list()
        if not listing:
            return []
        newest = listing[-1][1]
        day_lo, day_hi = from_ms // DAY_MS, to_ms // DAY_MS
        result = []
        for (day, _), name in listing:
            if day_lo <= day <= day_hi:
                fd = self._file(name, day, live=name == newest)
                if fd is not None:
                    result.append(fd)
        return result

    def build_caches(self, workers: int = 0) -> int:
        """Build missing or stale caches of every closed file (e.g. in a
        background thread at start-up or when a day closes) and load them;
        return how many were built.

        With ``workers`` > 0 the CSV files are parsed in that many child
        processes: parsing a year takes minutes of CPU, which then neither
        holds this process's GIL (the poll loop keeps its schedule) nor leaves
        its heap fragmented (resident memory stays bounded).
        """
        before = self.caches_built
        with self._lock:
            listing = self._list()
        closed = listing[:-1]
        paths = [os.path.join(self.data_dir, name) for _, name in closed]
        if workers > 0 and paths:
            self._build_in_processes(paths, workers)
        for (day, _), name in closed:
            with self._lock:
                self._file(name, day, live=False)
        return self.caches_built - before

    def _build_in_processes(self, paths: list[str], workers: int) -> None:
        """Build the caches of ``paths`` in ``workers`` child processes, a few
        files at a time (so that exiting waits for those only)."""
        context = multiprocessing.get_context("spawn")  # never fork a threaded process
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for i in range(0, len(paths), workers):
                batch = paths[i:i + workers]
                try:
                    futures = [pool.submit(_build_cache_quietly, path) for path in batch]
                except RuntimeError:  # the interpreter is exiting
                    return
                for path, future in zip(batch, futures):
                    if future.result():
                        logger.info("built history cache of %s", path)
                        self.caches_built += 1

    def columns(self) -> list[str]:
        """Every column of every log file, in order of first appearance.

        Headers are read once per file name (the bridge never rewrites a
        header), without waiting for queries in progress.
        """
        with self._headers_lock:
            listing = self._list()
            headers = {}
            for _, name in listing:
                header = self._headers.get(name)
                if header is None:
                    try:
                        with open(os.path.join(self.data_dir, name), "rb") as f:
                            line = f.readline()
                    except OSError:
                        continue
                    if not line.endswith(b"\n"):
                        continue  # no complete header yet
                    header = line.decode("utf-8", "replace").strip().split(",")[2:]
                headers[name] = header
            self._headers = headers
            seen: dict[str, None] = {}
            for header in headers.values():
                seen.update(dict.fromkeys(header))
        return list(seen)

    # -- queries ------------------------------------------------------------
    @staticmethod
    def _column_map(file_columns: list[str], columns: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(dst, src)``: requested column ``dst`` is file column ``src``."""
        index = {c: i for i, c in enumerate(file_columns)}
        pairs = [(d, index[c]) for d, c in enumerate(columns) if c in index]
        dst, src = zip(*pairs) if pairs else ((), ())
        return np.array(dst, dtype=np.intp), np.array(src, dtype=np.intp)

    @staticmethod
    def _take(block: np.ndarray, dst: np.ndarray, src: np.ndarray, k: int) -> np.ndarray:
        out = np.full((len(block), k), np.nan)
        if len(dst):
            out[:, dst] = block[:, src]
        return out

    def _raw_rows(self, fd: _FileData, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        i = int(np.searchsorted(fd.ts, lo, "left"))
        j = int(np.searchsorted(fd.ts, hi, "right"))
        return fd.ts[i:j], fd.values[i:j]

    def raw(self, from_ms: int, to_ms: int, columns: Sequence[str]
            ) -> tuple[np.ndarray, np.ndarray]:
        """Rows with ``from_ms <= ts <= to_ms`` as ``(ts, values)`` copies,
        NaN where a file lacks a column."""
        k = len(columns)
        ts_parts, value_parts = [], []
        with self._lock:
            for fd in self._files_between(from_ms, to_ms):
                self._touch_open(fd)
                ts, values = self._raw_rows(fd, from_ms, to_ms)
                if len(ts):
                    dst, src = self._column_map(fd.columns, columns)
                    ts_parts.append(np.array(ts))
                    value_parts.append(self._take(values, dst, src, k))
        if not ts_parts:
            return np.empty(0, np.int64), np.empty((0, k))
        return np.concatenate(ts_parts), np.concatenate(value_parts)

    def aggregates(self, from_ms: int, to_ms: int, columns: Sequence[str],
                   width: int) -> Aggregates:
        """Partial min/max aggregates of the rows in ``[from_ms, to_ms]``,
        each lying within one bucket of ``width`` ms; reduce them with
        :meth:`Aggregates.reduce` (``width``) to get the buckets."""
        k = len(columns)
        tiers = tuple(t for t in TIERS if width % t == 0)
        parts: list[Aggregates] = []
        with self._lock:
            for fd in self._files_between(from_ms, to_ms):
                day_start = fd.day * DAY_MS
                lo, hi = max(from_ms, day_start), min(to_ms, day_start + DAY_MS - 1)
                maps = self._column_map(fd.columns, columns)
                self._file_aggregates(fd, lo, hi, tiers, maps, k, parts)
        return Aggregates.concat(parts, k)

    def _file_aggregates(self, fd: _FileData, lo: int, hi: int, tiers: tuple[int, ...],
                         maps: tuple[np.ndarray, np.ndarray], k: int,
                         parts: list[Aggregates]) -> None:
        """Append the aggregates of ``fd``'s rows in ``[lo, hi]`` to ``parts``,
        whole buckets of the coarsest tier first, finer ones at the edges."""
        if lo > hi:
            return
        if not tiers:
            self._touch_open(fd)
            ts, values = self._raw_rows(fd, lo, hi)
            if len(ts):
                parts.append(Aggregates.from_rows(np.array(ts), self._take(values, *maps, k)))
            return
        width = tiers[0]
        a, b = -(-lo // width) * width, (hi + 1) // width * width
        if a >= b:
            self._file_aggregates(fd, lo, hi, tiers[1:], maps, k, parts)
            return
        self._file_aggregates(fd, lo, a - 1, tiers[1:], maps, k, parts)
        if width == HOUR_MS:
            tier = fd.hour
        else:
            self._touch_open(fd)
            tier = fd.minute
        i = int(np.searchsorted(tier.first_ts, a, "left"))
        j = int(np.searchsorted(tier.first_ts, b, "left"))
        if i < j:
            parts.append(Aggregates(
                tier.first_ts[i:j], tier.last_ts[i:j], tier.count[i:j],
                self._take(tier.min[i:j], *maps, k), self._take(tier.max[i:j], *maps, k),
            ))
        self._file_aggregates(fd, b, hi, tiers[1:], maps, k, parts)
