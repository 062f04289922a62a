#!/usr/bin/env python3
"""Benchmarks of a bridge serving a lab (not part of the tests).

    python scripts/bench_lab.py serve [--requests 2000]
    python scripts/bench_lab.py lab --devices 8 --period 1 --duration 60 [--hang]
    python scripts/bench_lab.py lab --devices 2 --period 0.1 --duration 60 [--hang]
    python scripts/bench_lab.py memory --devices 4 --days 30
    python scripts/bench_lab.py memory --devices 1 --days 30 --cold

``serve``: one simulated device polled every 0.1 s with 60 s in memory (600
rows); one keep-alive client (a bare asyncio HTTP/1.1 client, so the client's
own cost stays small) sends requests back to back and times each to its last
byte: ``/report``, ``/series`` and ``/data.csv`` over the memory window,
uncompressed and with ``Accept-Encoding: gzip``.  Also the bridge's CPU time
per ``/report`` (from ``/proc/PID/stat``).

``lab``: ``--devices`` ``thermostat_sim`` processes polled every ``--period``
s for ``--duration`` s while 20 concurrent clients read ``/report``,
``/series`` and ``/data.csv`` of random devices back to back; with
``--hang`` the first device hangs (its simulator is stopped with SIGSTOP:
the connection stays open, nothing answers) for the middle third of the run.  Then reads every device's CSV
rows of the run: missed polls (gaps in the schedule ``start + n * period``),
the skipped/failed counters of ``/health`` and each sample's lateness against
its schedule (p50/p99/max, the phase taken from the most punctual sample).

``memory``: ``--devices`` devices each with ``--days`` days of 1 Hz history
(generated once, see ``gen_history.py``), the bridge on them; waits until
the bridge has built the history caches it builds at start, queries every
device's 24 h, 7 d and 30 d (``max_points=2000``) and reports the resident
memory (``VmRSS``, ``VmHWM``) after start-up and after the queries.  With
``--cold`` the caches are removed first and the queries come at once after
start, in the order a first look takes (30 d, 24 h with ``max_points=2000``,
then the last hour raw): the first ones build the caches; the resident
memory (``VmRSS``, ``RssAnon``) is sampled every 50 ms meanwhile (its peak,
and ``VmHWM``) and after the queries.

The subprocesses started here are stopped on exit, whatever happens.
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Optional

import httpx

import benchkit
from gen_history import write_day
from thermostat_ctrl.bridge.storage.csvformat import DAY_MS, file_name, log_files

def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Client:
    """One keep-alive HTTP/1.1 connection; ``get`` returns (status, body size)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def get(self, path: str, gzip: bool = False) -> tuple:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        accept = b"Accept-Encoding: gzip\r\n" if gzip else b"Accept-Encoding: identity\r\n"
        self.writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n" + accept +
                          b"\r\n")
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"(?i)content-length: *(\d+)", head)
        if match:
            body = await self.reader.readexactly(int(match.group(1)))
        else:  # chunked
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                body += await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        return status, len(body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _time_requests(port: int, path: str, n: int, gzip: bool) -> dict:
    """Time ``n`` requests of ``path`` (``{since}`` in it is replaced by the
    epoch ms of 59 s ago: a range the memory window holds)."""
    client = Client(port)
    times = []
    size = 0
    for _ in range(n):
        began = time.perf_counter()
        status, size = await client.get(path.format(since=int(time.time() * 1000) - 59_000),
                                        gzip)
        times.append((time.perf_counter() - began) * 1000)
        if status != 200:
            raise RuntimeError("{} answered {}".format(path, status))
    client.close()
    return {"p50_ms": round(benchkit.percentile(times, 50), 3),
            "p99_ms": round(benchkit.percentile(times, 99), 3), "bytes": size}


def serve(args: argparse.Namespace) -> dict:
    data = tempfile.mkdtemp(prefix="bench-serve-")
    bridge = benchkit.Bridge(["--simulation", "--poll-period", "0.1", "--memory-s", "60",
                              "--data-dir", data])
    try:
        log("filling the memory window (60 s)")
        time.sleep(61)  # the benchmark needs 600 rows in memory: real polling time
        results = {}
        before = bridge.cpu_s()
        results["/report"] = asyncio.run(_time_requests(bridge.port, "/report", args.requests,
                                                        False))
        results["report_cpu_ms"] = round((bridge.cpu_s() - before) / args.requests * 1000, 3)
        # The memory window: /series by default; /data.csv (24 h by default) asked
        # for the last 59 s, which memory holds.
        for path in ("/series", "/data.csv?from={since}"):
            for gzip in (False, True):
                key = path.partition("?")[0] + (" gzip" if gzip else "")
                results[key] = asyncio.run(_time_requests(bridge.port, path, args.requests // 4,
                                                          gzip))
        return results
    finally:
        bridge.stop()
        shutil.rmtree(data, ignore_errors=True)


# ------------------------------------------------------------------- lab

async def _readers(port: int, names: list, clients: int, until: float) -> dict:
    paths = ["/report?device={}", "/series?device={}", "/data.csv?device={}&max_points=1000"]
    counts = {"requests": 0, "errors": 0}

    async def reader(seed: int) -> None:
        rng = random.Random(seed)
        client = Client(port)
        while time.monotonic() < until:
            path = rng.choice(paths).format(rng.choice(names))
            try:
                status, _ = await client.get(path, gzip=True)
            except (OSError, asyncio.IncompleteReadError):
                counts["errors"] += 1
                client = Client(port)
                continue
            counts["requests"] += 1
            counts["errors"] += status not in (200, 503)
        client.close()

    await asyncio.gather(*(reader(i) for i in range(clients)))
    return counts


def _schedule(ts: list, period_ms: float) -> dict:
    """Missed slots and lateness of rows against ``start + n * period``."""
    slots = [round((t - ts[0]) / period_ms) for t in ts]
    offsets = [t - ts[0] - n * period_ms for t, n in zip(ts, slots)]
    phase = min(offsets)
    late = [o - phase for o in offsets]
    missed = sum(b - a - 1 for a, b in zip(slots, slots[1:]) if b - a > 1)
    return {"rows": len(ts), "missed": missed,
            "late_p50_ms": round(benchkit.percentile(late, 50), 1),
            "late_p99_ms": round(benchkit.percentile(late, 99), 1),
            "late_max_ms": round(max(late), 1)}


def _rows(data: str, name: str, start_ms: int, end_ms: int) -> list:
    ts = []
    folder = os.path.join(data, name)
    for file in log_files(os.listdir(folder)):
        with open(os.path.join(folder, file), "rb") as f:
            for line in f.read().splitlines()[1:]:
                t = int(line.split(b",", 2)[1])
                if start_ms <= t <= end_ms:
                    ts.append(t)
    return ts


def start_simulators(n: int) -> list:
    """``n`` ``thermostat_sim`` processes (noise seeds 0, 1, ...; a device
    that hangs is a simulator stopped with SIGSTOP: its connection stays
    open and nothing answers)."""
    sims: list = []
    try:
        for i in range(n):
            sims.append(benchkit.Simulator(["--seed", str(i), "-q"]))
    except BaseException:
        stop_all(sims)
        raise
    return sims


def device_args(sims: list, names: list) -> list:
    """The bridge's ``-d NAME=127.0.0.1:PORT`` arguments, a simulator per name."""
    return [arg for sim, name in zip(sims, names) for arg in sim.device(name)]


def stop_all(children: list) -> None:
    for child in children:
        child.stop()


def lab(args: argparse.Namespace) -> dict:
    data = tempfile.mkdtemp(prefix="bench-lab-")
    names = ["thermostat{}".format(i) for i in range(args.devices)]
    sims = start_simulators(args.devices)
    bridge = None
    try:
        bridge = benchkit.Bridge([*device_args(sims, names), "--poll-period",
                                  str(args.period), "--data-dir", data])
        time.sleep(3 * args.period)  # every device's first polls, before measuring
        start_ms = int(time.time() * 1000)
        began = time.monotonic()
        until = began + args.duration
        hung = []
        if args.hang:
            def hang() -> None:
                time.sleep(args.duration / 3)
                sims[0].proc.send_signal(signal.SIGSTOP)
                hung.append(int(time.time() * 1000))
                time.sleep(args.duration / 3)
                sims[0].proc.send_signal(signal.SIGCONT)
                hung.append(int(time.time() * 1000))
            threading.Thread(target=hang, daemon=True).start()
        counts = asyncio.run(_readers(bridge.port, names, args.clients, until))
        end_ms = int(time.time() * 1000)
        health = httpx.get(bridge.url + "/health", timeout=10).json()
        per_device = {}
        for d in health["devices"]:
            rows = _rows(data, d["name"], start_ms, end_ms)
            per_device[d["name"]] = {**_schedule(rows, args.period * 1000),
                                     "skipped": d["polls_skipped"], "failed": d["polls_failed"]}
        return {"devices": args.devices, "period_s": args.period, "duration_s": args.duration,
                "clients": args.clients, "hung_ms": hung, **counts, "per_device": per_device,
                "memory": bridge.memory_mb()}
    finally:
        if bridge is not None:
            bridge.stop()
        stop_all(sims)
        shutil.rmtree(data, ignore_errors=True)


def _cached(folder: str) -> bool:
    """True when every closed day of a device folder has its cache."""
    closed = log_files(os.listdir(folder))[:-1]
    cache = os.path.join(folder, ".cache")
    return all(os.path.exists(os.path.join(cache, name + ".json")) for name in closed)


def memory(args: argparse.Namespace) -> dict:
    data = args.data_dir or tempfile.mkdtemp(prefix="bench-memory-")
    names = ["thermostat{}".format(i) for i in range(args.devices)]
    today = int(time.time() * 1000) // DAY_MS
    jobs = []
    for i, name in enumerate(names):
        folder = os.path.join(data, name)
        os.makedirs(folder, exist_ok=True)
        have = set(log_files(os.listdir(folder)))
        jobs += [(folder, day, i) for day in range(today - args.days, today)
                 if file_name(day) not in have]
    if jobs:
        log("generating {} days of 1 Hz history".format(len(jobs)))
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(write_day, *zip(*jobs)))
    if args.cold:
        for name in names:
            shutil.rmtree(os.path.join(data, name, ".cache"), ignore_errors=True)
    sims = start_simulators(args.devices)
    bridge = None
    try:
        # --adopt: the simulators of a rerun listen on other ports than the last run's.
        bridge = benchkit.Bridge([*device_args(sims, names), "--poll-period", "1",
                                  "--data-dir", data, "--adopt"])
        if args.cold:
            return _cold_queries(bridge, names, args)
        began = time.monotonic()
        while not all(_cached(os.path.join(data, name)) for name in names):
            time.sleep(1)  # the bridge builds the caches at start, in a child process
        caches_s = round(time.monotonic() - began, 1)
        started = bridge.memory_mb()
        now = int(time.time() * 1000)
        timings = {}
        with httpx.Client(base_url=bridge.url, timeout=600,
                          headers={"Accept-Encoding": "gzip"}) as client:
            for span_days in (1, 7, 30):
                for name in names:
                    began = time.perf_counter()
                    r = client.get("/data.csv", params={
                        "device": name, "from": now - span_days * DAY_MS, "to": now,
                        "max_points": 2000})
                    r.raise_for_status()
                    timings.setdefault("{} d".format(span_days), []).append(
                        round((time.perf_counter() - began) * 1000, 1))
        return {"devices": args.devices, "days": args.days, "caches_ready_s": caches_s,
                "after_start": started,
                "after_queries": bridge.memory_mb(), "query_ms": timings}
    finally:
        if bridge is not None:
            bridge.stop()
        stop_all(sims)
        if not args.data_dir:
            shutil.rmtree(data, ignore_errors=True)


def _cold_queries(bridge: benchkit.Bridge, names: list, args: argparse.Namespace) -> dict:
    """The first queries of every device on a bridge just started without
    caches, with its resident memory sampled meanwhile."""
    started = bridge.memory_mb()
    peak = dict(started)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            for key, value in bridge.memory_mb().items():
                peak[key] = max(peak.get(key, 0), value)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    now = int(time.time() * 1000)
    queries = [("30 d", 30 * DAY_MS, 2000), ("24 h", DAY_MS, 2000), ("1 h raw", 3_600_000, 5000)]
    timings: dict = {}
    try:
        with httpx.Client(base_url=bridge.url, timeout=600,
                          headers={"Accept-Encoding": "gzip"}) as client:
            for label, span, max_points in queries:
                for name in names:
                    began = time.perf_counter()
                    r = client.get("/data.csv", params={"device": name, "from": now - span,
                                                        "to": now, "max_points": max_points})
                    r.raise_for_status()
                    timings.setdefault(label, []).append(
                        round(time.perf_counter() - began, 2))
    finally:
        sampling.set()
        sampler.join()
    return {"devices": args.devices, "days": args.days, "cold": True,
            "after_start_mb": started, "peak_while_querying_mb": peak,
            "after_queries_mb": bridge.memory_mb(), "query_s": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--requests", type=int, default=2000)
    p = sub.add_parser("lab")
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--period", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--hang", action="store_true")
    p = sub.add_parser("memory")
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--data-dir", help="keep and reuse this dir (default: temporary)")
    p.add_argument("--cold", action="store_true",
                   help="no caches at start: the first queries build them")
    args = parser.parse_args()
    results = {"serve": serve, "lab": lab, "memory": memory}[args.scenario](args)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
