"""Cache builds in child processes: every good file built once, bad ones and
a dead child left to the history, builders of the background at low
priority and newest day first, and pyarrow never loaded into the querying
process."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np

from thermostat_ctrl.bridge.storage.builders import BACKGROUND_NICENESS, build_in_processes
from thermostat_ctrl.bridge.storage.cachefile import CACHE_DIR, ClosedFile, stat_key
from thermostat_ctrl.bridge.storage.csvformat import DAY_MS, file_name, header_line, row_line
from thermostat_ctrl.bridge.storage.history import DiskHistory

COLUMNS = ["temperature_ch0", "temperature_ch1"]
DAY0 = 20_400  # 2025-11-09


def write_days(folder, days, rows=200):
    """``days`` day files of ``rows`` rows each (the last one is the live
    file of a history); their paths."""
    folder.mkdir(exist_ok=True)
    paths = []
    for d in range(days):
        ts = (DAY0 + d) * DAY_MS + np.arange(rows, dtype=np.int64) * 1000
        values = np.column_stack([25 + np.sin(ts / 1e5), 26 + np.cos(ts / 1e5)])
        path = folder / file_name(DAY0 + d)
        path.write_bytes(header_line(COLUMNS) + b"".join(row_line(int(t), v)
                                                         for t, v in zip(ts, values)))
        paths.append(str(path))
    return paths


def cached(path) -> bool:
    name = os.path.basename(path)
    closed = ClosedFile(path, os.path.join(os.path.dirname(path), CACHE_DIR, name), 0)
    return closed.load(stat_key(os.stat(path)))


def children() -> dict:
    """{pid: niceness} of this process's builder children."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == os.getpid() and b"storage.builders" in command:
            found[int(pid)] = int(fields[16])
    return found


def test_every_file_is_built_once_and_a_vanished_one_is_left_out(tmp_path):
    paths = write_days(tmp_path / "dev", 5)
    gone = str(tmp_path / "dev" / file_name(DAY0 + 9))
    built = build_in_processes([*paths[:2], gone, *paths[2:4]], workers=2)
    assert sorted(built) == sorted(paths[:4])
    assert all(cached(p) for p in paths[:4])
    assert build_in_processes(paths[:4], workers=2) == []  # fresh: nothing to build


def test_background_builders_are_niced_and_hand_out_paths_in_order(tmp_path):
    paths = write_days(tmp_path / "dev", 6)
    handed, niceness = [], {}

    def before_each(path):
        handed.append(path)
        if len(handed) > 1:  # the first child has answered: it runs at its niceness
            niceness.update(children())

    built = build_in_processes(paths, workers=1, background=True, before_each=before_each)
    assert handed == paths and built == paths
    assert niceness and set(niceness.values()) == {os.nice(0) + BACKGROUND_NICENESS}


def test_a_child_that_dies_costs_its_file_only(tmp_path):
    paths = write_days(tmp_path / "dev", 8)
    killed = []

    def before_each(path):
        if path == paths[3] and not killed:
            pid = min(children())  # the first child; the other builds on
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    built = build_in_processes(paths, workers=2, before_each=before_each)
    assert killed
    # The killed child's file (the one it held, at most two) is left out; the other builds the rest.
    assert len(built) >= len(paths) - 2 and paths[-1] in built
    assert all(cached(p) for p in built)


def test_history_builds_newest_first_and_then_loads_every_closed_day(tmp_path):
    paths = write_days(tmp_path / "dev", 5)
    history = DiskHistory(str(tmp_path / "dev"))
    assert history.build_caches(workers=1) == 4
    assert all(cached(p) for p in paths[:4]) and not cached(paths[4])  # the live file
    assert history.build_caches(workers=1) == 0


def test_a_cold_query_over_days_leaves_pyarrow_out_of_the_process(tmp_path):
    write_days(tmp_path / "dev", 4, rows=2000)
    script = textwrap.dedent("""
        import sys
        from thermostat_ctrl.bridge.storage.store import Store
        store = Store(sys.argv[1], [], 10)
        answer = store.query({lo}, {hi}, store.all_columns(), 100)
        print(len(answer), store.history.caches_built, "pyarrow" in sys.modules)
    """.format(lo=DAY0 * DAY_MS, hi=(DAY0 + 4) * DAY_MS))
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "dev")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows, built, arrow = out.stdout.split()
    assert int(rows) > 0 and built == "3" and arrow == "False"


def test_queries_building_at_once_share_one_builder_per_cpu(tmp_path):
    cpus = os.cpu_count() or 1
    folders = [write_days(tmp_path / "dev{}".format(i), 6) for i in range(3)]
    seen, results = [], {}

    def build(i):
        results[i] = build_in_processes(folders[i], workers=cpus,
                                        before_each=lambda _: seen.append(len(children())))

    threads = [threading.Thread(target=build, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(sorted(results[i]) == sorted(folders[i]) for i in range(3))
    assert seen and max(seen) <= cpus
