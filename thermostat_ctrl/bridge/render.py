"""Fast CSV and JSON rendering of stored rows.

Cells are written with ``repr`` round-trip precision like the CSV log;
integral values (booleans among them) without a decimal point (``1``, not
``1.0``); a missing value is an empty CSV cell or JSON ``null``.  Rows are
formatted with one ``%`` template per row instead of per-cell Python code,
and recently formatted rows are reused: Grafana refreshes ask for mostly the
same rows again.
"""

import collections
import json
import threading
from typing import Sequence

import numpy as np

_EXACT_INT = 2.0 ** 53
# Formatted rows kept for reuse (a row formatted as CSV and as JSON is two).
# An entry of 26 columns takes about 1.7 kB, so this bounds the cache to about
# 35 MB: an hour of raw rows in both formats plus a few downsampled panels.
CACHE_ROWS = 20_000
# Rows formatted per step: a large answer (a day of raw rows) never holds more
# than this many rows' worth of temporary Python objects.
CHUNK_ROWS = 4096


def iso_times(ts: np.ndarray) -> np.ndarray:
    """Epoch ms to ISO-8601 UTC strings with milliseconds and ``Z``."""
    return np.char.add(np.datetime_as_string(ts.astype("datetime64[ms]"), unit="ms"), "Z")


def _cell_objects(values: np.ndarray, missing: str) -> np.ndarray:
    """Python objects whose ``%s`` is the cell text: int, float or ``missing``."""
    cells = values.astype(object)
    finite = np.isfinite(values)
    integral = finite & (np.trunc(values) == values) & (np.abs(values) < _EXACT_INT)
    cells[integral] = values[integral].astype(np.int64).astype(object)
    cells[~finite] = missing
    return cells


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
            cells = _cell_objects(values[todo], missing).tolist()
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


def warm(columns: Sequence[str], row: np.ndarray) -> None:
    """Format a new row ahead of the queries that will ask for it."""
    _cache.format(_csv_template(columns), row[np.newaxis], "")
    _cache.format(_json_template(columns), row[np.newaxis], "null")


def _chunks(n: int) -> range:
    return range(0, n, CHUNK_ROWS)


def _store(n: int) -> bool:
    # An answer of more than a quarter of the cache (e.g. a day of raw rows)
    # is looked up but not stored: it would only evict every other entry.
    return n <= CACHE_ROWS // 4


def to_csv(ts: np.ndarray, columns: Sequence[str], values: np.ndarray) -> bytes:
    """CSV text: header ``time,ts,<columns>``, one line per row, final newline."""
    template, sep, store = _csv_template(columns), "," if columns else "", _store(len(ts))
    parts = [(",".join(["time", "ts", *columns]) + "\n").encode()]
    for i in _chunks(len(ts)):
        chunk = ts[i:i + CHUNK_ROWS]
        body = _cache.format(template, values[i:i + CHUNK_ROWS], "", store)
        prefix = np.char.add(np.char.add(iso_times(chunk), ","), chunk.astype(str)).tolist()
        parts.append("".join(map("{}{}{}\n".format, prefix, [sep] * len(prefix), body)).encode())
    return b"".join(parts)


def to_json(ts: np.ndarray, columns: Sequence[str], values: np.ndarray) -> bytes:
    """JSON list of row objects keyed ``time``, ``ts`` and the column names."""
    template, store = _json_template(columns), _store(len(ts))
    parts = [b"["]
    for i in _chunks(len(ts)):
        chunk = ts[i:i + CHUNK_ROWS]
        body = _cache.format(template, values[i:i + CHUNK_ROWS], "null", store)
        rows = map('{{"time":"{}","ts":{}{}}}'.format, iso_times(chunk).tolist(),
                   chunk.tolist(), body)
        parts.append(("," if i else "").encode() + ",".join(rows).encode())
    parts.append(b"]")
    return b"".join(parts)
