"""Append-only wide CSV log, one file per UTC day.

File names: ``thermostat-YYYY-MM-DD.csv``; when the columns change during a
day (other firmware, other ``--fields``) the log continues in
``thermostat-YYYY-MM-DD.2.csv``, ``.3.csv``, ... so every file has one header
and rows are never misaligned.  The files of a day, read in sequence order,
are in time order.
"""

import errno
import logging
import math
import os
import re
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

from .schema import iso_time

logger = logging.getLogger(__name__)

__all__ = [
    "CsvLog", "DataDirError", "DAY_MS", "day_of", "file_name", "parse_file_name",
    "header_line", "format_value",
]

DAY_MS = 86_400_000

_NAME_RE = re.compile(r"^thermostat-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.csv$")


class DataDirError(OSError):
    """The data directory cannot be created or written; ``str()`` is a single
    line meant for the user."""


def day_of(ts_ms: int) -> int:
    """UTC day number (days since the epoch) of an epoch-ms timestamp."""
    return int(ts_ms) // DAY_MS


def file_name(day: int, seq: int = 1) -> str:
    """CSV file name of the ``seq``-th file (1-based) of a UTC day number."""
    date = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
    return f"thermostat-{date}.csv" if seq == 1 else f"thermostat-{date}.{seq}.csv"


def parse_file_name(name: str) -> Optional[tuple[int, int]]:
    """``(day number, seq)`` of a log file name, or None for other names."""
    match = _NAME_RE.match(name)
    if not match:
        return None
    y, m, d = (int(part) for part in match.group(1).split("-"))
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    return _days_from_civil(y, m, d), int(match.group(2) or 1)


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's algorithm: proleptic Gregorian date -> days since 1970-01-01.
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def header_line(columns: Sequence[str]) -> bytes:
    """The header line (with newline) of a file holding ``columns``."""
    return (",".join(["time", "ts", *columns]) + "\n").encode()


