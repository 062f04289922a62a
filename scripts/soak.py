#!/usr/bin/env python3
"""Soak test of the HTTP bridge (not run in CI).

Runs the simulator in this process (time ``--speed`` times faster, the PID
engaged and its targets stepping, like ``thermostat_bridge --simulation``)
and the ``thermostat_bridge`` CLI as a subprocess polling it on loopback,
while random faults come and go: hang, replies slower than the timeout,
replies cut mid-line, garbage lines, refused connections, a reset, all
connection slots taken, dropped connections.  Meanwhile a client reads
/series, /data.csv, /metrics and /health like Grafana and Prometheus would,
and POSTs /save_once now and then.

At the end it reports rows expected and written, gaps (and whether each is
explained by a fault), recovery times after each fault, acknowledged rows
missing, and the bridge's resident memory (VmRSS, MB) over time:

    python scripts/soak.py --minutes 5 --poll-period 0.1 --speed 50
"""

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx

import benchkit
from thermostat_ctrl.bridge.acquisition.simulation import Simulation
from thermostat_ctrl.bridge.storage.csvformat import log_files
from thermostat_ctrl.simulator import Simulator

FAULTS = ("hang", "slow", "cut", "garbage", "refuse", "reset", "slots", "drop")
SLOTS = 4


@dataclass
class Outage:
    """One injected fault: wall-clock ms when it started and was cleared."""

    name: str
    start_ms: int
    clear_ms: int = 0
    recovery_ms: Optional[int] = None


@dataclass
class Run:
    """Everything recorded during the soak."""

    outages: list = field(default_factory=list)
    acked: list = field(default_factory=list)
    rss_mb: list = field(default_factory=list)       # (seconds since start, MB)
    read_errors: int = 0
    reads: int = 0
    health: dict = field(default_factory=dict)


async def hold_slots(sim: Simulator) -> list:
    """Drop every connection and take all slots with idle clients."""
    sim.drop_connections()
    held = []
    for _ in range(SLOTS):
        held.append(await asyncio.open_connection("127.0.0.1", sim.port))
    return held


async def inject(sim: Simulator, name: str, duration: float) -> None:
    """Apply fault ``name`` for ``duration`` seconds, then clear it and wait
    until the device can answer again."""
    faults = sim.faults
    held: list = []
    if name == "hang":
        faults.hang = True
    elif name == "slow":
        faults.delay_ms = 2000.0
    elif name == "cut":
        faults.cut_replies = 10 ** 9
    elif name == "garbage":
        faults.garbage_replies = 10 ** 9
    elif name == "refuse":
        faults.refuse = True
        sim.drop_connections()
    elif name == "reset":
        sim.reset()  # offline for reboot_s simulated seconds
    elif name == "slots":
        held = await hold_slots(sim)
    elif name == "drop":
        sim.drop_connections()
    await asyncio.sleep(duration)
    faults.hang = False
    faults.delay_ms = 0.0
    faults.cut_replies = 0
    faults.garbage_replies = 0
    faults.refuse = False
    for _, writer in held:
        writer.close()
    while sim.connection_count >= SLOTS:
        await asyncio.sleep(0.001)
    await sim.wait_online()


async def fault_loop(sim: Simulator, run: Run, rng: random.Random, until: float,
                     mean_gap: float) -> None:
    """Inject random faults until the monotonic time ``until``."""
    while True:
        await asyncio.sleep(rng.uniform(0.5, 1.5) * mean_gap)
        if time.monotonic() > until - 10:
            return
        name = rng.choice(FAULTS)
        outage = Outage(name, benchkit.now_ms())
        await inject(sim, name, 0.0 if name in ("reset", "drop") else rng.uniform(0.3, 3.0))
        outage.clear_ms = benchkit.now_ms()
        run.outages.append(outage)


async def client_loop(url: str, run: Run, rng: random.Random, until: float) -> None:
    """Read like Grafana and Prometheus; POST /save_once now and then."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() < until:
            path, params = rng.choice([
                ("/series", {}), ("/data.csv", {"max_points": 500}), ("/metrics", {}),
                ("/health", {}), ("/report", {}),
                ("/series", {"from": benchkit.now_ms() - 3_600_000, "max_points": 1000})])
            try:
                r = await client.get(path, params=params)
                run.reads += 1
                if r.status_code >= 500 and path not in ("/health", "/report"):
                    run.read_errors += 1
                if rng.random() < 0.1:
                    r = await client.post("/save_once")
                    if r.status_code == 200:
                        run.acked.append(r.json()["ts"])
            except httpx.HTTPError:
                run.read_errors += 1
            await asyncio.sleep(0.2)


async def rss_loop(pid: int, run: Run, began: float, until: float) -> None:
    """Sample the bridge's VmRSS every 5 s."""
    while time.monotonic() < until:
        mb = benchkit.memory_mb(pid).get("VmRSS")
        if mb is not None:
            run.rss_mb.append((round(time.monotonic() - began, 1), mb))
        await asyncio.sleep(5)


