"""How stable a channel is: statistics, drift, time in band and the Allan
deviation of its raw temperature samples.

One pure function, :func:`analyse`, answers ``/stability``, the
``thermostat_bridge stability`` command and the daily summary.  Its input
is the raw samples of one channel (never downsampled rows); its output a
JSON-ready dict.

* The series is cut into **segments** wherever a sample is missing: a gap
  between two samples (:mod:`.storage.gaps`) or a row without a temperature.
  Nothing is interpolated across a cut.
* Temperature figures: ``n``, ``mean``, ``std`` (population), ``min``,
  ``max``, ``p2p`` in °C (K for the spreads) over every sample, and
  ``drift_k_per_h``, the least-squares slope over real time.
* Error figures (temperature − setpoint) over the samples where the PID was
  engaged and the setpoint is known; ``None`` with a ``notes`` entry saying
  why when there is none.  ``in_band_fraction``: the fraction of those
  samples within ``band_k`` of the setpoint (samples are evenly spaced, so
  this is the fraction of the time the PID held the channel).
* ``allan``: the overlapping Allan deviation as :func:`allantools.oadev`
  computes it with ``data_type="freq"`` on the samples at their poll rate,
  at octave-spaced averaging times from the sample period up to a tenth of
  the range.  Segments are pooled: each contributes its terms (its ADEV²
  weighted by its number of terms), so a single segment gives exactly
  allantools' figure.  The confidence interval (1 σ) is allantools'
  chi-squared interval with Greenhall's degrees of freedom (summed over the
  segments) for the noise type identified by lag-1 autocorrelation on the
  longest segment (on its first :data:`MAX_NOISE_ID` averages: the
  identification is a Python loop, and more averages would not change its
  verdict); where that segment is too short to identify it (fewer than
  :data:`MIN_NOISE_ID` averages), the type found at the previous averaging
  time is kept.  The type is reported as ``alpha`` (2 white phase ... 0
  white frequency ... -2 random walk of the temperature).
"""

import math
from typing import Optional, Sequence

import numpy as np

from .schema import TARGET
from .storage.gaps import gap_ms

__all__ = ["analyse", "analyse_rows", "channel_columns", "octave_taus", "sample_period",
           "DEFAULT_BAND_K", "MIN_NOISE_ID", "MAX_NOISE_ID"]

#: Default half-width of the band around the setpoint (10 mK).
DEFAULT_BAND_K = 0.010
#: Fewest averages on which allantools identifies the noise type.
MIN_NOISE_ID = 30
#: Most averages the noise type is identified on.
MAX_NOISE_ID = 4096
_HOUR_MS = 3_600_000
#: The fields the figures of a channel are computed from.
FIELDS = ("temperature", TARGET, "pid_engaged")


def channel_columns(channel: int) -> list[str]:
    """The stored columns of :data:`FIELDS` for ``channel``, in that order."""
    return ["{}_ch{}".format(field, channel) for field in FIELDS]


def octave_taus(period_s: float, range_s: float) -> np.ndarray:
    """Averaging times ``period_s * 2**k`` up to a tenth of ``range_s``
    (at least the sample period itself)."""
    if not period_s > 0:
        raise ValueError("period_s must be > 0, got {!r}".format(period_s))
    top = max(0, math.floor(math.log2(max(range_s / 10 / period_s, 1)) + 1e-9))
    return period_s * 2.0 ** np.arange(top + 1)


def sample_period(ts: np.ndarray) -> Optional[float]:
    """The median spacing (s, to the ms) of samples at epoch-ms ``ts``;
    None with fewer than two."""
    if len(ts) < 2:
        return None
    return max(1, int(np.median(np.diff(ts)))) / 1000


def _spread(values: np.ndarray) -> dict:
    if not len(values):
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "p2p": None}
    lo, hi = float(values.min()), float(values.max())
    return {"n": int(len(values)), "mean": float(values.mean()), "std": float(values.std()),
            "min": lo, "max": hi, "p2p": hi - lo}


