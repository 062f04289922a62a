#!/usr/bin/env python3
"""Benchmark of the bridge's history store (issue 5; not part of the tests).

Generates N days of 1 Hz history (26 columns) in a temporary data dir,
builds the per-day caches, then measures ``Store.query`` latency (p50/p99)
for 1 hour raw and 24 h / 30 d / 365 d with ``max_points=2000``, the cost of
``Store.append`` per sample and the resident memory:

    python scripts/bench.py --days 365 [--data-dir DIR] [--json out.json]

The newest generated day is the "live" file (parsed into memory, as the
bridge does for the file it appends to); the ring buffer starts empty so
every query is served from disk.  The HTTP measurements of issue 5 (poll
cadence, /report under load) come with the app.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gen_history import COLUMNS, day_rows, generate  # noqa: E402
from thermostat_ctrl.bridge.csvlog import DAY_MS, parse_file_name  # noqa: E402
from thermostat_ctrl.bridge.history import build_cache  # noqa: E402
from thermostat_ctrl.bridge.store import Store  # noqa: E402

HOUR_MS = 3_600_000
RANGES = [("1 h raw", HOUR_MS, None), ("24 h", DAY_MS, 2000),
          ("30 d", 30 * DAY_MS, 2000), ("365 d", 365 * DAY_MS, 2000)]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def append_cost(repeat: int) -> float:
    """Mean seconds per Store.append (ring buffer + CSV row) at 26 columns."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, COLUMNS, 600)
        ts, values = day_rows(20_000)
        start = time.perf_counter()
        for i in range(repeat):
            store.append(int(ts[i]), COLUMNS, values[i])
        return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--data-dir", help="reuse/keep this dir (default: temporary)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="thermostat-bench-")
    results: dict = {"days": args.days, "columns": len(COLUMNS)}
    try:
        csvs = sorted((n for n in os.listdir(data_dir) if parse_file_name(n)),
                      key=parse_file_name) if os.path.isdir(data_dir) else []
        if len(csvs) < args.days:
            start = time.perf_counter()
            csvs = generate(data_dir, args.days)
            results["generate_s"] = round(time.perf_counter() - start, 1)
            print(f"generated {args.days} days in {results['generate_s']} s")
        start = time.perf_counter()
        with ProcessPoolExecutor() as pool:
            built = sum(pool.map(build_cache, [os.path.join(data_dir, n) for n in csvs[:-1]]))
        results["cache_build_s"] = round(time.perf_counter() - start, 1)
        print(f"built {built} caches in {results['cache_build_s']} s")

        rss_before = rss_mb()
        store = Store(data_dir, COLUMNS, 600)
        now = (parse_file_name(csvs[-1])[0] + 1) * DAY_MS - 1  # end of the newest day
        start = time.perf_counter()
        store.query(now - HOUR_MS, now, max_points=2000)
        results["first_query_ms"] = (time.perf_counter() - start) * 1e3
        rows = []
        for name, span, max_points in RANGES:
            start = time.perf_counter()
            table = store.query(now - span, now, max_points=max_points)
            cold = time.perf_counter() - start
            times = []
            for i in range(args.repeat):
                start = time.perf_counter()
                store.query(now - span - i * 1000, now - i * 1000, max_points=max_points)
                times.append(time.perf_counter() - start)
            row = {"range": name, "rows": len(table), "cold_ms": cold * 1e3,
                   "p50_ms": statistics.median(times) * 1e3,
                   "p99_ms": percentile(times, 0.99) * 1e3}
            rows.append(row)
        results["queries"] = rows
        results["rss_mb_after_queries"] = round(rss_mb(), 1)
        results["rss_mb_before_store"] = round(rss_before, 1)
        results["append_us"] = round(append_cost(5000) * 1e6, 1)
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)

    print(f"\nfirst query (parses the live day): {results['first_query_ms']:.0f} ms")
    print(f"\n{'range':<8} {'rows':>6} {'cold ms':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for row in results["queries"]:
        print(f"{row['range']:<8} {row['rows']:>6} {row['cold_ms']:>8.1f} "
              f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}")
    print(f"\nStore.append (ring + CSV row): {results['append_us']} us/sample")
    print(f"resident memory: {results['rss_mb_before_store']} MB before the store, "
          f"{results['rss_mb_after_queries']} MB after the queries")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
