"""Range queries over a device's CSV log without parsing whole files per request.

Closed files are read from their caches (:mod:`.cachefile`), built lazily on
first use or ahead of time with :meth:`DiskHistory.build_caches`; the newest
file, which the bridge appends to, is parsed incrementally
(:mod:`.livefile`).

Downsampled queries use a tier when the bucket width is a multiple of the
tier's width: a range is cut into whole hours (hour tier), the minutes at
its edges (minute tier) and the seconds at the very edges (raw rows); since
min and max are exact, the result equals downsampling the raw rows.
Memory is bounded: a fixed number of files keep their hour tier in memory
and fewer still keep memory maps open (least recently used are dropped).
"""

import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Optional, Sequence, Union

import numpy as np

from .builders import build_in_processes
from .cachefile import CACHE_DIR, HOUR_MS, MINUTE_MS, ClosedFile, StatKey, stat_key
from .csvformat import DAY_MS, parse_file_name, parse_header
from .downsample import NO_TS, Aggregates
from .livefile import LiveFile

logger = logging.getLogger(__name__)

__all__ = ["DiskHistory"]

#: Tier widths, coarsest first.
TIERS = (HOUR_MS, MINUTE_MS)

FileData = Union[ClosedFile, LiveFile]


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
        self._files: "OrderedDict[str, ClosedFile]" = OrderedDict()
        self._open: "OrderedDict[str, None]" = OrderedDict()
        self._listing: dict[str, tuple[int, int]] = {}
        self._headers: dict[str, list[str]] = {}
        self._headers_lock = threading.Lock()
        self._live: Optional[LiveFile] = None
        self._foreground = threading.Event()  # cleared while a query builds caches
        self._foreground.set()
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

    def _file(self, name: str, day: int, live: bool) -> Optional[FileData]:
        """Fresh data of one file, or None if it vanished or is unreadable.

        The live file is held apart from the LRU: it is parsed incrementally
        and dropping it would mean parsing it all again.  When it stops being
        the newest, its cache is built from the rows already parsed.
        """
        path = os.path.join(self.data_dir, name)
        try:
            key = stat_key(os.stat(path))
        except FileNotFoundError:
            self._forget(name)
            return None
        was_live = self._live if self._live is not None and self._live.csv_path == path else None
        try:
            if live:
                self._files.pop(name, None)
                fd = was_live or LiveFile(path, day)
                self._live = fd
                if fd.key != key:
                    fd.refresh(key)
                return fd
            fd = self._files.get(name)
            if fd is None or fd.key != key:
                fd = fd or ClosedFile(path, os.path.join(self.cache_dir, name), day)
                if was_live is not None:
                    self._live = None
                if not fd.load(key):
                    rows = was_live.rows() if was_live is not None and was_live.key == key \
                        else None
                    self._build(fd, key, rows)
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

    def _build(self, fd: ClosedFile, key: StatKey, rows: Optional[tuple] = None) -> None:
        logger.info("building history cache of %s", fd.csv_path)
        fd.build(key, rows)
        self.caches_built += 1

    def _touch_open(self, fd: FileData) -> None:
        """Make sure a closed file's maps are open; close the least recently
        used beyond ``max_open``."""
        if isinstance(fd, LiveFile):
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

    def _files_between(self, from_ms: int, to_ms: int) -> list[FileData]:
        listing = self._list()
        if not listing:
            return []
        newest = listing[-1][1]
        day_lo, day_hi = from_ms // DAY_MS, to_ms // DAY_MS
        wanted = [(day, name) for (day, _), name in listing if day_lo <= day <= day_hi]
        self._build_missing([(day, name) for day, name in wanted if name != newest])
        result = []
        for day, name in wanted:
            fd = self._file(name, day, live=name == newest)
            if fd is not None:
                result.append(fd)
        return result

    def _build_missing(self, closed: list[tuple[int, str]]) -> None:
        """Build the missing or stale caches among ``closed`` files in child
        processes, as many as there are CPUs (:mod:`.builders`): a query over
        days without caches is not answered one file at a time, and pyarrow
        never enters the bridge's process.  The background builder waits
        meanwhile."""
        todo = []
        for day, name in closed:
            path = os.path.join(self.data_dir, name)
            try:
                key = stat_key(os.stat(path))
            except FileNotFoundError:
                continue
            fd = self._files.get(name)
            if fd is not None and fd.key == key:
                continue
            if self._live is not None and self._live.csv_path == path:
                continue  # just closed: cached from the rows in memory
            fd = fd or ClosedFile(path, os.path.join(self.cache_dir, name), day)
            if not fd.load(key):
                todo.append((name, fd, key))
        if not todo:
            return
        self._foreground.clear()
        began = time.monotonic()
        try:
            built = set(build_in_processes([fd.csv_path for _, fd, _ in todo],
                                           os.cpu_count() or 1))
        except OSError as e:  # _file builds them here, one by one
            logger.warning("could not start processes to build history caches: %s", e)
            return
        finally:
            self._foreground.set()
        logger.info("built %d history caches of %s in %.1f s", len(built), self.data_dir,
                    time.monotonic() - began)
        for name, fd, key in todo:
            if fd.load(key):  # else _file builds it again, here, and logs why it fails
                self.caches_built += fd.csv_path in built
                self._files[name] = fd

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
        # Newest first: recent days are the ones people look at.
        paths = [os.path.join(self.data_dir, name) for _, name in reversed(closed)]
        if workers > 0 and paths:
            self._build_in_processes(paths, workers)
        for (day, _), name in closed:
            with self._lock:
                self._file(name, day, live=False)
        return self.caches_built - before

    def _build_in_processes(self, paths: list[str], workers: int) -> None:
        """Build the caches of ``paths`` in ``workers`` child processes at
        :data:`~.builders.BACKGROUND_NICENESS`, each path handed out once no
        query is building caches of its own."""
        try:
            built = build_in_processes(paths, workers, background=True,
                                       before_each=lambda _: self._foreground.wait())
        except OSError as e:
            logger.warning("could not start processes to build history caches: %s", e)
            return
        for path in built:
            logger.info("built history cache of %s", path)
        self.caches_built += len(built)

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
                    header = parse_header(line)
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
    def _take(block: np.ndarray, dst: np.ndarray, src: np.ndarray, k: int,
              missing: Union[float, int] = np.nan) -> np.ndarray:
        """``block``'s columns ``src`` as columns ``dst`` of ``k``, the others ``missing``."""
        out = np.full((len(block), k), missing, dtype=np.asarray(missing).dtype)
        if len(dst):
            out[:, dst] = block[:, src]
        return out

    def _take_aggregates(self, tier: Aggregates, maps: tuple[np.ndarray, np.ndarray],
                         k: int) -> Aggregates:
        """``tier`` with its columns mapped like :meth:`_take`."""
        return Aggregates(
            tier.first_ts, tier.last_ts, tier.count,
            self._take(tier.min, *maps, k), self._take(tier.max, *maps, k),
            self._take(tier.min_ts, *maps, k, NO_TS), self._take(tier.max_ts, *maps, k, NO_TS))

    def _raw_rows(self, fd: FileData, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
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

    def _file_aggregates(self, fd: FileData, lo: int, hi: int, tiers: tuple[int, ...],
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
            parts.append(self._take_aggregates(tier.slice(i, j), maps, k))
        self._file_aggregates(fd, b, hi, tiers[1:], maps, k, parts)