def _segments(ts: np.ndarray, valid: np.ndarray, longest_gap_ms: int) -> tuple:
    """Indices of the valid rows and ``(start, stop)`` slices into them of
    the runs without a gap or an invalid row."""
    rows = np.flatnonzero(valid)
    if not len(rows):
        return rows, []
    cut = (np.diff(rows) > 1) | (np.diff(ts[rows]) > longest_gap_ms)
    starts = np.concatenate([[0], np.flatnonzero(cut) + 1])
    stops = np.concatenate([starts[1:], [len(rows)]])
    return rows, list(zip(starts.tolist(), stops.tolist()))


def _noise_type(allantools, y: np.ndarray, m: int, previous: Optional[int]) -> Optional[int]:
    """allantools' noise type of freq data ``y`` averaged by ``m``, or
    ``previous`` where it cannot tell (a constant series: a stuck sensor)."""
    with np.errstate(all="ignore"):
        try:
            found = allantools.autocorr_noise_id(y, m, data_type="freq")[0]
        except ValueError:  # NaN autocorrelation: no variance at all
            return previous
    # Beyond random walk (-2) the ADEV does not converge: a steeper verdict
    # on few averages is taken as random walk.
    return int(min(2, max(-2, found)))


def _allan(segments: list, period_s: float, taus: np.ndarray) -> list:
    """Pooled overlapping ADEV of the segments (freq data) at ``taus``."""
    import allantools  # on first use: it loads scipy, seconds that only its users pay

    rate = 1.0 / period_s
    ms = np.unique(np.rint(np.asarray(taus) * rate)).astype(np.int64)
    ms = ms[ms >= 1]
    squares = dict.fromkeys(ms.tolist(), 0.0)
    terms = dict.fromkeys(ms.tolist(), 0)
    users: dict = {m: [] for m in squares}  # lengths of the segments contributing at m
    for seg in segments:
        # allantools keeps a tau when its number of terms, len(seg) + 1 - 2m, exceeds 1
        fits = ms[2 * ms < len(seg)]
        if not len(fits):
            continue
        _, devs, _, ns = allantools.oadev(seg, rate=rate, data_type="freq", taus=fits / rate)
        for m, dev, n in zip(fits.tolist(), devs, ns):
            squares[m] += float(dev) ** 2 * n
            terms[m] += int(n)
            users[m].append(len(seg))
    longest = max(segments, key=len) if segments else np.empty(0)
    out, alpha = [], None
    for m in ms.tolist():
        if not terms[m]:
            continue
        if squares[m] == 0:  # no variance at all (a stuck sensor): exactly zero, no noise type
            out.append({"tau_s": m / rate, "adev_k": 0.0, "lo_k": 0.0, "hi_k": 0.0,
                        "terms": terms[m], "alpha": None})
            continue
        if len(longest) // m >= MIN_NOISE_ID:
            alpha = _noise_type(allantools, longest[:MAX_NOISE_ID * m], m, alpha)
        adev = math.sqrt(squares[m] / terms[m])
        lo = hi = None
        if alpha is not None:
            edf = sum(allantools.edf_greenhall(alpha=alpha, d=2, m=m, N=n, overlapping=True,
                                               modified=False) for n in users[m])
            lo, hi = (float(v) for v in allantools.confidence_interval(adev, edf))
        out.append({"tau_s": m / rate, "adev_k": adev, "lo_k": lo, "hi_k": hi,
                    "terms": terms[m], "alpha": alpha})
    return out


