"""The process model the autotune identifies, and its fit to a record (no I/O).

The channel is modelled as the TEC's heat into one thermal mass seen through a
lagging sensor and a dead time: temperature per ampere of *heating*
``K·e^(-L·s) / ((T1·s + 1)(T2·s + 1))`` around the operating current, with the
TEC's Joule heat (a term in current²) fitted alongside so that the asymmetry
of heating and cooling does not bias the gain.

:func:`fit_model` fits it by output-error least squares to the whole record of
an autotune (the held current, the relay and the open-loop doublet), and
refuses a model whose parameters the record does not determine to
:data:`CONFIDENCE` (relative standard error).
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["CONFIDENCE", "Model", "ModelError", "fit_model", "fast_noise"]

#: The largest relative standard error of K, T and L a model may have.
CONFIDENCE = 0.05
#: The residuals' slow part (what the model does not quite explain) is a line
#: through the samples within this many seconds around each; the rest is the noise.
NOISE_WINDOW_S = 2.0


class ModelError(RuntimeError):
    """The record does not determine a model (the message says which part)."""


@dataclass
class Model:
    """``K·e^(-L0·s) / ((T1·s + 1)(T2·s + 1))``, K > 0 in K/A of heating, T1 ≥
    T2 and L0 in s, and its first-order-plus-dead-time reduction by
    Skogestad's half rule (``T = T1 + T2/2``, ``L = L0 + T2/2``)."""

    gain: float
    t1: float
    t2: float
    dead_time: float
    errors: Optional[dict] = None  # relative standard errors of K, T, L
    noise: Optional[float] = None   # σ of the fit's fast residuals (K): the sensor noise

    @property
    def fopdt(self) -> tuple:
        """(K, T, L) of the half-rule FOPDT model."""
        return self.gain, self.t1 + self.t2 / 2, self.dead_time + self.t2 / 2

    def as_dict(self) -> dict:
        """The model as plain numbers: ``K``, ``T``, ``L`` (FOPDT), the
        second-order fit ``T1``, ``T2``, ``L0``, the relative standard
        ``errors`` of K, T and L and the sensor ``noise`` (K, σ) in the
        residuals."""
        k, t, dead = self.fopdt
        return {"K": k, "T": t, "L": dead, "T1": self.t1, "T2": self.t2, "L0": self.dead_time,
                "errors": dict(self.errors or {}), "noise": self.noise}


class _Record:
    """A record prepared for the fit: the samples' device times (from the
    first) and temperatures, and the current driven as steps at the device
    times the commands took effect, relative to the operating current."""

    def __init__(self, t, temperature, driven, operating: float):
        self.t = np.asarray(t, dtype=float)
        self.y = np.asarray(temperature, dtype=float)
        when, amps = (np.asarray(v, dtype=float) for v in driven)
        if not self.t.size == self.y.size >= 20 or not 1 <= when.size == amps.size:
            raise ValueError("need 20 or more samples and the commands driven, got {} samples,"
                             " {} temperatures, {} times and {} currents".format(
                                 self.t.size, self.y.size, when.size, amps.size))
        self.rel = self.t - self.t[0]
        self.when = when - self.t[0]
        u = amps - operating
        self.steps = [np.diff(v, prepend=0.0) for v in (u, u * u)]  # the current and its square

    def basis(self, t1: float, t2: float, lag: float) -> np.ndarray:
        """Columns: 1, the current and its square through the model's
        dynamics (the sum of the commands' step responses), and the decays
        of the unknown initial state."""
        age = np.maximum(self.rel[:, None] - (self.when[None, :] + lag), 0.0)
        if abs(t1 - t2) < 1e-6 * t1:
            response = 1 - (1 + age / t1) * np.exp(-age / t1)
        else:
            response = 1 - (t1 * np.exp(-age / t1) - t2 * np.exp(-age / t2)) / (t1 - t2)
        # a command before the first sample: its step has been there all along
        response[:, self.when + lag <= 0] = 1.0
        columns = [np.ones_like(self.t)] + [response @ steps for steps in self.steps]
        columns.append(np.exp(-self.rel / t1))
        columns.append(np.exp(-self.rel / t2))
        return np.column_stack(columns)

    def solve(self, t1: float, t2: float, lag: float) -> tuple:
        """Linear coefficients and residuals at the given dynamics."""
        basis = self.basis(t1, t2, lag)
        coef, *_ = np.linalg.lstsq(basis, self.y, rcond=None)
        return coef, basis @ coef - self.y


def fit_model(t, temperature, driven, operating: float, period: float) -> Model:
    """Fit :class:`Model` to a record of device times and temperatures and
    the currents ``driven``: (device times, currents) of the commands, around
    the ``operating`` current (A); ``period`` (s, the relay's) scales the
    starting grid of the time constants.

    A coarse grid over T1, T2 and L (the gains, offset and the initial
    state's decays solved linearly at each point) starts a least-squares
    refinement of all of them.  Raises :class:`ModelError` when the response
    is not that of a heater/cooler, or when K, T or L is not known to
    :data:`CONFIDENCE` (the standard errors from the fit's Jacobian, widened
    for the residuals' correlation from sample to sample).
    """
    from scipy.optimize import least_squares  # here: scipy is 70 MB of a process that imports it
    rec = _Record(t, temperature, driven, operating)
    span = float(rec.rel[-1])
    best = None
    for lag in period * np.array([0.0, 0.1, 0.2, 0.35]):
        for t1 in np.geomspace(period, max(span, 2 * period), 8):
            for t2 in period * np.array([0.05, 0.15, 0.3, 0.5]):
                err = float(np.sum(rec.solve(t1, t2, lag)[1] ** 2))
                if best is None or err < best[0]:
                    best = (err, t1, t2, lag)
    _, t1, t2, lag = best

    def residuals(p):
        return rec.solve(math.exp(p[0]), math.exp(p[1]), p[2])[1]

    fit = least_squares(residuals, [math.log(t1), math.log(t2), lag],
                        bounds=([-np.inf, -np.inf, 0.0], np.inf), x_scale=[0.1, 0.1, 0.1],
                        diff_step=1e-4)
    t1, t2, lag = math.exp(fit.x[0]), math.exp(fit.x[1]), float(fit.x[2])
    if t2 > t1:
        t1, t2 = t2, t1
    coef, res = rec.solve(t1, t2, lag)
    gain = -float(coef[1])  # positive current cools: the heating gain is -dT/dI
    if not gain > 0:
        raise ModelError("the temperature did not respond to the current as a heater/cooler"
                         " should (gain {:.3g} K/A): check the polarity".format(gain))
    try:
        noise = fast_noise(rec.rel, res)
    except ValueError as e:  # samples too far apart
        raise ModelError("no sensor noise from the record: {}".format(e)) from None
    model = Model(gain, t1, t2, lag, noise=noise)
    model.errors = _errors(rec, model, coef, res)
    vague = {name: e for name, e in model.errors.items() if not e < CONFIDENCE}
    if vague:
        raise ModelError("no confident model: {} known only to {} (need {:.0%}); the record"
                         " does not determine {}".format(
                             ", ".join(vague), ", ".join("{:.1%}".format(e)
                                                         for e in vague.values()),
                             CONFIDENCE, "them" if len(vague) > 1 else "it"))
    return model


def fast_noise(t, x, window_s: float = NOISE_WINDOW_S) -> float:
    """σ of white noise in ``x`` (at increasing times ``t``, s) under a slow
    part: each sample less the straight line fitted to the samples within
    ``window_s / 2`` of it, the variance corrected for the line's share of
    the sample (its leverage).

    Every sample counts, missed ones between them or not: from the fit's
    residuals (the response to the commands taken out) this gives the noise
    to a few %, where the second differences of unbroken runs of the raw
    record, on a host that misses samples, gave it to 20 %.
    """
    t = np.asarray(t, dtype=float)
    x = np.asarray(x, dtype=float)
    t = t - t.mean()  # (the sums below stay small)
    lo = np.searchsorted(t, t - window_s / 2, side="left")
    hi = np.searchsorted(t, t + window_s / 2, side="right")

    def window_sum(v: np.ndarray) -> np.ndarray:
        sums = np.concatenate(([0.0], np.cumsum(v)))
        return sums[hi] - sums[lo]
    n = (hi - lo).astype(float)
    mean_t, mean_x = window_sum(t) / n, window_sum(x) / n
    spread = window_sum(t * t) - n * mean_t ** 2  # Σ(t - mean_t)² of each window
    moment = window_sum(t * x) - n * mean_t * mean_x
    usable = (n >= 3) & (spread > 1e-12 * window_s ** 2 * n)
    slope = moment[usable] / spread[usable]
    fast = x[usable] - mean_x[usable] - slope * (t[usable] - mean_t[usable])
    leverage = 1 / n[usable] + (t[usable] - mean_t[usable]) ** 2 / spread[usable]
    dof = float(np.sum(1 - leverage))
    if not dof > 0:
        raise ValueError("need at least three samples within {} s to measure the noise"
                         .format(window_s))
    return float(np.sqrt(fast @ fast / dof))


def _errors(rec: _Record, model: Model, coef: np.ndarray, res: np.ndarray) -> dict:
    """Relative standard errors of the FOPDT K, T and L."""
    params = np.array([model.t1, model.t2, model.dead_time])

    def output(p):
        return rec.basis(p[0], p[1], p[2]) @ coef

    base = output(params)
    columns = [rec.basis(*params)]  # the linear coefficients' own derivatives
    for i, p in enumerate(params):
        step = 1e-4 * max(abs(p), 1e-2)
        moved = params.copy()
        moved[i] += step
        columns.append(((output(moved) - base) / step)[:, None])
    jac = np.hstack(columns)
    n, m = jac.shape
    s2 = float(res @ res) / max(n - m, 1)
    rho = float(np.corrcoef(res[:-1], res[1:])[0, 1]) if n > 2 else 0.0
    rho = min(max(rho, 0.0), 0.99)
    cov = np.linalg.pinv(jac.T @ jac) * s2 * (1 + rho) / (1 - rho)
    k = len(coef)
    # K = -coef[1]; T = T1 + T2/2; L = L0 + T2/2
    grads = {"K": np.eye(m)[1], "T": np.r_[np.zeros(k), 1.0, 0.5, 0.0],
             "L": np.r_[np.zeros(k), 0.0, 0.5, 1.0]}
    gain, tau, dead = model.fopdt
    values = {"K": gain, "T": tau, "L": dead}
    return {name: float(math.sqrt(max(g @ cov @ g, 0.0)) / abs(values[name]))
            for name, g in grads.items()}
