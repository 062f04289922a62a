"""Fast CSV and JSON rendering of stored rows.

Cells are the CSV log's (:func:`~..storage.csvformat.format_value`): ``repr``
round-trip precision, integral values (booleans among them) without a decimal
point (``1``, not ``1.0``: a JSON integer), a missing value an empty CSV cell
or JSON ``null``.  Every row endpoint (``/series``, ``/data.csv``,
``/save_once``) renders here, so the same cell has the same text and JSON
type in each.  Rows are
formatted with one ``%`` template per row instead of per-cell Python code;
each device's newest rows are rendered once as they arrive
(:class:`RecentRows`), and other formatted rows are reused: Grafana
refreshes ask for mostly the same rows again.
"""

import bisect
import collections
import json
import threading
from typing import Optional, Sequence

import numpy as np

from ..storage.csvformat import cell_objects, header_line, iso_times
# Formatted rows kept for reuse (a row formatted as CSV and as JSON is two).
# An entry of 26 columns takes about 1.7 kB, so this bounds the cache to about
# 35 MB: an hour of raw rows in both formats plus a few downsampled panels.
CACHE_ROWS = 20_000
# Rows formatted per step: a large answer (a day of raw rows) never holds more
# than this many rows' worth of temporary Python objects.
CHUNK_ROWS = 4096


class _RowCache:
    """Formatted rows keyed by (template, row bytes): an LRU, safe across threads."""

    def __init__(self, size: int):
        self.size = size
        self._rows: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def format(self, template: str, values: np.ndarray, missing: str,
               store: bool = True) -> list:
        """Format each row of ``values`` with ``template`` (one ``%s`` per
        column); ``store``: keep the rows in the cache."""
        keys = [(template, row.tobytes()) for row in values]
        with self._lock:
            found = [self._rows.get(k) for k in keys]
        todo = [i for i, text in enumerate(found) if text is None]
        if todo:
            cells = cell_objects(values[todo], missing).tolist()
            for i, row in zip(todo, cells):
                found[i] = template % tuple(row)
        if not store:
            return found
        with self._lock:
            for key, text in zip(keys, found):
                self._rows[key] = text
                self._rows.move_to_end(key)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
        return found


_cache = _RowCache(CACHE_ROWS)


def _csv_template(columns: Sequence[str]) -> str:
    return ",".join(["%s"] * len(columns))


def _json_template(columns: Sequence[str]) -> str:
    return "".join(",{}:%s".format(json.dumps(c).replace("%", "%%")) for c in columns)


def _chunks(n: int) -> range:
    return range(0, n, CHUNK_ROWS)


def _store(n: int) -> bool:
    # An answer of more than a quarter of the cache (e.g. a day of raw rows)
    # is looked up but not stored: it would only evict every other entry.
    return n <= CACHE_ROWS // 4


def _csv_lines(ts: np.ndarray, columns: Sequence[str], values: np.ndarray, store: bool):
    """The rows as CSV lines (with newline), chunk by chunk (lists of str)."""
    template, sep = _csv_template(columns), "," if columns else ""
    for i in _chunks(len(ts)):
        chunk = ts[i:i + CHUNK_ROWS]
        body = _cache.format(template, values[i:i + CHUNK_ROWS], "", store)
        prefix = np.char.add(np.char.add(iso_times(chunk), ","), chunk.astype(str)).tolist()
        yield list(map("{}{}{}\n".format, prefix, [sep] * len(prefix), body))


def _json_objects(ts: np.ndarray, columns: Sequence[str], values: np.ndarray, store: bool):
    """The rows as JSON object texts, chunk by chunk (lists of str)."""
    template = _json_template(columns)
    for i in _chunks(len(ts)):
        chunk = ts[i:i + CHUNK_ROWS]
        body = _cache.format(template, values[i:i + CHUNK_ROWS], "null", store)
        yield list(map('{{"time":"{}","ts":{}{}}}'.format, iso_times(chunk).tolist(),
                       chunk.tolist(), body))


class RecentRows:
    """A device's most recent rows, each rendered once (as a CSV line and as
    a JSON object) when it arrives, so that answers over the memory window
    are joined from ready bytes.  Thread-safe; holds the last ``capacity``
    rows (at least) of the current columns."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.columns: tuple = ()
        self._ts: list = []       # ascending
        self._rendered: tuple = ([], [])  # CSV lines, JSON objects (bytes), as _ts
        self._lock = threading.Lock()

    def add(self, ts: int, columns: Sequence[str], row: np.ndarray) -> None:
        """Render and keep one new row (rows arrive in time order)."""
        one, values = np.array([ts], dtype=np.int64), row[np.newaxis]
        csv = next(_csv_lines(one, columns, values, False))[0].encode()
        obj = next(_json_objects(one, columns, values, False))[0].encode()
        with self._lock:
            if tuple(columns) != self.columns:
                self.columns = tuple(columns)
                self._ts, self._rendered = [], ([], [])
            self._ts.append(int(ts))
            self._rendered[0].append(csv)
            self._rendered[1].append(obj)
            if len(self._ts) > 2 * self.capacity:  # trimmed in bulk: amortised O(1)
                del self._ts[:-self.capacity]
                for rendered in self._rendered:
                    del rendered[:-self.capacity]

    def take(self, ts: np.ndarray, columns: Sequence[str], which: int) -> Optional[list]:
        """The rendered rows (``which``: 0 CSV, 1 JSON) of ``ts``, or None
        unless they are held, consecutively, for exactly ``columns``."""
        if not len(ts):
            return None
        wanted = ts.tolist()
        with self._lock:
            if tuple(columns) != self.columns:
                return None
            i = bisect.bisect_left(self._ts, wanted[0])
            if self._ts[i:i + len(wanted)] != wanted:
                return None
            return self._rendered[which][i:i + len(wanted)]


def to_csv(ts: np.ndarray, columns: Sequence[str], values: np.ndarray,
           recent: Optional[RecentRows] = None) -> bytes:
    """CSV text: header ``time,ts,<columns>``, one line per row, final newline."""
    ready = recent.take(ts, columns, 0) if recent is not None else None
    if ready is not None:
        return header_line(columns) + b"".join(ready)
    store = _store(len(ts))
    return header_line(columns) + b"".join(
        "".join(lines).encode() for lines in _csv_lines(ts, columns, values, store))


def to_json(ts: np.ndarray, columns: Sequence[str], values: np.ndarray,
            recent: Optional[RecentRows] = None) -> bytes:
    """JSON list of row objects keyed ``time``, ``ts`` and the column names."""
    ready = recent.take(ts, columns, 1) if recent is not None else None
    if ready is not None:
        return b"[" + b",".join(ready) + b"]"
    store = _store(len(ts))
    return b"[" + b",".join(",".join(rows).encode()
                             for rows in _json_objects(ts, columns, values, store)) + b"]"


def row_json(ts: int, columns: Sequence[str], row: np.ndarray) -> bytes:
    """One row as a JSON object, exactly as :func:`to_json` writes it."""
    (rows,) = _json_objects(np.array([ts], dtype=np.int64), columns, row[np.newaxis], False)
    return rows[0].encode()
