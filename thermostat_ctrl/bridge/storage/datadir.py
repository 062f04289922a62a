"""The data directory: one folder per device, one writer at a time.

Layout: ``<data-dir>/<device>/thermostat-YYYY-MM-DD.csv`` with the caches in
``<data-dir>/<device>/.cache/``, and ``<data-dir>/.lock``, which the bridge
(or an import) holds with an exclusive ``flock`` for as long as it runs.

A data directory written by the single-device bridge of earlier versions
holds its CSV files (and ``.cache/``) at the top level; :func:`adopt_legacy`
moves them into the folder of the device started on it.  Each file is moved
with one ``rename`` (atomic), so a crash in the middle leaves every file in
one place or the other, and the next start finishes the move.
"""

import errno
import fcntl
import logging
import os
from typing import Optional

from .cachefile import CACHE_DIR
from .csvformat import log_files

logger = logging.getLogger(__name__)

__all__ = ["DataDirError", "DataDirLock", "device_dir", "adopt_legacy", "LOCK_NAME"]

LOCK_NAME = ".lock"


class DataDirError(OSError):
    """The data directory cannot be used; ``str()`` is a single line meant
    for the user."""


def device_dir(data_dir: str, name: str) -> str:
    """The folder of device ``name``'s files."""
    return os.path.join(os.path.abspath(data_dir), name)


class DataDirLock:
    """An exclusive lock on a data directory (created if needed).

    :raises DataDirError: when the directory cannot be created, or another
        process (a bridge, an import) holds the lock.
    """

    def __init__(self, data_dir: str):
        self.data_dir = os.path.abspath(data_dir)
        path = os.path.join(self.data_dir, LOCK_NAME)
        try:
            os.makedirs(self.data_dir, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _error("data dir {} is not writable: {}".format(
                self.data_dir, e.strerror or e), e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise _error("data dir {} is in use by another bridge or import{}".format(
                    self.data_dir, " (pid {})".format(holder) if holder else ""), e) from None
            raise _error("cannot lock data dir {}: {}".format(
                self.data_dir, e.strerror or e), e) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd: Optional[int] = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _error(message: str, cause: OSError) -> DataDirError:
    error = DataDirError(message)
    error.errno = cause.errno
    return error


def adopt_legacy(data_dir: str, name: str) -> int:
    """Move CSV files (and their caches) found at the top level of
    ``data_dir`` into device ``name``'s folder; return how many CSV files
    were moved.  Call it holding the :class:`DataDirLock`.

    :raises DataDirError: when the device's folder already has a file of the
        same name (nothing is overwritten; the user decides).
    """
    data_dir = os.path.abspath(data_dir)
    legacy = log_files(os.listdir(data_dir))
    if not legacy:
        return 0
    target = device_dir(data_dir, name)
    os.makedirs(os.path.join(target, CACHE_DIR), exist_ok=True)
    for csv_name in legacy:
        if os.path.exists(os.path.join(target, csv_name)):
            raise DataDirError(
                "{} exists both in {} and in {}: move or merge one of them by hand".format(
                    csv_name, data_dir, target))
    old_cache = os.path.join(data_dir, CACHE_DIR)
    for csv_name in legacy:
        # The cache first: a crash after it leaves the CSV to move next time,
        # and a cache without its CSV beside it is never read.
        if os.path.isdir(old_cache):
            for part in os.listdir(old_cache):
                if part.startswith(csv_name + "."):
                    os.replace(os.path.join(old_cache, part),
                               os.path.join(target, CACHE_DIR, part))
        os.rename(os.path.join(data_dir, csv_name), os.path.join(target, csv_name))
    if os.path.isdir(old_cache) and not os.listdir(old_cache):
        os.rmdir(old_cache)
    logger.warning("moved %d CSV files of the single-device layout from %s into %s"
                   " (device %s)", len(legacy), data_dir, target, name)
    return len(legacy)
