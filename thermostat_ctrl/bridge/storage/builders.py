"""Cache builds in child processes.

Building the cache of a day of CSV (:func:`~.cachefile.build_cache`) takes
pyarrow, about 0.2 s of CPU and a few hundred MB at its peak.  Run in a child
process, none of that holds the bridge's GIL (the poll loop keeps its
schedule) or stays in its heap (its resident memory stays bounded), and
pyarrow is never loaded into the bridge at all.

Each child is ``python -m thermostat_ctrl.bridge.storage.builders``: it reads
CSV paths from its stdin, one per line, builds each one's cache and answers
one line per path, ``built``, ``fresh`` (nothing to do) or ``failed``.  A
fresh interpreter that imports numpy and this package only, not the parent's
``__main__`` (as :mod:`multiprocessing`'s spawn would: the whole web app).
"""

import argparse
import os
import selectors
import subprocess
import sys
import threading
from typing import Callable, Optional, Sequence

from .cachefile import build_cache

__all__ = ["BACKGROUND_NICENESS", "build_in_processes"]

#: Niceness of the processes that build caches ahead of time (at start-up,
#: after an import): they get the CPU only when polls, requests and queries
#: building their own caches leave it idle.
BACKGROUND_NICENESS = 10

_ANSWERS = ("built", "fresh", "failed")

#: Builder processes for queries running at once, in all: one per CPU,
#: whatever the number of devices and queries (each holds up to a few hundred
#: MB).  Background builds are one process of their own at a time.
_SLOTS = threading.BoundedSemaphore(os.cpu_count() or 1)


def build_in_processes(paths: Sequence[str], workers: int, background: bool = False,
                       before_each: Optional[Callable[[str], None]] = None) -> list[str]:
    """Build the caches of ``paths``, in this order, in up to ``workers`` child
    processes; return the paths whose cache was built.

    For a query (``background`` false) the children share :data:`_SLOTS` with
    every other query's: at least one, more while slots are free.  In the
    ``background`` they run at :data:`BACKGROUND_NICENESS`.

    ``before_each(path)`` is called before a path is handed to a child (to
    wait while something more urgent runs).  A path whose build failed, or whose
    child died, is left out: the history builds it in-process when it is
    read, and logs why.

    :raises OSError: when no child process can be started.
    """
    todo = list(reversed(paths))
    built: list[str] = []
    with selectors.DefaultSelector() as selector:
        slots = threading.Semaphore(workers) if background else _SLOTS
        niceness = BACKGROUND_NICENESS if background else 0
        for n in range(min(workers, len(todo))):
            if not slots.acquire(blocking=n == 0):
                break
            try:
                # A session of its own: a Ctrl-C meant for the bridge is not its to
                # answer (with a traceback); it ends when its stdin does.
                child = subprocess.Popen(
                    [sys.executable, "-m", __name__, "--nice", str(niceness)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                    start_new_session=True)
            except OSError:
                slots.release()
                if n == 0:
                    raise
                break
            selector.register(child.stdout, selectors.EVENT_READ, [child, None])
            _hand(child, selector.get_key(child.stdout).data, todo, before_each)
        while selector.get_map():
            for key, _ in selector.select():
                child, path = key.data
                answer = child.stdout.readline().strip()
                if answer == "built":
                    built.append(path)
                if answer not in _ANSWERS or not _hand(child, key.data, todo, before_each):
                    selector.unregister(child.stdout)
                    _finish(child)
                    slots.release()
    return built


def _finish(child: subprocess.Popen) -> None:
    """Close a child's pipes (it exits at the end of its input) and reap it."""
    try:
        child.stdin.close()
    except BrokenPipeError:  # it died before reading what it was handed
        pass
    child.stdout.close()
    child.wait()


def _hand(child: subprocess.Popen, slot: list, todo: list,
          before_each: Optional[Callable[[str], None]]) -> bool:
    """Give ``child`` the next path of ``todo`` (recorded in ``slot``); False
    when there is none left or the child is gone."""
    if not todo:
        return False
    if before_each is not None:
        before_each(todo[-1])
    slot[1] = todo.pop()
    try:
        child.stdin.write(slot[1] + "\n")
    except (BrokenPipeError, ValueError):
        todo.append(slot[1])
        return False
    return True


def _serve(niceness: int) -> None:
    if niceness:
        os.nice(niceness)
    for line in sys.stdin:
        try:
            answer = "built" if build_cache(line.rstrip("\n")) else "fresh"
        except (OSError, ValueError):
            answer = "failed"
        print(answer, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Build history caches of the CSV paths"
                                                 " read from stdin (one per line).")
    parser.add_argument("--nice", type=int, default=0, help="niceness increment")
    _serve(parser.parse_args().nice)