async def soak(args: argparse.Namespace) -> dict:
    """Run the soak; return its figures."""
    rng = random.Random(args.seed)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="thermostat-soak-"))
    simulation = Simulation(args.speed)
    simulation.sim.reboot_s = 1.0 * args.speed  # one real second off the network
    host, port = await simulation.start()
    sim = simulation.sim
    # The simulator answers on this loop: the blocking start and stop go to threads.
    try:
        bridge = await asyncio.to_thread(benchkit.Bridge, [
            "-d", "{}:{}".format(host, port), "--data-dir", str(data_dir), "--poll-period",
            str(args.poll_period), "--memory-s", str(args.memory_s)], 30)
    except BaseException:
        await simulation.stop()
        raise
    url = bridge.url
    run = Run()
    try:
        began = time.monotonic()
        began_ms = benchkit.now_ms()
        until = began + args.minutes * 60
        await asyncio.gather(fault_loop(sim, run, rng, until, args.fault_every),
                             client_loop(url, run, rng, until),
                             rss_loop(bridge.pid, run, began, until))
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            run.health = (await client.get("/health", params={"device": "thermostat0"})).json()
        end_ms = benchkit.now_ms()
    finally:
        status = await asyncio.to_thread(bridge.stop, signal.SIGINT)  # SIGINT: exit status 0
        (data_dir / "bridge.log").write_text("\n".join(bridge.lines) + "\n")
        await simulation.stop()
    return analyse(run, data_dir, began_ms, end_ms, args.poll_period, status)


def analyse(run: Run, data_dir: Path, began_ms: int, end_ms: int, period: float,
            status: int) -> dict:
    """Figures of a finished soak from its CSV files and records."""
    period_ms = period * 1000
    ts = []
    folder = data_dir / "thermostat0"
    for path in [folder / name for name in log_files(p.name for p in folder.iterdir())]:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        ts.extend(int(row[1]) for row in rows[1:])
    in_run = [t for t in ts if began_ms <= t <= end_ms]
    for outage in run.outages:
        after = [t for t in in_run if t >= outage.clear_ms]
        outage.recovery_ms = after[0] - outage.clear_ms if after else None
    recoveries = [o.recovery_ms for o in run.outages if o.recovery_ms is not None]
    down_ms = sum(o.clear_ms - o.start_ms + (o.recovery_ms or 0) for o in run.outages)
    saves = sum(1 for t in run.acked if began_ms <= t <= end_ms)
    gaps = [(a, b) for a, b in zip(in_run, in_run[1:]) if b - a > 1.5 * period_ms]
    unexplained = [(a, b) for a, b in gaps
                   if not any(o.start_ms - period_ms <= b and a <= o.clear_ms + period_ms
                              for o in run.outages)]
    rss = [mb for _, mb in run.rss_mb]
    settled = [mb for t, mb in run.rss_mb if t >= 60] or rss
    on_disk = set(ts)
    return {
        "minutes": round((end_ms - began_ms) / 60000, 2),
        "poll_period_s": period,
        "faults": len(run.outages),
        "faults_by_kind": {k: sum(o.name == k for o in run.outages) for k in FAULTS},
        "outage_s_total": round(sum(o.clear_ms - o.start_ms for o in run.outages) / 1000, 1),
        "rows_expected": int((end_ms - began_ms - down_ms) / period_ms) + saves,
        "rows_written": len(in_run),
        "rows_in_csv_total": len(ts),
        "duplicate_or_unordered_rows": len(ts) - len(on_disk) + sum(
            b <= a for a, b in zip(ts, ts[1:])),
        "save_once_acknowledged": len(run.acked),
        "acknowledged_missing": sum(t not in on_disk for t in run.acked),
        "gaps": len(gaps),
        "gaps_unexplained_by_faults": len(unexplained),
        "unexplained_gaps_ms": [b - a for a, b in unexplained][:20],
        "recovery_ms_max": max(recoveries, default=None),
        "recovery_ms_mean": round(sum(recoveries) / len(recoveries)) if recoveries else None,
        "recoveries_over_2_periods": sum(r > 2 * period_ms for r in recoveries),
        "slowest_recoveries": sorted(((o.recovery_ms, o.name) for o in run.outages
                                      if o.recovery_ms is not None), reverse=True)[:5],
        "rss_mb_first": rss[0] if rss else None,
        "rss_mb_after_1min": settled[0] if settled else None,
        "rss_mb_last": rss[-1] if rss else None,
        "rss_mb_max": max(rss, default=None),
        "rss_growth_mb_after_1min": round(settled[-1] - settled[0], 3) if settled else None,
        "rss_growth_bytes_per_row_after_1min": (
            round((settled[-1] - settled[0]) * 2**20 / max(1, len(
                [t for t in in_run if t >= began_ms + 60_000]))) if settled else None),
        "rss_mb_every_30s": [mb for t, mb in run.rss_mb if int(t) % 30 < 5],
        "http_reads": run.reads,
        "http_read_errors": run.read_errors,
        "bridge_health": {k: run.health.get(k) for k in (
            "polls_ok", "polls_failed", "poll_errors", "polls_skipped", "csv_rows_written",
            "csv_write_errors", "rows_refused")},
        "bridge_exit_status": status,
        "data_dir": str(data_dir),
    }


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--poll-period", type=float, default=0.1)
    parser.add_argument("--memory-s", type=float, default=30.0,
                        help="bridge memory window (small, so the ring buffer wraps)")
    parser.add_argument("--speed", type=float, default=50.0,
                        help="simulated seconds per real second")
    parser.add_argument("--fault-every", type=float, default=8.0, metavar="S",
                        help="mean seconds between faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", help="CSV directory (default: a new temporary one)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = asyncio.run(soak(args))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print("{:28} {}".format(key, value))
    ok = (figures["acknowledged_missing"] == 0 and figures["duplicate_or_unordered_rows"] == 0
          and figures["recoveries_over_2_periods"] == 0 and figures["bridge_exit_status"] == 0)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
