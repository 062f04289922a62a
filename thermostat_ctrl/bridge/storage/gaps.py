"""Gaps in a device's history, and how an answer marks them.

A gap is an interval between two consecutive samples longer than
:data:`GAP_PERIODS` poll periods: the device was not sampled (failed polls,
the bridge stopped).  That is also when the bridge calls a reading stale, so
the history shows a gap exactly where ``/report`` would have answered
"stale".  An answer marks each gap with one row inside it whose value cells
are all NaN (an empty CSV cell, a JSON ``null``), so a client breaks its
lines there and nowhere else.
"""

import numpy as np

__all__ = ["GAP_PERIODS", "gap_ms", "mark_gaps"]

#: Consecutive samples further apart than this many poll periods have a gap
#: between them.
GAP_PERIODS = 3


def gap_ms(poll_period_s: float) -> int:
    """The longest interval (ms) between two samples that is not a gap.

    :raises ValueError: if ``poll_period_s`` is not positive.
    """
    if not poll_period_s > 0:
        raise ValueError(f"poll_period_s must be > 0, got {poll_period_s!r}")
    return max(1, round(GAP_PERIODS * poll_period_s * 1000))


def mark_gaps(ts: np.ndarray, values: np.ndarray, longer_than: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a NaN row inserted in the middle of every interval longer
    than ``longer_than`` ms (>= 1) between consecutive rows."""
    if len(ts) < 2:
        return ts, values
    after = np.flatnonzero(np.diff(ts) > longer_than)  # a gap follows row `after`
    if not len(after):
        return ts, values
    # Midpoints lie strictly inside: each interval is at least 2 ms long.
    middle = ts[after] + (ts[after + 1] - ts[after]) // 2
    at = after + 1
    return (np.insert(ts, at, middle),
            np.insert(values, at, np.nan, axis=0))
