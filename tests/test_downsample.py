"""Ordered min/max downsampling and gap marks: bucket choice, and property
tests against a brute-force reference written from the definition."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from thermostat_ctrl.bridge.storage.downsample import (
    LADDER_MS, Aggregates, bucket_width, downsample)
from thermostat_ctrl.bridge.storage.gaps import gap_ms, mark_gaps


def with_gaps(rows, longer_than):
    """(ts, values) rows with an all-NaN row in the middle of each long interval."""
    out = []
    for row in rows:
        if out and row[0] - out[-1][0] > longer_than:
            out.append((out[-1][0] + (row[0] - out[-1][0]) // 2, [math.nan] * len(row[1])))
        out.append(row)
    return out


def bucket_rows(rows):
    """One bucket's rows: per column, its earlier extreme at the first
    sample's time and the later one at the last sample's time."""
    if len(rows) == 1:
        return rows
    first, second = [], []
    for column in zip(*(values for _, values in rows)):
        finite = [(x, i) for i, x in enumerate(column) if not math.isnan(x)]
        if not finite:
            first.append(math.nan)
            second.append(math.nan)
            continue
        low, high = min(finite), min(finite, key=lambda p: (-p[0], p[1]))
        early, late = (low, high) if low[1] <= high[1] else (high, low)
        first.append(early[0])
        second.append(late[0])
    return [(rows[0][0], first), (rows[-1][0], second)]


def reference(ts, values, from_ms, to_ms, max_points, gap):
    """Brute force, row by row."""
    rows = list(zip(ts, values))
    if max_points is None or len(rows) <= max_points:
        marked = with_gaps(rows, gap)
        if max_points is None or len(marked) <= max_points:
            return marked
    limit = (max_points + 1) // 3
    width = next(w for w in LADDER_MS if to_ms // w - from_ms // w + 1 <= limit)
    buckets: dict[int, list] = {}
    for row in rows:
        buckets.setdefault(row[0] // width, []).append(row)
    out = [r for _, bucket in sorted(buckets.items()) for r in bucket_rows(bucket)]
    return with_gaps(out, max(gap, width))


def assert_same(got, want):
    got_ts, got_values = got
    assert got_ts.tolist() == [t for t, _ in want]
    np.testing.assert_array_equal(
        got_values, np.array([v for _, v in want], dtype=np.float64).reshape(got_values.shape))


cells = st.one_of(st.just(math.nan), st.floats(-1e6, 1e6, allow_nan=False),
                  st.sampled_from([0.0, 1.0, -1.0]))  # ties


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
    max_points = draw(st.one_of(st.none(), st.integers(2, 400)))
    gap = draw(st.sampled_from([1, 1500, 3000, 20_000, 10**9]))
    return ts, values, from_ms, to_ms, max_points, gap


@settings(max_examples=400, deadline=None)
@given(series())
def test_downsample_matches_reference(case):
    ts, values, from_ms, to_ms, max_points, gap = case
    got = downsample(ts, values, from_ms, to_ms, max_points, gap)
    assert_same(got, reference(ts.tolist(), values.tolist(), from_ms, to_ms, max_points, gap))
    assert max_points is None or len(got[0]) <= max_points
    assert np.all(np.diff(got[0]) > 0)
    assert all(from_ms <= t <= to_ms for t in got[0].tolist())


@settings(max_examples=150, deadline=None)
@given(series(), st.data())
def test_reducing_partial_aggregates_is_exact(case, data):
    """Pre-aggregating any sub-buckets first gives the same rows, in any
    number of parts (days, memory and disk)."""
    ts, values, from_ms, to_ms, max_points, _ = case
    width = bucket_width(from_ms, to_ms, max_points or 2)
    divisors = [w for w in LADDER_MS if width % w == 0]
    tier = data.draw(st.sampled_from(divisors))
    cut = data.draw(st.integers(0, len(ts)))
    parts = [Aggregates.from_rows(ts[:cut], values[:cut]).reduce(tier),
             Aggregates.from_rows(ts[cut:], values[cut:])]
    got = Aggregates.concat(parts, values.shape[1]).reduce(width).rows()
    want = Aggregates.from_rows(ts, values).reduce(width).rows()
    assert got[0].tolist() == want[0].tolist()
    np.testing.assert_array_equal(got[1], want[1])


def test_bucket_width_is_smallest_fitting_ladder_step():
    # (max_points + 1) // 3 buckets: two rows each, a gap mark between two
    assert bucket_width(0, 999, 2) == 1000  # one bucket
    assert bucket_width(0, 86_400_000, 2000) == 300_000  # a day -> 5 min
    assert bucket_width(0, 30 * 86_400_000, 2000) == 2 * 3_600_000
    assert bucket_width(0, 365 * 86_400_000, 2000) == 86_400_000
    assert bucket_width(0, 100 * 365 * 86_400_000, 2) > 100 * 365 * 86_400_000
    # alignment counts buckets touched, not range / width
    assert bucket_width(999, 1000, 2) == 2000
    with pytest.raises(ValueError, match="max_points"):
        bucket_width(0, 1000, 1)


def test_a_falling_channel_keeps_falling_and_each_column_keeps_its_own_order():
    ts = np.arange(0, 12_000, 1000, dtype=np.int64)  # 12 s
    falling = 30.0 - np.arange(12.0)
    rising = np.arange(12.0)
    values = np.column_stack([falling, rising])
    got_ts, got_values = downsample(ts, values, 0, 11_999, 2, gap_ms(1.0))
    assert got_ts.tolist() == [0, 11_000]
    assert got_values[:, 0].tolist() == [30.0, 19.0]  # max first, then min
    assert got_values[:, 1].tolist() == [0.0, 11.0]  # min first, then max
    # a spike inside a bucket survives, in its place between the neighbours
    spiky = np.full(12, 25.0)
    spiky[7] = 26.0
    spiky[3] = 24.0
    _, got_values = downsample(ts, spiky[:, None], 0, 11_999, 2, gap_ms(1.0))
    assert got_values[:, 0].tolist() == [24.0, 26.0]


def test_few_rows_are_returned_unchanged_and_empty_buckets_are_marked_as_gaps():
    ts = np.array([0, 1000, 2000], dtype=np.int64)
    values = np.array([[1.0], [2.0], [3.0]])
    got_ts, got_values = downsample(ts, values, 0, 2000, 3, gap_ms(1.0))
    assert got_ts is ts and got_values is values
    ts = np.array([0, 500, 900, 25_000, 25_100], dtype=np.int64)
    values = np.array([[5.0], [1.0], [3.0], [np.nan], [7.0]])
    # raw with its gaps (0.3 s) marked would be 8 rows: two 15 s buckets instead,
    # and 900 -> 25 000 is longer than a bucket: marked in the middle
    got_ts, got_values = downsample(ts, values, 0, 29_999, 7, gap_ms(0.1))
    assert got_ts.tolist() == [0, 900, 12_950, 25_000, 25_100]
    np.testing.assert_array_equal(got_values[:, 0], [5.0, 1.0, np.nan, 7.0, 7.0])


def test_gap_marks():
    assert gap_ms(1.0) == 3000 and gap_ms(0.05) == 150 and gap_ms(1e-6) == 1
    with pytest.raises(ValueError, match="poll_period_s"):
        gap_ms(0)
    ts = np.array([0, 1000, 2000, 5001, 6000, 9000, 12_002], dtype=np.int64)
    values = np.arange(7.0).reshape(7, 1)
    got_ts, got_values = mark_gaps(ts, values, 3000)
    assert got_ts.tolist() == [0, 1000, 2000, 3500, 5001, 6000, 9000, 10_501, 12_002]
    empty = np.isnan(got_values[:, 0])
    assert got_ts[empty].tolist() == [3500, 10_501]
    assert len(mark_gaps(ts[:1], values[:1], 1)[0]) == 1


def test_downsampling_900k_rows_is_fast():
    n = 900_000
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    values = np.random.default_rng(0).normal(size=(n, 4))
    got_ts, _ = downsample(ts, values, int(ts[0]), int(ts[-1]), 2000, gap_ms(1.0))
    assert 0 < len(got_ts) <= 2000
