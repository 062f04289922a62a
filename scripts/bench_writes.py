#!/usr/bin/env python3
"""Benchmark: writes through the bridge keep the poll schedule.

    python scripts/bench_writes.py                        # 60 s, 10 writes/s, polls every 0.1 s
    python scripts/bench_writes.py --duration 20 --rate 50

Runs ``thermostat_bridge --simulation`` with a write token, first
``--duration`` seconds without writes, then as long with ``PUT .../target``
(each with ``expect``, read back) at ``--rate`` per second, and prints for
each phase: polls made and skipped, the largest deviation of the spacing
between stored rows from the poll period, and (with writes) the write
round trip p50/p95/max as seen by the client.
"""

import argparse
import os
import statistics
import tempfile
import time

import httpx

import benchkit
from thermostat_ctrl.bridge.config import SIMULATED_NAME

DEVICE = SIMULATED_NAME.format(0)  # the device of --simulation
TOKEN = "bench-token-0123456789abcdef"


def schedule(client: httpx.Client, url: str, start: int, end: int, period: float) -> dict:
    rows = client.get(url + "/series", params={"device": DEVICE, "from": start, "to": end,
                                               "fields": "temperature"}).json()
    ts = [r["ts"] for r in rows]
    spacing = [b - a for a, b in zip(ts, ts[1:])]
    worst = max((abs(s - period * 1000) for s in spacing), default=None)
    return {"rows": len(ts), "worst_spacing_deviation_ms": worst}


def health(client: httpx.Client, url: str) -> dict:
    return client.get(url + "/health", params={"device": DEVICE}).json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--rate", type=float, default=10.0, help="writes per second")
    parser.add_argument("--period", type=float, default=0.1, help="poll period (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        tokens = os.path.join(data, "tokens.txt")
        with open(tokens, "w") as f:
            f.write("bench {}\n".format(TOKEN))
        bridge = benchkit.Bridge(["--simulation", "--data-dir", os.path.join(data, "d"),
                                  "--poll-period", str(args.period), "--write-token-file",
                                  tokens], timeout=30)
        url = bridge.url
        try:
            with httpx.Client(timeout=10) as client:
                time.sleep(2)  # the first polls and the caches
                phases = {}
                for phase in ("no writes", "writes"):
                    before = health(client, url)
                    start = int(time.time() * 1000)
                    rtts = []
                    deadline = time.monotonic() + args.duration
                    path = "{}/devices/{}/channels/0/target".format(url, DEVICE)
                    current = client.get(path.replace("target", "settings")).json()["target"]
                    while time.monotonic() < deadline:
                        if phase == "writes":
                            # Between 25 and 25.5 degC, each write replacing the value read back.
                            began = time.monotonic()
                            r = client.put(path, json={"value": 25.5 if current == 25.0 else 25.0,
                                                       "expect": current},
                                           headers={"Authorization": "Bearer " + TOKEN})
                            rtts.append(time.monotonic() - began)
                            current = (r.json() if r.status_code == 200
                                       else r.json()["current"])["value"]
                        time.sleep(1 / args.rate)
                    after = health(client, url)
                    end = int(time.time() * 1000)
                    result = {"polls": after["polls_ok"] - before["polls_ok"],
                              "failed": after["polls_failed"] - before["polls_failed"],
                              "skipped": after["polls_skipped"] - before["polls_skipped"],
                              **schedule(client, url, start, end, args.period)}
                    if rtts:
                        q = statistics.quantiles(rtts, n=20)
                        result.update(writes=len(rtts), p50_ms=round(1000 * q[9], 1),
                                      p95_ms=round(1000 * q[18], 1),
                                      max_ms=round(1000 * max(rtts), 1))
                    phases[phase] = result
                for phase, result in phases.items():
                    print("{:10} {}".format(phase, result))
        finally:
            bridge.stop()


if __name__ == "__main__":
    main()
