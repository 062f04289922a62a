"""What the benchmark scripts share (a helper module, not a script):

* :func:`percentile`.

The scripts run as ``python scripts/NAME.py``, so ``import benchkit`` finds
this file; the package itself is installed.
"""

from typing import Sequence

import numpy as np


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0..100) of ``samples`` (numpy's linear interpolation)."""
    return float(np.percentile(samples, q))
