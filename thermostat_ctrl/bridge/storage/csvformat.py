"""The CSV log format: file names, header, cell text and parsing.

This module is the one place that knows the format; the writer
(:mod:`.csvlog`), the history reader, the importer and the HTTP rendering all
use it.

* One file per UTC day: ``thermostat-YYYY-MM-DD.csv``; when the columns
  change during a day the log continues in ``thermostat-YYYY-MM-DD.2.csv``,
  ``.3.csv``, ... so every file has exactly one header.
* Header: ``time,ts,<column>,...``; columns are ``<field>_ch<N>``.
* ``time``: ISO-8601 UTC with milliseconds and ``Z``; ``ts``: integer epoch ms.
* Value cells: empty for a missing value; integral values (booleans as 0/1)
  without a decimal point; other values with ``repr`` round-trip precision.
"""

import io
import logging
import math
import os
import re
import time
from typing import Iterable, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "DAY_MS", "day_of", "file_name", "parse_file_name", "iso_time", "iso_times",
    "header_line", "parse_header", "format_value", "cell_objects", "row_line", "parse_csv",
    "parse_file",
]

DAY_MS = 86_400_000
#: Integral values below this magnitude are written without a decimal point
#: (every such float64 is an exact integer).
EXACT_INT = 2.0 ** 53

_NAME_RE = re.compile(r"^thermostat-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.csv$")
_CHUNK = 1 << 17  # bytes of CSV parsed per C call


# ------------------------------------------------------------------ file names

def day_of(ts_ms: int) -> int:
    """UTC day number (days since the epoch) of an epoch-ms timestamp."""
    return int(ts_ms) // DAY_MS


def file_name(day: int, seq: int = 1) -> str:
    """CSV file name of the ``seq``-th file (1-based) of a UTC day number."""
    date = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
    return f"thermostat-{date}.csv" if seq == 1 else f"thermostat-{date}.{seq}.csv"


def parse_file_name(name: str) -> Optional[tuple[int, int]]:
    """``(day number, seq)`` of a log file name, or None for other names.

    Sorting log files by this key puts them in write (time) order."""
    match = _NAME_RE.match(name)
    if not match:
        return None
    y, m, d = (int(part) for part in match.group(1).split("-"))
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    return _days_from_civil(y, m, d), int(match.group(2) or 1)


def log_files(names: Iterable[str]) -> list[str]:
    """The log file names among ``names``, in write order."""
    keyed = [(key, name) for name in names if (key := parse_file_name(name))]
    return [name for _, name in sorted(keyed)]


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's algorithm: proleptic Gregorian date -> days since 1970-01-01.
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# ----------------------------------------------------------------------- cells

def iso_time(ts_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and ``Z``,
    e.g. ``2026-11-28T06:05:40.123Z``."""
    seconds, ms = divmod(int(ts_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def iso_times(ts: np.ndarray) -> np.ndarray:
    """:func:`iso_time` of an int64 array, vectorised."""
    return np.char.add(np.datetime_as_string(ts.astype("datetime64[ms]"), unit="ms"), "Z")


def header_line(columns: Sequence[str]) -> bytes:
    """The header line (with newline) of a file holding ``columns``."""
    return (",".join(["time", "ts", *columns]) + "\n").encode()


def parse_header(line: bytes) -> list[str]:
    """The value columns named by a header line."""
    return line.decode("utf-8", "replace").strip().split(",")[2:]


def format_value(value: float) -> str:
    """The text of one value cell (see the module doc)."""
    if math.isnan(value):
        return ""
    if value.is_integer() and abs(value) < EXACT_INT:
        return str(int(value))
    return repr(value)


def cell_objects(values: np.ndarray, missing: str) -> np.ndarray:
    """:func:`format_value`, vectorised: Python objects whose ``%s`` is the
    cell text (int, float, or ``missing`` for a missing value; ``missing`` is
    ``""`` in CSV and ``"null"`` in JSON)."""
    cells = values.astype(object)
    finite = np.isfinite(values)
    integral = finite & (np.trunc(values) == values) & (np.abs(values) < EXACT_INT)
    cells[integral] = values[integral].astype(np.int64).astype(object)
    cells[~finite] = missing
    return cells


def row_line(ts_ms: int, values: np.ndarray) -> bytes:
    """One data line (with newline)."""
    cells = map(format_value, values.tolist())
    return (",".join([iso_time(ts_ms), str(int(ts_ms)), *cells]) + "\n").encode()


# --------------------------------------------------------------------- parsing

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
        columns = parse_header(header)
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


def parse_file(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """:func:`parse_csv` of a whole file, several times faster.

    A file in which every line is complete and well-formed is parsed by
    pyarrow (imported on first use: only processes that parse whole files
    pay for it); any other falls back to :func:`parse_csv`, which skips the
    bad lines.  Both read numbers with correct rounding, so the result is
    the same either way.
    """
    with open(path, "rb") as f:
        header = f.readline()
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - 1))
        complete = header.endswith(b"\n") and f.read(1) == b"\n"
        if not complete or size == len(header):
            f.seek(0)
            return parse_csv(f.read())
    columns = parse_header(header)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # malloc's pool, not Arrow's own (mimalloc), which keeps what a parse freed
    # resident: with the bridge's malloc settings (:func:`~..runtime.tune_process`)
    # a parsed file's memory goes back to the system.
    pa.set_memory_pool(pa.system_memory_pool())

    names = [f"c{i}" for i in range(len(columns) + 2)]  # header names may repeat
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1,
                                           block_size=1 << 19, use_threads=False),
            parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False,
                                             newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.float64() for name in names[2:]} | {"c1": pa.int64()},
                include_columns=names[1:], null_values=[""], strings_can_be_null=False,
                quoted_strings_can_be_null=False))
        ts = table.column("c1")
        if ts.null_count:
            raise ValueError("a row without ts")
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        with open(path, "rb") as f:
            return parse_csv(f.read())
    values = np.empty((len(columns), table.num_rows))
    for j, name in enumerate(names[2:]):
        values[j] = table.column(name).to_numpy()
    return columns, ts.to_numpy(), values.T
