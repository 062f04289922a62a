#!/usr/bin/env python3
"""Time the first history query on a freshly copied data directory (no caches).

Copies a device folder's CSV files (not its ``.cache``), answers one query
over all of it with every column (as ``/data.csv`` does without ``fields``),
then the same query again from the caches the first one built, and checks
that both answers are identical:

    python scripts/gen_history.py --days 30 /tmp/history/thermostat0
    python scripts/cold_query.py /tmp/history/thermostat0 --max-points 2000
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from thermostat_ctrl.bridge.storage.csvformat import DAY_MS, log_files, parse_file_name
from thermostat_ctrl.bridge.storage.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("device_dir", help="a device folder of CSV files")
    parser.add_argument("--max-points", type=int, default=2000)
    args = parser.parse_args()
    names = log_files(os.listdir(args.device_dir))
    if not names:
        parser.error("no log files in {}".format(args.device_dir))
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "device")
        shutil.copytree(args.device_dir, copy, ignore=shutil.ignore_patterns(".cache"))
        start = parse_file_name(names[0])[0] * DAY_MS
        end = (parse_file_name(names[-1])[0] + 1) * DAY_MS - 1
        store = Store(copy, [], 10)
        columns = store.all_columns()
        began = time.perf_counter()
        cold = store.query(start, end, columns, args.max_points)
        cold_s = time.perf_counter() - began
        cached_store = Store(copy, [], 10)
        began = time.perf_counter()
        cached = cached_store.query(start, end, columns, args.max_points)
        cached_s = time.perf_counter() - began
        same = (cold.ts.tolist() == cached.ts.tolist()
                and np.array_equal(cold.values, cached.values, equal_nan=True))
    print("{} files, {} columns, max_points={}: cold {:.2f} s ({} caches built), cached {:.1f} ms,"
          " {} rows, answers {}".format(len(names), len(columns), args.max_points, cold_s,
                                         store.history.caches_built, cached_s * 1000, len(cold),
                                         "identical" if same else "DIFFER"))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