def format_value(value: float) -> str:
    """A cell: empty for NaN, integral floats (0/1 booleans) without ``.0``,
    other floats with round-trip precision."""
    if math.isnan(value):
        return ""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def repair_tail(fd: int) -> int:
    """Truncate a partial last line (a row torn by a crash); return the size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        if pos == size and chunk.endswith(b"\n"):
            return size
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            keep = start + nl + 1
            break
        pos = start
    else:
        keep = 0
    logger.warning("repairing torn CSV tail: dropping %d bytes", size - keep)
    os.ftruncate(fd, keep)
    return keep


def _first_line(fd: int) -> bytes:
    head = os.pread(fd, 1 << 20, 0)
    return head[: head.find(b"\n") + 1] if b"\n" in head else head


def _last_ts(fd: int, size: int) -> Optional[int]:
    """``ts`` of the last complete row of a file, None if it has none."""
    tail = os.pread(fd, min(size, 65536), max(0, size - 65536))
    lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
    if len(lines) < 2 and size > 65536:
        return None
    fields = lines[-1].split(b",", 2)
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None  # only a header


class CsvLog:
    """Writes rows to ``data_dir/thermostat-YYYY-MM-DD[.N].csv``.

    Every row reaches the file in one ``write()`` on an unbuffered
    ``O_APPEND`` descriptor, so a crash can leave at most one torn last line;
    it is truncated when the file is next opened.  Run-time write errors are
    counted (``write_errors``), logged once per streak, and writing resumes
    on a later append by reopening the file.

    :param data_dir: directory of the CSV files (created if needed).
    :param columns: value column names (after ``time`` and ``ts``).
    :raises DataDirError: if ``data_dir`` cannot be created or written.
    """

    def __init__(self, data_dir: str, columns: Sequence[str]):
        self.data_dir = os.path.abspath(data_dir)
        self.columns: list[str] = list(columns)
        self.rows_written = 0
        self.write_errors = 0
        self.out_of_order = 0
        self.path: Optional[str] = None  # file currently appended to
        self._fd: Optional[int] = None
        self._day: Optional[int] = None
        self._last_ts: Optional[int] = None
        self._failing = False
        self._refusing = False
        self._check_dir()

    def _check_dir(self) -> None:
        try:
            os.makedirs(self.data_dir, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.data_dir):
                pass
            self._repair_newest()
        except OSError as exc:
            error = DataDirError(
                f"data dir {self.data_dir} is not writable: {exc.strerror or exc}"
            )
            error.errno = exc.errno
            raise error from None

    def _repair_newest(self) -> None:
        """Repair the tail of the newest file, the one a crash may have torn,
        and remember its last ts so a clock behind it cannot unsort files."""
        names = sorted(
            (key, name)
            for name in os.listdir(self.data_dir)
            if (key := parse_file_name(name))
        )
        if names:
            fd = os.open(os.path.join(self.data_dir, names[-1][1]), os.O_RDWR)
            try:
                self._last_ts = _last_ts(fd, repair_tail(fd))
            finally:
                os.close(fd)

    @property
    def last_ts(self) -> Optional[int]:
        """ts of the last row appended (or found in the newest file at start)."""
        return self._last_ts

    def set_columns(self, columns: Sequence[str]) -> None:
        """Switch to other columns; the next row starts a new file unless the
        day's newest file already has this header."""
        if list(columns) != self.columns:
            self.columns = list(columns)
            self.close()

    def close(self) -> None:
        """Close the current file (the next append reopens)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def _open(self, day: int) -> None:
        """Open the newest file of ``day`` for appending, repairing its tail,
        or start a new one if its header differs."""
        header = header_line(self.columns)
        seq = 1
        while os.path.exists(os.path.join(self.data_dir, file_name(day, seq + 1))):
            seq += 1
        path = os.path.join(self.data_dir, file_name(day, seq))
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = repair_tail(fd)
            if size and _first_line(fd) != header:
                self._note_last_ts(fd, size)
                os.close(fd)
                seq += 1
                path = os.path.join(self.data_dir, file_name(day, seq))
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                size = repair_tail(fd)
                if size:  # a stray file appeared in between: never mix headers
                    raise OSError(errno.EEXIST, f"{path} exists")
            if size == 0:
                self._write_all(fd, header)
            else:
                self._note_last_ts(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._day, self.path = fd, day, path

    def _note_last_ts(self, fd: int, size: int) -> None:
        last = _last_ts(fd, size)
        if last is not None:
            self._last_ts = max(last, self._last_ts or last)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        """One ``write()``; a short write is undone and raised as ENOSPC."""
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
        except OSError:
            _truncate_quietly(fd, size)
            raise
        if written != len(data):
            _truncate_quietly(fd, size)
            raise OSError(errno.ENOSPC, "short write")

    def _refuse(self, ts_ms: int) -> bool:
        """Count and log (once per streak) a row not after the last one."""
        if self._last_ts is None or ts_ms > self._last_ts:
            self._refusing = False
            return False
        self.out_of_order += 1
        if not self._refusing:
            logger.warning(
                "refusing rows from %s on: not after the last row at %s"
                " (clock went backwards?)", iso_time(ts_ms), iso_time(self._last_ts),
            )
            self._refusing = True
        return True

    def append(self, ts_ms: int, values: np.ndarray, durable: bool = False) -> bool:
        """Append one row; with ``durable`` also fsync it.

        Returns False (and counts it) when the row was refused because
        ``ts_ms`` is not after the last row, or when writing failed.
        """
        ts_ms = int(ts_ms)
        day = day_of(ts_ms)
        if self._refuse(ts_ms):
            return False
        try:
            if self._fd is not None and (
                day != self._day or os.fstat(self._fd).st_nlink == 0
            ):
                self.close()  # new day, or the file was deleted under us
            if self._fd is None:
                self._open(day)
                if self._refuse(ts_ms):  # the file has later rows
                    return False
            line = ",".join(
                [iso_time(ts_ms), str(ts_ms), *map(format_value, values.tolist())]
            )
            self._write_all(self._fd, (line + "\n").encode())
            if durable:
                os.fsync(self._fd)
        except OSError as exc:
            self.write_errors += 1
            if not self._failing:
                logger.error("CSV write failed (%s); will retry on the next row", exc)
                self._failing = True
            self.close()
            return False
        if self._failing:
            logger.info("CSV writing resumed in %s", self.path)
            self._failing = False
        self._last_ts = ts_ms
        self.rows_written += 1
        return True


def _truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass
