#!/usr/bin/env python3
"""End-to-end benchmark of the HTTP bridge on a year of history (not
part of the tests).

    python scripts/bench.py --days 365 --json /tmp/bench.json [--data-dir DIR]

1. Writes ``--days`` full days of realistic 1 Hz history (26 columns, see
   ``gen_history.py``) ending yesterday (UTC), plus today's file up to a
   second ago, so the bridge's live day follows on.  With ``--data-dir`` the
   directory is kept and reused: only missing days are generated.
2. Starts ``thermostat_sim --port 0`` and ``thermostat_bridge -d
   127.0.0.1:PORT --port 0 --poll-period 1`` on that directory (or the
   bridge alone with ``--simulation``), loopback only; waits for the
   ``serving 1 device(s) on http://...`` log line, then until the bridge's
   background builder has written every closed day's cache, by watching
   ``DIR/.cache/*.json`` (each written last, naming the CSV size and mtime it
   was built from).
3. Measures over HTTP (one keep-alive client, gzip accepted like Grafana,
   time to the last byte of the response):
   ``/series`` and ``/data.csv`` latency p50/p99 for the ranges ending now:
   1 hour raw and 24 hours / 30 days / 365 days with ``max_points=2000``.
4. Measures in-process the CPU cost of one poll cycle per sample: parse the
   report line, build the row, ``Store.append`` (ring buffer + CSV row, into
   a temporary dir) and the rendering of the new row (``render.RecentRows``);
   the last two run on the store's and the renderer's bus threads, not the
   poll loop's.
5. Runs ``--duration`` seconds of 50 concurrent ``/report`` clients
   (keep-alive connections of a bare asyncio HTTP client, back to back
   unless ``--client-interval``) while the bridge polls, then reads the rows
   the bridge wrote to the CSV meanwhile: cadence error (largest lateness of
   a sample's ts against the schedule ``start + n * period``, phase taken
   from the most punctual sample) and missed polls (gaps in ``n``, and the
   skipped/failed counters of ``/health``).
6. Reads the bridge's resident memory (``VmRSS`` in ``/proc/PID/status``)
   after the caches are built, after the queries (the last one a parameterless
   ``/data.csv``: every row of the last 24 hours) and after the load.

Prints a table, PASS/MISS per target, and writes ``--json``.
The subprocesses started here are stopped on exit, whatever happens.
"""

import argparse
import asyncio
import collections
import gzip
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Optional

import httpx

import benchkit
from gen_history import write_day
from thermostat_ctrl import protocol
from thermostat_ctrl.bridge import schema
from thermostat_ctrl.bridge.storage.cachefile import CACHE_DIR
from thermostat_ctrl.bridge.storage.csvformat import DAY_MS, log_files, parse_file_name
from thermostat_ctrl.bridge.storage.store import Store
from thermostat_ctrl.bridge.web import render

HOUR_MS = 3_600_000
#: The name of the bridge's one device, and its folder in the data directory.
DEVICE = "sim0"
PERIOD_S = 1.0
CLIENTS = 50
#: (name, span ms, max_points or None for raw rows, p50 target ms)
RANGES = [("1 h raw", HOUR_MS, None, 30.0), ("24 h", DAY_MS, 2000, 50.0),
          ("30 d", 30 * DAY_MS, 2000, 50.0), ("365 d", 365 * DAY_MS, 2000, 200.0)]
ENDPOINTS = ("/series", "/data.csv")
POLL_COST_TARGET_MS = 1.0
CADENCE_TARGET_MS = 20.0
RSS_TARGET_MB = 150.0

#: A firmware-2025 ``report`` reply exactly as ``thermostat_sim`` sends it.
REPORT_LINE = (
    b'[{"channel":0,"time":1.845e0,"interval":1.19e-1,"adc":8.168191459923572e-1,'
    b'"sens":9.999696043238193e3,"temperature":2.500071105873525e1,"pid_engaged":false,'
    b'"i_set":0e0,"dac_value":1.5e0,"dac_feedback":1.499752334447304e0,'
    b'"i_tec":1.5000041729779865e0,"tec_i":1.0432444966235188e-5,'
    b'"tec_u_meas":3.2655392259779074e-4,"pid_output":0e0},'
    b'{"channel":1,"time":1.786e0,"interval":1.19e-1,"adc":8.167827051902298e-1,'
    b'"sens":9.99881260847138e3,"temperature":2.500277785650883e1,"pid_engaged":false,'
    b'"i_set":0e0,"dac_value":1.5e0,"dac_feedback":1.4997215204741432e0,'
    b'"i_tec":1.500150118179683e0,"tec_i":3.7529544920755775e-4,'
    b'"tec_u_meas":2.5376091893360483e-3,"pid_output":0e0}]\n')


def log(message: str) -> None:
    """Progress line on stderr (the results go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------- history

def prepare_history(data_dir: str, days: int) -> dict:
    """Make sure ``data_dir`` holds ``days`` full days ending yesterday (UTC)
    and a file for today up to a second ago; generate only what is missing.

    Today's file is always written afresh, so that a reused directory has no
    hole between an earlier run and now (the "1 h raw" range must be full)."""
    os.makedirs(data_dir, exist_ok=True)
    today = benchkit.now_ms() // DAY_MS
    for name in log_files(os.listdir(data_dir)):
        if parse_file_name(name)[0] == today:
            os.remove(os.path.join(data_dir, name))
    present = {parse_file_name(n)[0] for n in log_files(os.listdir(data_dir))}
    missing = [d for d in range(today - days, today) if d not in present]
    start = time.perf_counter()
    if missing:
        log(f"generating {len(missing)} days of 1 Hz history in {data_dir}")
        with ProcessPoolExecutor() as pool:
            list(pool.map(write_day, [data_dir] * len(missing), missing))
    if today not in present:
        write_day(data_dir, today, until_ms=benchkit.now_ms() - 1000)
    names = log_files(os.listdir(data_dir))
    size = sum(os.path.getsize(os.path.join(data_dir, n)) for n in names)
    return {"days_generated": len(missing), "generate_s": round(time.perf_counter() - start, 1),
            "csv_files": len(names), "csv_gb": round(size / 1e9, 2)}


def stale_caches(data_dir: str) -> list[str]:
    """Closed CSV files (all but the newest) whose cache is missing or older
    than the CSV (the check the bridge itself makes)."""
    stale = []
    for name in log_files(os.listdir(data_dir))[:-1]:
        try:
            st = os.stat(os.path.join(data_dir, name))
            with open(os.path.join(data_dir, CACHE_DIR, name + ".json")) as f:
                meta = json.load(f)
            if [meta["csv_size"], meta["csv_mtime_ns"]] != [st.st_size, st.st_mtime_ns]:
                stale.append(name)
        except (OSError, ValueError, KeyError):
            stale.append(name)
    return stale


def row_timestamps(data_dir: str, from_ms: int, to_ms: int) -> list[int]:
    """``ts`` of the CSV rows with ``from_ms <= ts <= to_ms``, in file order."""
    days = range(from_ms // DAY_MS, to_ms // DAY_MS + 1)
    result = []
    for name in log_files(os.listdir(data_dir)):
        if parse_file_name(name)[0] not in days:
            continue
        with open(os.path.join(data_dir, name), "rb") as f:
            f.readline()  # header
            for line in f:
                try:
                    ts = int(line.split(b",", 2)[1])
                except (IndexError, ValueError):
                    continue
                if from_ms <= ts <= to_ms:
                    result.append(ts)
    return result


# ----------------------------------------------------------- subprocesses

def wait_for_caches(data_dir: str, bridge: benchkit.Bridge, timeout: float = 3600) -> float:
    """Seconds until every closed day's cache is fresh (polled every 0.5 s)."""
    start = time.monotonic()
    last_report = 0.0
    while stale := stale_caches(data_dir):
        bridge.check_alive()
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{len(stale)} caches still missing after {timeout} s")
        if time.monotonic() - last_report > 15:
            log(f"waiting for the bridge to build {len(stale)} history caches")
            last_report = time.monotonic()
        time.sleep(0.5)
    return time.monotonic() - start


def health(client: httpx.Client) -> dict:
    """The device's ``/health`` (served with 503 while not fresh, too)."""
    return client.get("/health", params={"device": DEVICE}).json()


