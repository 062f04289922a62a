"""Append-only writer of the CSV log (format: :mod:`.csvformat`).

When the columns change during a day (other firmware, other ``--fields``) the
log continues in the day's next file, so every file has one header and rows
are never misaligned.  The files of a day, read in sequence order, are in
time order.
"""

import errno
import logging
import os
import tempfile
from typing import Optional, Sequence

import numpy as np

from .csvformat import day_of, file_name, header_line, log_files, row_line
from .datadir import DataDirError

logger = logging.getLogger(__name__)

__all__ = ["CsvLog", "DataDirError", "repair_tail"]


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
    logger.warning("repairing a torn last line: dropping %d bytes", size - keep)
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
    counted (``write_errors``), logged once per streak (:attr:`failing` says
    why meanwhile), and writing resumes on a later append by reopening the
    file; a file whose header could not be written is removed again, so
    every file stays parseable.

    :param data_dir: directory of the CSV files (created if needed).
    :param columns: value column names (after ``time`` and ``ts``).
    :raises DataDirError: if ``data_dir`` cannot be created or written.
    """

    def __init__(self, data_dir: str, columns: Sequence[str]):
        self.data_dir = os.path.abspath(data_dir)
        self.columns: list[str] = list(columns)
        self.rows_written = 0
        self.write_errors = 0
        self.path: Optional[str] = None  # file currently appended to
        self._fd: Optional[int] = None
        self._day: Optional[int] = None
        self._last_ts: Optional[int] = None
        #: Why the latest write failed, None after a success.
        self.failing: Optional[str] = None
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
        names = log_files(os.listdir(self.data_dir))
        if names:
            fd = os.open(os.path.join(self.data_dir, names[-1]), os.O_RDWR)
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
        size = 0
        try:
            size = repair_tail(fd)
            if size and _first_line(fd) != header:
                os.close(fd)
                seq += 1
                path = os.path.join(self.data_dir, file_name(day, seq))
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                size = repair_tail(fd)
                if size:  # a stray file appeared in between: never mix headers
                    raise OSError(errno.EEXIST, f"{path} exists")
            if size == 0:
                self._write_all(fd, header)
        except BaseException:
            if size == 0 and os.fstat(fd).st_size == 0:
                _unlink_quietly(path)  # no header-less file left behind
            os.close(fd)
            raise
        self._fd, self._day, self.path = fd, day, path

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
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (a short write)")

    def append(self, ts_ms: int, values: np.ndarray, durable: bool = False) -> bool:
        """Append one row; with ``durable`` also fsync it.

        The caller keeps rows in order (``ts_ms`` after :attr:`last_ts`: the
        :class:`~.store.Store` refuses others).  Returns False (and counts it)
        when writing failed.
        """
        ts_ms = int(ts_ms)
        day = day_of(ts_ms)
        try:
            if self._fd is not None and (
                day != self._day or os.fstat(self._fd).st_nlink == 0
            ):
                self.close()  # new day, or the file was deleted under us
            if self._fd is None:
                self._open(day)
            self._write_all(self._fd, row_line(ts_ms, values))
            if durable:
                os.fsync(self._fd)
        except OSError as exc:
            self.write_errors += 1
            if self.failing is None:
                logger.error("CSV write failed (%s); will retry on the next row", exc)
            self.failing = "CSV write failed: {}".format(exc.strerror or exc)
            self.close()
            return False
        if self.failing is not None:
            logger.info("CSV writing resumed in %s", self.path)
            self.failing = None
        self._last_ts = ts_ms
        self.rows_written += 1
        return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass
