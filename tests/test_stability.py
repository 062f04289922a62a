"""The stability figures (:mod:`thermostat_ctrl.bridge.stability`) on
synthetic series of known noise, against allantools called directly."""

import allantools
import numpy as np
import pytest

from thermostat_ctrl.bridge.stability import analyse, octave_taus, sample_period

T0 = 1_795_000_000_000


def series(values, period_s=1.0, start=T0):
    """Epoch-ms timestamps of evenly spaced samples (a few ms of poll jitter)."""
    jitter = np.random.default_rng(7).integers(0, 5, len(values))
    return start + np.arange(len(values), dtype=np.int64) * int(period_s * 1000) + jitter


def slope(points, lo, hi):
    """Log-log slope of ADEV over taus in [lo, hi]."""
    chosen = [(p["tau_s"], p["adev_k"]) for p in points if lo <= p["tau_s"] <= hi]
    tau, adev = np.log(np.array(chosen)).T
    return np.polyfit(tau, adev, 1)[0]


def test_white_noise_falls_as_tau_to_the_minus_half():
    rng = np.random.default_rng(1)
    sigma = 1e-3
    t = 25 + rng.normal(0, sigma, 100_000)
    r = analyse(series(t), t, np.full(len(t), 25.0), np.ones(len(t)), 1.0)
    assert slope(r["allan"], 1, 4096) == pytest.approx(-0.5, abs=0.05)
    first = r["allan"][0]
    assert first["tau_s"] == 1.0 and first["adev_k"] == pytest.approx(sigma, rel=0.02)
    assert first["alpha"] == 0  # white frequency noise, as allantools identifies it
    assert first["lo_k"] < first["adev_k"] < first["hi_k"]
    assert r["std"] == pytest.approx(sigma, rel=0.02)
    assert r["drift_k_per_h"] == pytest.approx(0, abs=1e-5)


def test_random_walk_rises_as_tau_to_the_plus_half():
    rng = np.random.default_rng(2)
    t = 25 + np.cumsum(rng.normal(0, 1e-5, 100_000))
    r = analyse(series(t), t, None, None, 1.0)
    assert slope(r["allan"], 8, 4096) == pytest.approx(0.5, abs=0.1)
    assert r["allan"][3]["alpha"] == -2  # random walk of frequency


def test_equals_allantools_on_one_segment():
    rng = np.random.default_rng(3)
    t = 30 + rng.normal(0, 2e-4, 5000) + np.cumsum(rng.normal(0, 2e-6, 5000))
    period = 0.25
    r = analyse(series(t, period), t, None, None, period, range_s=5000 * period)
    taus = [p["tau_s"] for p in r["allan"]]
    assert taus == list(octave_taus(period, 5000 * period)) == [0.25 * 2 ** k for k in range(9)]
    expected_taus, devs, _, ns = allantools.oadev(t, rate=1 / period, data_type="freq",
                                                  taus=np.array(taus))
    assert list(expected_taus) == taus
    assert [p["adev_k"] for p in r["allan"]] == pytest.approx(list(devs), rel=1e-12)
    assert [p["terms"] for p in r["allan"]] == list(ns)
    for p in r["allan"]:
        m = round(p["tau_s"] / period)
        if len(t) // m >= 30:  # allantools identifies the noise itself
            lo, hi = allantools.confidence_interval_noiseID(t, p["adev_k"], m, "oadev", "freq")
            assert (p["lo_k"], p["hi_k"]) == pytest.approx((lo, hi), rel=1e-12)
    assert r["mean"] == pytest.approx(t.mean()) and r["p2p"] == pytest.approx(np.ptp(t))


def test_gaps_split_the_series_into_segments():
    rng = np.random.default_rng(4)
    a, b = 25 + rng.normal(0, 1e-3, 3000), 26 + rng.normal(0, 1e-3, 2000)
    ts = np.concatenate([series(a), series(b, start=T0 + 4_000_000)])  # an hour apart
    t = np.concatenate([a, b])
    r = analyse(ts, t, None, None, 1.0)
    assert r["segments"] == 2 and r["n"] == 5000
    # Pooled: each segment's squared ADEV weighted by its terms; never across the gap.
    for p in r["allan"]:
        parts = [allantools.oadev(s, rate=1.0, data_type="freq", taus=[p["tau_s"]])
                 for s in (a, b)]
        squares = sum(dev[0] ** 2 * n[0] for _, dev, _, n in parts if len(dev))
        terms = sum(n[0] for _, _, _, n in parts if len(n))
        assert p["adev_k"] == pytest.approx(np.sqrt(squares / terms), rel=1e-12)
        assert p["terms"] == terms
    # Bridged, the 1 K step between the segments would dominate every tau.
    assert max(p["adev_k"] for p in r["allan"]) < 1e-2
    # A row without a temperature (sensor unplugged) cuts a segment too.
    t[1000] = np.nan
    assert analyse(ts, t, None, None, 1.0)["segments"] == 3


def test_error_figures_only_where_the_pid_is_engaged():
    rng = np.random.default_rng(5)
    n = 2000
    t = 25 + rng.normal(0, 1e-3, n)
    t[:1000] += 0.5  # far off while the PID is off
    engaged = np.r_[np.zeros(1000), np.ones(1000)]
    r = analyse(series(t), t, np.full(n, 25.0), engaged, 1.0, band_k=0.002)
    assert r["error"]["n"] == 1000 and r["engaged_fraction"] == 0.5
    assert r["error"]["mean"] == pytest.approx(0, abs=2e-4)
    within = np.count_nonzero(np.abs(t[1000:] - 25) <= 0.002) / 1000
    assert r["in_band_fraction"] == within and 0.9 < within < 1
    assert r["band_mk"] == 2 and r["notes"] == []


def test_no_engaged_pid_gives_no_error_figures_and_says_so():
    t = 25 + np.random.default_rng(6).normal(0, 1e-3, 500)
    r = analyse(series(t), t, np.full(500, 25.0), np.zeros(500), 1.0)
    assert r["error"] is None and r["in_band_fraction"] is None and r["engaged_fraction"] == 0
    assert r["notes"] == ["the PID was not engaged in this range: no error figures"]
    assert r["n"] == 500 and r["allan"]


def test_a_constant_series_has_zero_deviation():
    # A stuck sensor: no variance, no noise type to identify; still an answer.
    t = np.full(2000, 25.0)
    r = analyse(series(t), t, np.full(2000, 25.0), np.ones(2000), 1.0)
    assert r["std"] == 0 and r["in_band_fraction"] == 1.0
    assert {p["adev_k"] for p in r["allan"]} == {0.0}
    assert {p["alpha"] for p in r["allan"]} == {None}
    assert {(p["lo_k"], p["hi_k"]) for p in r["allan"]} == {(0.0, 0.0)}


def test_no_samples():
    r = analyse(np.empty(0, np.int64), np.empty(0), None, None, 1.0)
    assert r["n"] == 0 and r["mean"] is None and r["allan"] == [] and r["segments"] == 0
    assert "no temperature samples in this range" in r["notes"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="band_k"):
        analyse(series(np.ones(3)), np.ones(3), None, None, 1.0, band_k=-1)
    with pytest.raises(ValueError, match="poll_period_s"):
        analyse(series(np.ones(3)), np.ones(3), None, None, 0)


def test_sample_period_is_the_median_spacing():
    assert sample_period(series(np.ones(100), 0.1)) == pytest.approx(0.1, abs=0.003)
    assert sample_period(np.array([T0])) is None
