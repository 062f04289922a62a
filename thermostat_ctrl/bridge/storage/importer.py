"""Import the single wide CSV of the original server into a device's daily files.

The original server wrote one file, header ``time,ts,<field>_ch0,...``:
``time`` from Python's ``datetime.isoformat()`` (``2025-10-14T19:51:56.877487+00:00``,
without the fraction when the microseconds are zero), ``ts`` epoch ms,
booleans as ``True``/``False``, blank cells for missing values, any subset
and order of fields.  :func:`import_csv` reads it line by line (memory does
not grow with the file) and merges its rows into ``thermostat-YYYY-MM-DD.csv``
of the device (format: :mod:`.csvformat`):

* a day without files gets a new one; into a day that holds rows the new
  rows are merged by ``ts``: a ``ts`` already there is a duplicate (skipped),
  the rows already there keep their text and their order, and a file whose
  header lacks imported columns is rewritten with them added (empty cells);
* every file is written to a temporary name and renamed into place, so an
  interrupted import leaves each day as it was or complete, and running it
  again finishes it: importing the same file twice adds nothing;
* a line that is not a row (wrong cell count, no integer ``ts``, a ``time``
  that is no ISO-8601 time within a second of ``ts``, a cell that is no
  number or boolean, a torn last line) is refused and counted; the first
  few are kept with their line number, the reason and the text;
  columns not named ``<field>_ch<N>`` are ignored.
* new files get the permissions the bridge's own get (``0666`` less the
  umask).  The original's
  per-channel ``time_chN`` (the device's uptime) becomes ``device_time_chN``.

Run it only while no bridge writes the directory
(:class:`~.datadir.DataDirLock`); ``thermostat_bridge import`` takes the lock.
"""

import csv
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO, Callable, Optional, Sequence

import numpy as np

from ..schema import stored_field
from .csvformat import day_of, file_name, header_line, log_files, parse_header, row_line
from .history import DiskHistory

__all__ = ["ImportSummary", "RefusedLine", "import_csv", "FIRST_LINES"]

#: Refused lines kept (with reason and text) for the summary.
FIRST_LINES = 5
#: Characters of a refused line's text kept.
TEXT_MAX = 120
#: Rows held in memory before they are merged into their day's files.
FLUSH_ROWS = 100_000
#: Largest ``ts`` accepted (9999-12-31T23:59:59.999Z).
TS_MAX = 253_402_300_799_999
#: Largest difference between a row's ``time`` and its ``ts``.
TIME_TOLERANCE_MS = 1000

_CHUNK = 4096  # rows formatted at a time

_COLUMN = re.compile(r"^(?P<field>.+)_ch(?P<ch>\d+)$")
_BOOLEANS = {"True": 1.0, "False": 0.0}


@dataclass(frozen=True)
class RefusedLine:
    """A line of the source that is not a row."""

    number: int  #: 1-based; the header is line 1
    reason: str
    text: str  #: the line, cut at :data:`TEXT_MAX` characters

    def __str__(self) -> str:
        return "line {}: {}: {!r}".format(self.number, self.reason, self.text)


@dataclass
class ImportSummary:
    """What an import did."""

    imported: int = 0  #: rows added to the device's files
    duplicates: int = 0  #: rows whose ts was already there (or earlier in the file)
    malformed: int = 0  #: lines refused
    refused: list[RefusedLine] = field(default_factory=list)  #: the first few
    ignored_columns: list[str] = field(default_factory=list)  #: not ``<field>_chN``
    files: list[str] = field(default_factory=list)  #: files written, in order
    caches_built: int = 0  #: history caches built afterwards

    def __str__(self) -> str:
        days = len({name[:len("thermostat-YYYY-MM-DD")] for name in self.files})
        text = "imported {} rows into {} day(s); skipped {} duplicates; refused {} malformed".format(
            self.imported, days, self.duplicates, self.malformed)
        if self.refused:
            more = ", ..." if self.malformed > len(self.refused) else ""
            text += " (line {}{})".format(", ".join(str(r.number) for r in self.refused), more)
        if self.ignored_columns:
            text += "; ignored columns: " + ", ".join(self.ignored_columns)
        for refused in self.refused:
            text += "\n  refused " + str(refused)
        if self.malformed > len(self.refused):
            text += "\n  and {} more refused line(s)".format(self.malformed - len(self.refused))
        return text


def _header(line: bytes) -> tuple[list[str], list[int], list[str]]:
    """``(columns, cell index of each, ignored names)`` of the original's header.

    :raises ValueError: if it is not ``time,ts,...``.
    """
    try:
        names = next(csv.reader([line.decode("utf-8").rstrip("\r\n")]))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        names = []
    if names[:2] != ["time", "ts"]:
        raise ValueError("the header does not start with time,ts: not a CSV of the"
                         " original server")
    columns, index, ignored = [], [], []
    for i, name in enumerate(names[2:], start=2):
        match = _COLUMN.match(name)
        if match is None or not match["field"]:
            ignored.append(name)
            continue
        column = "{}_ch{}".format(stored_field(match["field"]), int(match["ch"]))
        if column in columns:
            ignored.append(name)
            continue
        columns.append(column)
        index.append(i)
    return columns, index, ignored


def _cell(text: str) -> float:
    if text == "":
        return math.nan
    value = _BOOLEANS.get(text)
    return float(text) if value is None else value


def _time_ms(text: str) -> int:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return round(when.timestamp() * 1000)


class _Importer:
    def __init__(self, device_dir: str, columns: list[str], summary: ImportSummary):
        self.dir = device_dir
        self.columns = columns
        self.summary = summary
        self.written: dict[str, None] = {}
        os.makedirs(device_dir, exist_ok=True)

    # -- files of a day --------------------------------------------------------
    def _day_files(self, day: int) -> list[str]:
        prefix = file_name(day)[:-len(".csv")]
        return [n for n in log_files(os.listdir(self.dir)) if n.startswith(prefix)]

    def _write(self, name: str, write: Callable[[BinaryIO], None]) -> None:
        """Write ``name`` through a temporary file renamed into place."""
        tmp = os.path.join(self.dir, ".import-" + secrets.token_hex(8))
        # Created as the bridge creates its files: 0666 less the umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(self.dir, name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.written[name] = None

    def _lines(self, ts: np.ndarray, values: np.ndarray, columns: Sequence[str]) -> list:
        """Row lines of imported rows laid out as ``columns``."""
        index = {c: i for i, c in enumerate(self.columns)}
        out = np.full((len(ts), len(columns)), np.nan)
        for j, column in enumerate(columns):
            if column in index:
                out[:, j] = values[:, index[column]]
        return [row_line(t, row) for t, row in zip(ts.tolist(), out)]

    # -- merging ---------------------------------------------------------------
    def flush(self, day: int, ts: np.ndarray, values: np.ndarray) -> None:
        """Merge the rows of one day (any order) into its files."""
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        first = np.append(True, ts[1:] != ts[:-1])
        self.summary.duplicates += int((~first).sum())
        ts, values = ts[first], values[first]
        names = self._day_files(day)
        if not names:
            def write(f: BinaryIO) -> None:
                f.write(header_line(self.columns))
                for i in range(0, len(ts), _CHUNK):
                    f.writelines(self._lines(ts[i:i + _CHUNK], values[i:i + _CHUNK],
                                             self.columns))

            self._write(file_name(day), write)
            self.summary.imported += len(ts)
            return
        files = [(name, *self._read_ts(name)) for name in names]
        starts = [stamps.min() if len(stamps) else None for _, _, stamps, _ in files]
        # Each row goes into the last file that starts at or before it (the
        # first file if none does), so the day's files stay in time order.
        target = np.zeros(len(ts), dtype=np.intp)
        for k, start in enumerate(starts):
            if k and start is not None:
                target[ts >= start] = k
        for k, (name, header, stamps, complete) in enumerate(files):
            mine = target == k
            new = mine & ~np.isin(ts, stamps)
            self.summary.duplicates += int(mine.sum() - new.sum())
            if new.any():
                self._merge(name, header, stamps, complete, ts[new], values[new])
                self.summary.imported += int(new.sum())

    def _read_ts(self, name: str) -> tuple[list[str], np.ndarray, bool]:
        """Header columns and the ts of every row of a file (in file order),
        and whether its last line is complete."""
        stamps = []
        line = b"\n"
        with open(os.path.join(self.dir, name), "rb") as f:
            header = parse_header(f.readline())
            for line in f:
                try:
                    if line.endswith(b"\n"):
                        stamps.append(int(line.split(b",", 2)[1]))
                except (IndexError, ValueError):
                    continue  # the history reader skips it too
        return header, np.array(stamps, dtype=np.int64), line.endswith(b"\n")

    def _merge(self, name: str, header: list[str], stamps: np.ndarray, complete: bool,
               ts: np.ndarray, values: np.ndarray) -> None:
        """Add rows to a file; a torn last line (a crashed writer's) is dropped,
        as the bridge itself would."""
        path = os.path.join(self.dir, name)
        columns = header + [c for c in self.columns if c not in header]
        lines = self._lines(ts, values, columns)
        if complete and columns == header and (not len(stamps) or ts[0] > stamps.max()):
            with open(path, "ab") as f:  # only later rows: an append
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
            self.written[name] = None
            return
        pad = b"," * (len(columns) - len(header))

        def write(out: BinaryIO) -> None:
            out.write(header_line(columns))
            i = 0
            with open(path, "rb") as f:
                f.readline()
                for line in f:
                    try:
                        stamp = int(line.split(b",", 2)[1])
                    except (IndexError, ValueError):
                        stamp = None
                    if not line.endswith(b"\n"):
                        break
                    while stamp is not None and i < len(lines) and ts[i] < stamp:
                        out.write(lines[i])
                        i += 1
                    out.write(line.rstrip(b"\r\n") + pad + b"\n")
            out.writelines(lines[i:])

        self._write(name, write)


def import_csv(source: str, device_dir: str,
               progress: Optional[Callable[[int], None]] = None) -> ImportSummary:
    """Import the original server's CSV ``source`` into ``device_dir``.

    ``progress`` is called now and then with the bytes of ``source`` read so
    far.  Then the caches of the device's closed files are built (in child
    processes), so the imported days are served fast at once.

    :raises ValueError: if ``source`` does not have the original's header.
    :raises OSError: if ``source`` cannot be read or ``device_dir`` written.
    """
    summary = ImportSummary()
    with open(source, "rb") as f:
        header = f.readline()
        columns, index, summary.ignored_columns = _header(header)
        width = len(next(csv.reader([header.decode("utf-8").rstrip("\r\n")])))
        importer = _Importer(device_dir, columns, summary)
        done = len(header)
        day: Optional[int] = None
        stamps = np.empty(FLUSH_ROWS, dtype=np.int64)
        rows = np.empty((FLUSH_ROWS, len(columns)))
        held = 0

        def flush() -> None:
            if held:
                importer.flush(day, stamps[:held].copy(), rows[:held].copy())

        for number, line in enumerate(f, start=2):
            done += len(line)
            if progress is not None and number % 4096 == 0:
                progress(done)
            try:
                ts, values = _row(line, width, index)
            except ValueError as e:
                summary.malformed += 1
                if len(summary.refused) < FIRST_LINES:
                    text = line.decode("utf-8", "replace").rstrip("\r\n")
                    summary.refused.append(RefusedLine(number, str(e), text[:TEXT_MAX]))
                continue
            if day_of(ts) != day or held == FLUSH_ROWS:
                flush()
                day, held = day_of(ts), 0
            stamps[held], rows[held] = ts, values
            held += 1
        flush()
        if progress is not None:
            progress(done)
    summary.files = list(importer.written)
    summary.caches_built = DiskHistory(device_dir).build_caches(workers=os.cpu_count() or 1)
    return summary


def _row(line: bytes, width: int, index: list[int]) -> tuple[int, list[float]]:
    """``(ts, values)`` of one line; ValueError saying why it is not a
    complete, valid row."""
    if not line.endswith(b"\n"):
        raise ValueError("no line end (the writer stopped in the middle of it)")
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise ValueError("not UTF-8 (byte {} at {})".format(hex(e.object[e.start]),
                                                             e.start)) from None
    try:
        cells = text.split(",") if '"' not in text else next(csv.reader([text]))
    except csv.Error as e:
        raise ValueError("not CSV: {}".format(e)) from None
    if len(cells) != width:
        raise ValueError("{} cells where the header has {}".format(len(cells), width))
    try:
        ts = int(cells[1])
    except ValueError:
        raise ValueError("ts {!r} is not an integer (epoch ms)".format(cells[1])) from None
    if not 0 <= ts <= TS_MAX:
        raise ValueError("ts {} is outside 0..{}".format(ts, TS_MAX))
    try:
        time_ms = _time_ms(cells[0])
    except (ValueError, OverflowError):
        raise ValueError("time {!r} is not an ISO-8601 time".format(cells[0])) from None
    if abs(time_ms - ts) > TIME_TOLERANCE_MS:
        raise ValueError("time {} is {} ms away from ts {}".format(cells[0], time_ms - ts, ts))
    values = []
    for i in index:
        try:
            values.append(_cell(cells[i]))
        except ValueError:
            raise ValueError("cell {} {!r} is not a number or boolean".format(
                i + 1, cells[i])) from None
    return ts, values