# ---------------------------------------------------------------- queries

def count_rows(path: str, body: bytes) -> int:
    """Rows in a ``/series`` (JSON list) or ``/data.csv`` (header + lines) body."""
    if path == "/series":
        return len(json.loads(body))
    return body.count(b"\n") - 1


def time_query(client: httpx.Client, path: str, span: int, max_points: Optional[int]
               ) -> tuple[float, int]:
    """One request for the ``span`` ms ending now: (seconds until the last
    byte is in, rows).  The clock stops before the client gunzips the body:
    that is client work (and slow in httpx), not bridge latency."""
    to = benchkit.now_ms()
    params = {"from": to - span, "to": to}
    if max_points:
        params["max_points"] = max_points
    start = time.perf_counter()
    with client.stream("GET", path, params=params) as response:
        raw = b"".join(response.iter_raw())
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        gzipped = response.headers.get("content-encoding") == "gzip"
    return elapsed, count_rows(path, gzip.decompress(raw) if gzipped else raw)


def query_latencies(client: httpx.Client, repeat: int) -> list[dict]:
    """p50/p99 of every (range, endpoint) over ``repeat`` requests after a
    first (cold) one."""
    results = []
    for name, span, max_points, target in RANGES:
        for path in ENDPOINTS:
            cold, rows = time_query(client, path, span, max_points)
            times = [time_query(client, path, span, max_points)[0] for _ in range(repeat)]
            results.append({
                "range": name, "endpoint": path, "max_points": max_points, "rows": rows,
                "cold_ms": round(cold * 1e3, 2),
                "p50_ms": round(statistics.median(times) * 1e3, 2),
                "p99_ms": round(benchkit.percentile(times, 99) * 1e3, 2),
                "target_p50_ms": target})
            log(f"{path} {name}: p50 {results[-1]['p50_ms']} ms")
    return results


def default_csv(client: httpx.Client) -> dict:
    """``GET /data.csv`` without parameters, as a Grafana panel set up
    without a range sends it: every row of the last 24 hours (the largest
    answer, for the memory figure)."""
    start = time.perf_counter()
    response = client.get("/data.csv")
    body = response.content
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return {"rows": count_rows("/data.csv", body), "ms": round(elapsed * 1e3, 1),
            "mb": round(len(body) / 1e6, 1)}


# ------------------------------------------------------------- poll cycle

