"""Throughput and replay figures of the InfluxDB / VictoriaMetrics sink
(not part of the tests).

Against a real ``influxd`` (1.x) and ``victoria-metrics`` started on free
loopback ports with temporary data (``servers.py``, shared with the sink tests):

* ``spool``: how fast samples are encoded and spooled (the bus consumer's
  work), points per second;
* ``sustained``: a producer spools samples as fast as it can for
  ``--seconds`` while the sender writes: points per second acknowledged by
  the database, and the backlog left at the end;
* ``replay``: the spool holds a ``--outage-min``-minute outage of
  ``--devices`` devices polled every ``--poll-period`` s (timestamps spread
  over those minutes); the database is up; time until the backlog is empty.

    python scripts/bench_sinks.py --devices 10 --outage-min 10 --json /tmp/sinks.json

Samples are the simulator's real report (firmware 2025: 13 fields per
channel, 2 points per sample), values varied per sample.
"""

import argparse
import asyncio
import json
import random
import tempfile
import threading
import time
from pathlib import Path

import benchkit
from servers import Influxd, VictoriaMetrics
from thermostat_ctrl.bridge import schema
from thermostat_ctrl.bridge.acquisition.sample import Sample
from thermostat_ctrl.bridge.sinks.influx import InfluxSink
from thermostat_ctrl.bridge.sinks.settings import InfluxSettings
from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.simulator import Simulator


async def _one_report() -> list:
    sim = Simulator(firmware="2025")
    port = await sim.start("127.0.0.1", 0)
    try:
        async with Thermostat("127.0.0.1", port) as driver:
            return await driver.report()
    finally:
        await sim.stop()


class Samples:
    """Fabricated samples shaped like ``report``, ``devices`` devices in turn."""

    def __init__(self, report: list, devices: int):
        self.report = report
        self.devices = ["thermostat{}".format(i) for i in range(devices)]
        self.fields = schema.report_fields(report)
        self.columns = tuple(schema.columns_for(self.fields))
        self.rng = random.Random(1)

    def make(self, device: str, ts: int) -> Sample:
        report = [{k: (v * (1 + 1e-3 * self.rng.random()) if isinstance(v, float) else v)
                   for k, v in channel.items()} for channel in self.report]
        return Sample(device, ts, 0.0, report, self.columns, schema.row_values(report, self.fields))

    def batches(self, start_ts: int, period_ms: int, count: int):
        """``count`` samples of every device, one batch per poll instant."""
        for n in range(count):
            yield [self.make(d, start_ts + n * period_ms) for d in self.devices]


def bench_spool(samples: Samples, root: Path, url: str, n: int) -> dict:
    sink = InfluxSink(InfluxSettings(url, spool_mb=4096), str(root / "spool-rate"))
    batches = list(samples.batches(int(time.time() * 1000), 100, n))
    began = time.perf_counter()
    for batch in batches:
        sink.accept(batch)
    elapsed = time.perf_counter() - began
    points = sink.spool.stats().backlog_points
    sink.spool.close()
    return {"points": points, "seconds": round(elapsed, 3),
            "points_per_s": round(points / elapsed)}


def bench_sustained(samples: Samples, root: Path, url: str, seconds: float) -> dict:
    sink = InfluxSink(InfluxSettings(url, spool_mb=4096), str(root / "sustained"))
    sink.start()
    halt = threading.Event()

    def produce() -> None:
        ts = int(time.time() * 1000) - 3_600_000
        while not halt.is_set():
            sink.accept([samples.make(d, ts) for d in samples.devices])
            ts += 1

    producer = threading.Thread(target=produce, daemon=True)
    began = time.monotonic()
    producer.start()
    time.sleep(seconds)
    sent = sink.state().points_sent
    elapsed = time.monotonic() - began
    halt.set()
    producer.join()
    state = sink.state()
    sink.stop()
    return {"seconds": round(elapsed, 1), "points_sent": sent,
            "points_per_s": round(sent / elapsed), "backlog_points_at_end": state.backlog_points,
            "spooled_points": state.backlog_points + state.points_sent}


def bench_replay(samples: Samples, root: Path, url: str, minutes: float, period: float) -> dict:
    folder = str(root / "replay-{}".format(abs(hash(url))))
    sink = InfluxSink(InfluxSettings(url, spool_mb=4096), folder)
    count = int(minutes * 60 / period)
    start = int(time.time() * 1000) - int(minutes * 60_000)
    for batch in samples.batches(start, int(period * 1000), count):
        sink.accept(batch)
    backlog = sink.spool.stats()
    began = time.monotonic()
    sink.start()
    benchkit.wait_until(lambda: sink.state().backlog_points == 0, 3600, "an empty backlog")
    elapsed = time.monotonic() - began
    state = sink.state()
    sink.stop()
    return {"outage_min": minutes, "devices": len(samples.devices), "poll_period_s": period,
            "backlog_points": backlog.backlog_points, "backlog_mb": round(
                backlog.backlog_bytes / 2**20, 1), "seconds": round(elapsed, 2),
            "points_per_s": round(backlog.backlog_points / elapsed),
            "batches": state.batches_sent, "points_sent": state.points_sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--outage-min", type=float, default=10.0)
    parser.add_argument("--poll-period", type=float, default=0.1)
    parser.add_argument("--seconds", type=float, default=20.0, help="of the sustained run")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    samples = Samples(asyncio.run(_one_report()), args.devices)
    results: dict = {"fields_per_channel": len(samples.fields)}
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
        root = Path(tmp)
        influxd = Influxd(root / "influxd").start()
        influxd.create_db("lab")
        victoria = VictoriaMetrics(root / "victoria").start()
        try:
            targets = {"influxdb": influxd.base + "/write?db=lab",
                       "victoriametrics": victoria.base + "/write?db=lab"}
            results["spool"] = bench_spool(samples, root, targets["influxdb"], 5000)
            print("spool:", results["spool"], flush=True)
            for name, url in targets.items():
                results[name] = {
                    "sustained": bench_sustained(samples, root / name, url, args.seconds),
                    "replay": bench_replay(samples, root / name, url, args.outage_min,
                                           args.poll_period)}
                print(name + ":", json.dumps(results[name]), flush=True)
        finally:
            influxd.stop()
            victoria.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