def analyse(ts: np.ndarray, temperature: np.ndarray, target: Optional[np.ndarray],
            engaged: Optional[np.ndarray], period_s: float,
            band_k: float = DEFAULT_BAND_K, range_s: Optional[float] = None,
            taus: Optional[Sequence[float]] = None) -> dict:
    """The stability figures of one channel (see the module doc).

    :param ts: epoch ms of the rows, ascending.
    :param temperature: °C per row, NaN where there is none (gap rows too).
    :param target: the PID setpoint per row (NaN where unknown), or None
        when it is not recorded.
    :param engaged: ``pid_engaged`` per row (1 engaged), or None.
    :param period_s: the poll period: the ADEV's sample period, and a gap is
        more than :data:`~.storage.gaps.GAP_PERIODS` of them.
    :param band_k: half-width of the band around the setpoint, in K.
    :param range_s: the range asked for (its tenth is the longest averaging
        time); default the span of the samples.
    :param taus: averaging times instead of :func:`octave_taus` (each
        rounded to a whole number of sample periods).
    :raises ValueError: naming a bad ``period_s`` or ``band_k``.
    """
    if not (isinstance(band_k, (int, float)) and math.isfinite(band_k) and band_k >= 0):
        raise ValueError("band_k must be a non-negative number, got {!r}".format(band_k))
    longest_gap = gap_ms(period_s)
    ts = np.asarray(ts, dtype=np.int64)
    temperature = np.asarray(temperature, dtype=np.float64)
    valid = np.isfinite(temperature)
    rows, slices = _segments(ts, valid, longest_gap)
    values = temperature[rows]
    result: dict = {"period_s": period_s, "segments": len(slices),
                    "first_ts": int(ts[rows[0]]) if len(rows) else None,
                    "last_ts": int(ts[rows[-1]]) if len(rows) else None}
    result.update(_spread(values))
    notes = []
    if len(values) >= 2 and ts[rows[-1]] > ts[rows[0]]:
        hours = (ts[rows] - ts[rows[0]]) / _HOUR_MS
        result["drift_k_per_h"] = float(np.polyfit(hours, values, 1)[0])
    else:
        result["drift_k_per_h"] = None
    if not len(values):
        notes.append("no temperature samples in this range")

    held = None
    if target is None or engaged is None:
        notes.append("the setpoint or pid_engaged is not recorded: no error figures")
    else:
        target = np.asarray(target, dtype=np.float64)[rows]
        on = (np.asarray(engaged, dtype=np.float64)[rows] == 1) & np.isfinite(target)
        held = values[on] - target[on]
        if len(values) and not len(held):
            notes.append("the PID was not engaged in this range: no error figures")
    result["engaged_fraction"] = len(held) / len(values) if held is not None and len(values) \
        else None
    if held is not None and len(held):
        result["error"] = _spread(held)
        result["in_band_fraction"] = float(np.count_nonzero(np.abs(held) <= band_k)) / len(held)
    else:
        result["error"] = result["in_band_fraction"] = None
    result["band_mk"] = band_k * 1000

    if range_s is None:
        range_s = (result["last_ts"] - result["first_ts"]) / 1000 if len(rows) else 0.0
    wanted = octave_taus(period_s, range_s) if taus is None else np.asarray(taus, float)
    result["allan"] = _allan([values[a:b] for a, b in slices], period_s, wanted)
    result["notes"] = notes
    return result


def analyse_rows(ts: np.ndarray, values: np.ndarray, recorded: Sequence[str], channel: int,
                 period_s: float, band_k: float = DEFAULT_BAND_K,
                 range_s: Optional[float] = None, taus: Optional[Sequence[float]] = None
                 ) -> dict:
    """:func:`analyse` of stored rows whose ``values`` hold
    :func:`channel_columns` of ``channel``; a setpoint or ``pid_engaged``
    column that is not among the ``recorded`` ones counts as not recorded
    (said so), not as a PID never engaged."""
    names = channel_columns(channel)
    target, engaged = (values[:, j] if names[j] in recorded else None for j in (1, 2))
    return analyse(ts, values[:, 0], target, engaged, period_s, band_k, range_s, taus)