def poll_cycle_cost(iterations: int) -> dict:
    """CPU time (``time.process_time``) per sample of each poll-cycle step,
    in microseconds, on distinct report lines."""
    lines = [REPORT_LINE.replace(b"2.500071105873525e1", b"%.15e" % (25 + i * 1e-7))
             for i in range(iterations)]
    fields = schema.report_fields(protocol.parse_reply(REPORT_LINE))
    columns = schema.columns_for(fields)
    base = (benchkit.now_ms() // DAY_MS - 3) * DAY_MS  # one whole UTC day of room
    cost = {}
    with tempfile.TemporaryDirectory(prefix="thermostat-bench-append-") as tmp:
        store = Store(tmp, columns, 600)

        start = time.process_time()
        reports = [protocol.channel_list(protocol.parse_reply(line, "report"), "report")
                   for line in lines]
        cost["parse_us"] = time.process_time() - start

        start = time.process_time()
        rows = [schema.row_values(report, fields) for report in reports]
        cost["row_values_us"] = time.process_time() - start

        start = time.process_time()
        for i, values in enumerate(rows):
            store.append(base + i * 1000, columns, values)
        cost["store_append_us"] = time.process_time() - start
        store.close()

        recent = render.RecentRows(600)
        start = time.process_time()
        for i, values in enumerate(rows):
            recent.add(base + i * 1000, columns, values)
        cost["render_us"] = time.process_time() - start
    cost = {k: round(v / iterations * 1e6, 1) for k, v in cost.items()}
    cost["total_us"] = round(sum(cost.values()), 1)
    return cost


# ------------------------------------------------------- cadence and load

async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> int:
    """One HTTP/1.1 keep-alive exchange; the status code (body read and dropped)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length is None:
        raise ValueError("reply without content-length")
    await reader.readexactly(int(length.group(1)))
    return int(head.split(b" ", 2)[1])


async def _report_load(url: str, clients: int, duration: float, interval: float
                       ) -> tuple[list, dict]:
    """``clients`` connections, each sending ``GET /report`` as soon as the
    previous reply is in (or every ``interval`` s when it is not 0), for
    ``duration`` s: latencies (s) of the 200s and the other outcomes.  A bare asyncio client, so that the client's own CPU
    cost (httpx costs ms per request) does not cap the load on the bridge."""
    host, port = url.rsplit("/", 1)[1].split(":")
    request = f"GET /report HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def client(phase: float) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        due = loop.time() + phase
        try:
            while loop.time() < deadline:
                if interval:
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    due += interval
                start = time.perf_counter()
                status = await _get(reader, writer, request)
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[str(status)] += 1
        except (OSError, ValueError, asyncio.IncompleteReadError) as e:
            errors[type(e).__name__] += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(interval * i / clients) for i in range(clients)))
    return latencies, dict(errors)


def cadence(timestamps: list[int], period_ms: float) -> dict:
    """Schedule error of consecutive samples: sample ``i`` belongs to poll
    ``n_i = round((ts_i - ts_0) / period)``; its lateness is its offset from
    ``n_i * period`` minus the smallest such offset (the most punctual
    sample sets the phase).  Missed polls are the ``n`` without a sample."""
    if len(timestamps) < 2:
        return {"samples": len(timestamps)}
    t0 = timestamps[0]
    n = [round((t - t0) / period_ms) for t in timestamps]
    offsets = [t - t0 - k * period_ms for t, k in zip(timestamps, n)]
    return {"samples": len(timestamps), "polls": n[-1] + 1,
            "missed": n[-1] + 1 - len(set(n)),
            "max_lateness_ms": round(max(offsets) - min(offsets), 1),
            "max_dev_from_first_ms": round(max(abs(o) for o in offsets), 1)}


def _run_report_load(url: str, clients: int, duration: float, interval: float
                     ) -> tuple[list, dict]:
    return asyncio.run(_report_load(url, clients, duration, interval))


def load_run(client: httpx.Client, url: str, data_dir: str, duration: float, pid: int,
             interval: float, nice: int) -> dict:
    """``CLIENTS`` concurrent ``/report`` clients for ``duration`` s while the
    bridge polls; the cadence of the rows written meanwhile.  The clients run
    in a child process at niceness ``nice`` (0: the bridge's priority)."""
    before = health(client)
    cpu = benchkit.cpu_s(pid)
    clock_skew = time.time() - time.monotonic()
    start = benchkit.now_ms()
    with ProcessPoolExecutor(1, initializer=os.nice, initargs=(nice,)) as pool:
        latencies, errors = pool.submit(_run_report_load, url, CLIENTS, duration,
                                        interval).result()
    end = benchkit.now_ms()
    cpu = benchkit.cpu_s(pid) - cpu
    clock_skew = (time.time() - time.monotonic()) - clock_skew
    after = health(client)
    ts = row_timestamps(data_dir, start + 1, end)
    result = {
        "duration_s": duration, "clients": CLIENTS, "client_interval_s": interval,
        "client_nice": nice, "requests": len(latencies),
        "errors": errors, "report_rps": round(len(latencies) / duration, 1),
        "report_p50_ms": round(statistics.median(latencies) * 1e3, 2) if latencies else None,
        "report_p99_ms": round(benchkit.percentile(latencies, 99) * 1e3, 2) if latencies else None,
        "bridge_cpu_percent": round(100 * cpu / duration),
        "cadence": cadence(ts, PERIOD_S * 1000),
        "polls_skipped": after["polls_skipped"] - before["polls_skipped"],
        "polls_failed": after["polls_failed"] - before["polls_failed"],
        "wall_vs_monotonic_drift_ms": round(clock_skew * 1e3, 2)}
    return result


# ---------------------------------------------------------------- results

def verdicts(results: dict) -> list[tuple[str, str, str, bool]]:
    """``(target, limit, measured, passed)`` for every target."""
    out = []
    for q in results["queries"]:
        out.append((f"{q['endpoint']} {q['range']} p50", f"< {q['target_p50_ms']:g} ms",
                    f"{q['p50_ms']:.1f} ms", q["p50_ms"] < q["target_p50_ms"]))
    cost = results["poll_cycle_us"]["total_us"]
    out.append(("poll-cycle CPU per sample", f"< {POLL_COST_TARGET_MS * 1000:g} us",
                f"{cost:.0f} us", cost < POLL_COST_TARGET_MS * 1000))
    load = results["load"]
    lateness = load["cadence"].get("max_lateness_ms", float("nan"))
    out.append(("cadence error under /report load", f"< {CADENCE_TARGET_MS:g} ms",
                f"{lateness:.1f} ms", lateness < CADENCE_TARGET_MS))
    missed = max(load["cadence"].get("missed", 0), load["polls_skipped"] + load["polls_failed"])
    out.append(("missed polls under /report load", "0", str(missed), missed == 0))
    rss = max(m["VmRSS"] for m in results["memory_mb"].values())
    out.append(("bridge resident memory (max VmRSS)", f"< {RSS_TARGET_MB:g} MB",
                f"{rss:.1f} MB", rss < RSS_TARGET_MB))
    return out


def print_report(results: dict, command: str) -> None:
    """The results as tables on stdout."""
    print(f"\n$ {command}")
    h = results["history"]
    print(f"machine: {results['cpus']} CPUs, load average {results['loadavg_at_start'][0]:.2f}"
          f" at the start, {results['loadavg_at_end'][0]:.2f} at the end")
    print(f"history: {results['days']} days + today, {h['csv_files']} CSV files, "
          f"{h['csv_gb']} GB; bridge ready in {results['bridge_ready_s']} s, "
          f"caches ready after {results['caches_ready_s']} s (watching {CACHE_DIR}/*.json)")
    print(f"\n{'endpoint':<10} {'range':<8} {'rows':>6} {'cold ms':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8}  (n={results['repeat']})")
    for q in results["queries"]:
        print(f"{q['endpoint']:<10} {q['range']:<8} {q['rows']:>6} {q['cold_ms']:>8.1f} "
              f"{q['p50_ms']:>8.2f} {q['p99_ms']:>8.2f}")
    c = results["poll_cycle_us"]
    print(f"\npoll cycle CPU per sample: {c['total_us']} us (parse {c['parse_us']}, "
          f"row {c['row_values_us']}, Store.append {c['store_append_us']}, "
          f"rows rendered {c['render_us']})")
    load = results["load"]
    cad = load["cadence"]
    pace = (f"one request per {load['client_interval_s']:g} s each"
            if load["client_interval_s"] else "back to back")
    if load["client_nice"]:
        pace += f", at niceness {load['client_nice']}"
    print(f"\n/report, {load['clients']} concurrent clients ({pace}) for {load['duration_s']:g} s: "
          f"{load['requests']} requests ({load['report_rps']}/s), p50 {load['report_p50_ms']} ms,"
          f" p99 {load['report_p99_ms']} ms, errors {load['errors'] or 'none'}; bridge CPU "
          f"{load['bridge_cpu_percent']}%")
    print(f"cadence meanwhile: {cad.get('samples')} samples of {cad.get('polls')} polls, "
          f"missed {cad.get('missed')}, max lateness {cad.get('max_lateness_ms')} ms "
          f"(max deviation from the first sample's schedule {cad.get('max_dev_from_first_ms')} "
          f"ms); /health: {load['polls_skipped']} skipped, {load['polls_failed']} failed")
    whole = results["cadence_whole_run"]
    print(f"cadence since the bridge started (cache build and queries included): "
          f"{whole.get('samples')} samples, missed {whole.get('missed')}, "
          f"max lateness {whole.get('max_lateness_ms')} ms")
    d = results["default_csv"]
    print(f"\nGET /data.csv without parameters (24 h raw): {d['rows']} rows, {d['mb']} MB, "
          f"{d['ms']} ms")
    print("bridge memory: " + ", ".join(
        f"{stage} {m['VmRSS']} MB ({m['RssAnon']} heap + {m['RssFile']} files)"
        for stage, m in results["memory_mb"].items())
        + f" (peak VmHWM {results['peak_rss_mb']} MB)")
    print(f"\n{'target':<38} {'limit':>10} {'measured':>10}")
    for name, limit, measured, passed in results["verdicts"]:
        print(f"{name:<38} {limit:>10} {measured:>10}  {'PASS' if passed else 'MISS'}")


# ------------------------------------------------------------------- main

def run(args: argparse.Namespace, data_dir: str, children: list) -> dict:
    """Every measurement, in order; the results as a dict."""
    device_dir = os.path.join(data_dir, DEVICE)  # the bridge's one device
    results: dict = {"days": args.days, "repeat": args.repeat, "cpus": os.cpu_count(),
                     "loadavg_at_start": os.getloadavg(),
                     "history": prepare_history(device_dir, args.days)}
    device = ["--simulation"]
    if not args.simulation:
        children.append(benchkit.Simulator(["-q"]))
        device = children[-1].device(DEVICE)
    started = time.monotonic()
    bridge_start_ms = benchkit.now_ms()
    bridge = benchkit.Bridge([*device, "--data-dir", data_dir, "--poll-period", str(PERIOD_S)])
    children.append(bridge)
    url = bridge.url
    results["bridge_ready_s"] = round(time.monotonic() - started, 2)
    log(f"bridge serving on {url} (pid {bridge.pid})")
    results["caches_ready_s"] = round(wait_for_caches(device_dir, bridge), 1)
    memory = {"caches built": benchkit.memory_mb(bridge.pid)}
    with httpx.Client(base_url=url, timeout=60) as client:
        results["queries"] = query_latencies(client, args.repeat)
        memory["after queries"] = benchkit.memory_mb(bridge.pid)
        results["default_csv"] = default_csv(client)
        memory["after a 24 h raw /data.csv"] = benchkit.memory_mb(bridge.pid)
        log(f"{CLIENTS} /report clients for {args.duration:g} s")
        results["load"] = load_run(client, url, device_dir, args.duration, bridge.pid,
                                   args.client_interval, args.load_nice)
        memory["after load"] = benchkit.memory_mb(bridge.pid)
        results["health"] = health(client)
    results["cadence_whole_run"] = cadence(
        row_timestamps(device_dir, bridge_start_ms, benchkit.now_ms()), PERIOD_S * 1000)
    results["peak_rss_mb"] = max(m["VmHWM"] for m in memory.values())
    results["memory_mb"] = {k: {key: m[key] for key in ("VmRSS", "RssAnon", "RssFile")}
                            for k, m in memory.items()}
    bridge.check_alive()
    log("poll-cycle cost")
    results["poll_cycle_us"] = poll_cycle_cost(args.iterations)
    results["loadavg_at_end"] = os.getloadavg()
    results["verdicts"] = verdicts(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365, help="full days of history (365)")
    parser.add_argument("--data-dir", help="keep and reuse this dir (default: temporary)")
    parser.add_argument("--repeat", type=int, default=100, help="requests per query (100)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of /report load and cadence run (60)")
    parser.add_argument("--client-interval", type=float, default=0.0, metavar="S",
                        help="each /report client waits for S s between requests"
                             " (default 0: back to back, the harshest load)")
    parser.add_argument("--load-nice", type=int, default=0, metavar="N",
                        help="run the /report clients at niceness N, as if they ran on"
                             " other machines (default 0: same priority as the bridge)")
    parser.add_argument("--iterations", type=int, default=20_000,
                        help="samples for the poll-cycle cost (20000)")
    parser.add_argument("--simulation", action="store_true",
                        help="bridge --simulation instead of a thermostat_sim subprocess")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    data_dir = os.path.abspath(args.data_dir or tempfile.mkdtemp(prefix="thermostat-bench-"))
    children: list[benchkit.Child] = []
    try:
        results = run(args, data_dir, children)
    finally:
        for child in reversed(children):
            child.stop()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    command = " ".join(["python", "scripts/bench.py", *sys.argv[1:]])
    results["command"] = command
    print_report(results, command)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
