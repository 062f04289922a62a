"""What the benchmark scripts share (a helper module, not a script):

* :func:`memory_mb`: from ``/proc/PID/status``;
* :func:`percentile`.

The scripts run as ``python scripts/NAME.py``, so ``import benchkit`` finds
this file; the package itself is installed.
"""

from typing import Sequence

import numpy as np

MEMORY_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0..100) of ``samples`` (numpy's linear interpolation)."""
    return float(np.percentile(samples, q))


def memory_mb(pid: int) -> dict:
    """``VmRSS`` (resident now: ``RssAnon`` heap + ``RssFile`` mapped files)
    and ``VmHWM`` (peak resident) of ``pid`` in MB (to the kB); empty when
    the process is gone."""
    result = {}
    try:
        with open("/proc/{}/status".format(pid)) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in MEMORY_KEYS:
                    result[key] = round(int(value.split()[0]) / 1024, 3)
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return result
