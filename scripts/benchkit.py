"""What the benchmark scripts beside this file share (import it as
``benchkit``: a script's own folder is on its path).  The package itself is
imported as installed (``pip install -e .``)."""

from typing import Sequence

import numpy as np

__all__ = ["percentile", "memory_mb"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, numpy's linear interpolation."""
    return float(np.percentile(np.asarray(samples, dtype=float), q))


def memory_mb(pid: int) -> dict:
    """``VmRSS`` (resident now: ``RssAnon`` heap + ``RssFile`` mapped files)
    and ``VmHWM`` (peak resident) of ``pid`` in MB; empty once it is gone."""
    result = {}
    try:
        with open("/proc/{}/status".format(pid)) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    result[key] = round(int(value.split()[0]) / 1024, 1)
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return result
