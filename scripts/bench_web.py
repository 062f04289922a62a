#!/usr/bin/env python3
"""Benchmark of the live view against a real ``thermostat_bridge --simulation``.

    python scripts/bench_web.py                      # 10 minutes, 50 stream clients
    python scripts/bench_web.py --duration 60        # a shorter run

Figures:

* page: time from the request of ``/#device=...`` to a drawn page with data
  (every plot holding the memory window), in Debian's Chromium via Playwright;
* latency: from a sample's poll (its ``ts``, stamped at the request to the
  device) to its event at each reading stream client, p50/p99/max;
* load: ``--clients`` stream clients of which ``--idle`` never read: the
  poll schedule (skipped polls, largest deviation of the spacing between
  stored rows from the period) and the bridge's resident memory, sampled
  every 10 s over ``--duration`` seconds.
"""

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time

import httpx

import benchkit

DEVICE = "sim0"


def page_times(url: str, runs: int) -> list:
    from playwright.sync_api import sync_playwright
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            began = time.perf_counter()
            page.goto("{}/#device={}".format(url, DEVICE))
            page.wait_for_function("() => window.liveView && liveView.plots &&"
                                   " liveView.plots.length === 10 && liveView.plots.every("
                                   "(p) => p.u.data[0].length > 1)", polling=10)
            times.append(time.perf_counter() - began)
            context.close()
        browser.close()
    return times


def reader(url: str, latencies: list, stop: threading.Event) -> None:
    try:
        _read(url, latencies, stop)
    except httpx.HTTPError:
        if not stop.is_set():
            raise


def _read(url: str, latencies: list, stop: threading.Event) -> None:
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", url + "/stream?device=" + DEVICE) as response:
            kind = None
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "sample":
                    latencies.append(time.time() * 1000 - json.loads(line[6:])["ts"])


def idle_client(url: str) -> socket.socket:
    host, port = url.rsplit("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall("GET /stream?device={} HTTP/1.1\r\nHost: x\r\n\r\n".format(DEVICE).encode())
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--idle", type=int, default=10, help="clients that never read")
    parser.add_argument("--period", type=float, default=1.0, help="poll period (s)")
    parser.add_argument("--page-runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        bridge = benchkit.Bridge(["--simulation", "--data-dir", data_dir, "--poll-period",
                                  str(args.period)], timeout=30)
        url = bridge.url
        try:
            time.sleep(max(3 * args.period, 3))  # a few rows for the page
            pages = page_times(url, args.page_runs)
            print("page drawn with data: median {:.0f} ms, max {:.0f} ms ({} loads)".format(
                1000 * statistics.median(pages), 1000 * max(pages), len(pages)))
            stop = threading.Event()
            latencies: list = []
            threads = [threading.Thread(target=reader, args=(url, latencies, stop), daemon=True)
                       for _ in range(args.clients - args.idle)]
            for t in threads:
                t.start()
            idle = [idle_client(url) for _ in range(args.idle)]
            health = httpx.get(url + "/health").json()["devices"][0]
            skipped0, started = health["polls_skipped"], int(time.time() * 1000)
            memory = []
            end = time.monotonic() + args.duration
            while time.monotonic() < end:
                memory.append(bridge.memory_mb().get("VmRSS", float("nan")))
                time.sleep(min(10.0, max(0.0, end - time.monotonic())))
            memory.append(bridge.memory_mb().get("VmRSS", float("nan")))
            stop.set()
            health = httpx.get(url + "/health").json()
            device = health["devices"][0]
            rows = httpx.get(url + "/series", params={"from": started}).json()
            spacing = [b["ts"] - a["ts"] for a, b in zip(rows, rows[1:])]
            deviation = max(abs(s - 1000 * args.period) for s in spacing)
            lat = sorted(latencies)
            print("poll to SSE event: p50 {:.1f} ms, p99 {:.1f} ms, max {:.1f} ms ({} events,"
                  " {} reading clients)".format(lat[len(lat) // 2], lat[int(len(lat) * 0.99)],
                                                lat[-1], len(lat), len(threads)))
            print("{} clients ({} never reading) for {:.0f} s: {} polls skipped, spacing within"
                  " {:.0f} ms of the period, {} poll errors; stream consumers now: {}".format(
                      args.clients, args.idle, args.duration,
                      device["polls_skipped"] - skipped0, deviation, device["polls_failed"],
                      health["consumers"].get("stream")))
            print("bridge RSS: start {:.1f} MB, end {:.1f} MB, min {:.1f}, max {:.1f}".format(
                memory[0], memory[-1], min(memory), max(memory)))
            for sock in idle:
                sock.close()
        finally:
            bridge.stop()


if __name__ == "__main__":
    main()
