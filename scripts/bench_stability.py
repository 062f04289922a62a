#!/usr/bin/env python3
"""Time ``GET /stability`` over a month of 1 s samples, and its memory.

Generates the month with ``gen_history.py`` unless ``--data-dir`` already
holds it, builds the history caches (as a running bridge does at start-up),
then asks a bridge on that directory (in-process, over ASGI) for one
channel's stability over the whole month, ``--repeat`` times:

    python scripts/bench_stability.py --days 30 --data-dir /tmp/stability-month

Prints the time of each answer (and the process's CPU time meanwhile: on
a shared machine the wall time also counts the other processes' turns), the answer's sample count and Allan
deviation at 1 s, then the heap memory one more answer allocates at its
peak (tracemalloc, which numpy reports to) and the process's peak resident
memory, which also counts the pages of the memory-mapped caches it read
(file-backed: the kernel drops them under pressure).
"""

import argparse
import asyncio
import os
import resource
import time
import tracemalloc

import httpx

import gen_history
from thermostat_ctrl.bridge import config as bridge_config
from thermostat_ctrl.bridge.config import SIMULATED_NAME
from thermostat_ctrl.bridge.storage.csvformat import DAY_MS
from thermostat_ctrl.bridge.storage.history import DiskHistory
from thermostat_ctrl.bridge.web.app import create_app

DEVICE = SIMULATED_NAME.format(0)  # the simulated device the bridge polls


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench(data_dir: str, first_day: int, days: int, channel: int, repeat: int) -> None:
    app = create_app(bridge_config.build(simulation=1, data_dir=data_dir, poll_period=1.0))
    params = {"channel": channel, "from": first_day * DAY_MS,
              "to": (first_day + days) * DAY_MS - 1}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     timeout=120) as client:
            before = peak_mb()
            for _ in range(repeat):
                began, cpu = time.perf_counter(), time.process_time()
                r = await client.get("/stability", params=params)
                took, cpu = time.perf_counter() - began, time.process_time() - cpu
                r.raise_for_status()
                answer = r.json()
                print("{} days, channel {}: {} samples, {} segments, ADEV(1 s) {:.3g} K,"
                      " answered in {:.2f} s ({:.2f} s of CPU)".format(
                          days, channel, answer["n"], answer["segments"],
                          answer["allan"][0]["adev_k"], took, cpu))
            tracemalloc.start()
            (await client.get("/stability", params=params)).raise_for_status()
            heap = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
    print("heap at the peak of one answer: {:.0f} MB; peak resident memory: {:.0f} MB before"
          " the queries, {:.0f} MB after (with the mapped caches)".format(heap, before, peak_mb()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--channel", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = os.path.join(args.data_dir, DEVICE)
    end_day = int(time.time() * 1000) // DAY_MS - 1
    first_day = end_day - args.days + 1
    if not os.path.isdir(folder):
        began = time.perf_counter()
        gen_history.generate(folder, args.days, end_day, workers=2)
        print("generated {} days in {:.0f} s".format(args.days, time.perf_counter() - began))
    began = time.perf_counter()
    built = DiskHistory(folder).build_caches(workers=2)
    print("built {} caches in {:.0f} s".format(built, time.perf_counter() - began))
    asyncio.run(bench(args.data_dir, first_day, args.days, args.channel, args.repeat))


if __name__ == "__main__":
    main()
