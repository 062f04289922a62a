"""Min/max downsampling: bucket choice and a property test against a
brute-force reference."""

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from thermostat_ctrl.bridge.storage.downsample import LADDER_MS, Aggregates, bucket_width, minmax


def reference(ts, values, from_ms, to_ms, max_points):
    """Row-by-row min/max bucketing, the definition spelled out."""
    if len(ts) <= max_points:
        return list(ts), [list(v) for v in values]
    limit = max_points // 2
    width = next(w for w in LADDER_MS if to_ms // w - from_ms // w + 1 <= limit)
    buckets: dict[int, list[int]] = {}
    for i, t in enumerate(ts):
        buckets.setdefault(t // width, []).append(i)
    out_ts, out_values = [], []
    for _, rows in sorted(buckets.items()):
        columns = list(zip(*(values[i] for i in rows)))
        finite = [[x for x in c if not math.isnan(x)] for c in columns]
        out_ts.append(ts[rows[0]])
        out_values.append([min(c) if c else math.nan for c in finite])
        if len(rows) > 1:
            out_ts.append(ts[rows[-1]])
            out_values.append([max(c) if c else math.nan for c in finite])
    return out_ts, out_values


cells = st.one_of(st.just(math.nan), st.floats(-1e6, 1e6, allow_nan=False))


@st.composite
def series(draw):
    k = draw(st.integers(1, 3))
    steps = draw(st.lists(st.integers(1, 40_000), min_size=0, max_size=300))
    start = draw(st.integers(0, 10**12))
    ts = np.cumsum([start] + steps).astype(np.int64)
    values = np.array(draw(st.lists(st.lists(cells, min_size=k, max_size=k),
                                    min_size=len(ts), max_size=len(ts))),
                      dtype=np.float64).reshape(len(ts), k)
    from_ms = max(0, int(ts[0]) - draw(st.integers(0, 5000)))
    to_ms = int(ts[-1]) + draw(st.integers(0, 5000))
    max_points = draw(st.integers(2, 400))
    return ts, values, from_ms, to_ms, max_points


@settings(max_examples=300, deadline=None)
@given(series())
def test_minmax_matches_reference(case):
    ts, values, from_ms, to_ms, max_points = case
    got_ts, got_values = minmax(ts, values, from_ms, to_ms, max_points)
    want_ts, want_values = reference(ts.tolist(), values.tolist(), from_ms, to_ms, max_points)
    assert got_ts.tolist() == want_ts
    np.testing.assert_array_equal(got_values, np.array(want_values).reshape(got_values.shape))
    assert len(got_ts) <= max_points
    assert np.all(np.diff(got_ts) > 0)


@settings(max_examples=100, deadline=None)
@given(series(), st.data())
def test_reducing_partial_aggregates_is_exact(case, data):
    """Pre-aggregating any sub-buckets first gives the same rows."""
    ts, values, from_ms, to_ms, max_points = case
    width = bucket_width(from_ms, to_ms, max_points)
    divisors = [w for w in LADDER_MS if width % w == 0]
    tier = data.draw(st.sampled_from(divisors))
    partial = Aggregates.from_rows(ts, values).reduce(tier)
    got = partial.reduce(width).rows()
    want = Aggregates.from_rows(ts, values).reduce(width).rows()
    assert got[0].tolist() == want[0].tolist()
    np.testing.assert_array_equal(got[1], want[1])


def test_bucket_width_is_smallest_fitting_ladder_step():
    assert bucket_width(0, 999, 4) == 1000  # one bucket
    assert bucket_width(0, 86_400_000, 2000) == 120_000  # a day -> 2 min
    assert bucket_width(0, 30 * 86_400_000, 2000) == 3_600_000
    assert bucket_width(0, 365 * 86_400_000, 2000) == 12 * 3_600_000
    assert bucket_width(0, 100 * 365 * 86_400_000, 2) > 100 * 365 * 86_400_000
    # alignment counts buckets touched, not range / width
    assert bucket_width(999, 1000, 2) == 2000


def test_few_rows_are_returned_unchanged_and_empty_buckets_stay_gaps():
    ts = np.array([0, 1000, 2000], dtype=np.int64)
    values = np.array([[1.0], [2.0], [3.0]])
    got_ts, got_values = minmax(ts, values, 0, 2000, 3)
    assert got_ts is ts and got_values is values
    ts = np.array([0, 500, 900, 10_000, 10_100], dtype=np.int64)
    values = np.array([[5.0], [1.0], [3.0], [np.nan], [7.0]])
    got_ts, got_values = minmax(ts, values, 0, 10_999, 4)  # 1 s buckets... too many
    assert got_ts.tolist() == [0, 900, 10_000, 10_100]  # 10 s buckets, gap between
    assert got_values[:, 0].tolist() == [1.0, 5.0, 7.0, 7.0]


def test_minmax_is_fast_on_900k_rows():
    n = 900_000
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    values = np.random.default_rng(0).normal(size=(n, 4))
    got_ts, _ = minmax(ts, values, int(ts[0]), int(ts[-1]), 2000)
    assert 0 < len(got_ts) <= 2000
