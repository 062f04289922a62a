"""Benchmarks of the alarms.

1. The cost of evaluating every rule (all enabled, drift too) per sample, for
   8 devices polled at 10 Hz: synthetic samples fed to the alarm monitor
   exactly as the bus delivers them (one batch per poll round).
2. The latency from an injected fault (a thermistor unplugged in the
   simulator) to the mail arriving at a local SMTP server (aiosmtpd), through
   a bridge process polling at 10 Hz.

    python scripts/bench_alarms.py            # both
    python scripts/bench_alarms.py --rules    # only the first
"""

import argparse
import socket
import tempfile
import time
from types import SimpleNamespace

import numpy as np
from aiosmtpd.controller import Controller

import benchkit
from thermostat_ctrl.bridge.acquisition.bus import SampleBus
from thermostat_ctrl.bridge.acquisition.sample import Sample
from thermostat_ctrl.bridge.alarms.book import AlarmBook
from thermostat_ctrl.bridge.alarms.monitor import AlarmMonitor
from thermostat_ctrl.bridge.config import DeviceConfig


def rule_cost(devices: int = 8, rate_hz: float = 10.0, seconds: float = 600.0) -> dict:
    """Seconds of CPU per sample spent in the rules, every rule enabled."""
    period = 1 / rate_hz
    watched = {}
    for i in range(devices):
        name = "dev{}".format(i)
        poller = SimpleNamespace(targets=[25.0, 25.0], period=period, sample_age=lambda: 0.05,
                                 limits=[{"max_i_pos": 1.0, "max_i_neg": 1.0}] * 2)
        watched[name] = SimpleNamespace(config=DeviceConfig(name, "127.0.0.1", poll_period=period),
                                        poller=poller)
    book = AlarmBook(None)
    monitor = AlarmMonitor(SampleBus(), watched, {"drift": {"enabled": True}}, book)
    rng = np.random.default_rng(0)
    t0 = time.time() - seconds
    rounds = int(seconds * rate_hz)
    began = time.process_time()
    for n in range(rounds):
        batch = []
        for name in watched:
            report = [{"channel": ch, "temperature": 25 + rng.normal(0, 0.002), "pid_engaged": True,
                       "i_set": 0.2, "tec_i": 0.2, "pid_output": 0.2} for ch in (0, 1)]
            batch.append(Sample(name, int((t0 + n * period) * 1000), 0.0, report, (), np.empty(0)))
        monitor.handle(batch)
        if n % int(rate_hz / 2) == 0:
            monitor.tick()
    cpu = time.process_time() - began
    samples = rounds * devices
    return {"samples": samples, "cpu_s": cpu, "us_per_sample": cpu / samples * 1e6,
            "cpu_fraction": cpu / seconds, "alarms": len(book.active())}


#: One fault per run: each raises an alarm of its own, none held back by the
#: notifier's rate limit (one message per alarm per 5 min).
RUNS = [("unplugged", 0), ("unplugged", 1), ("shorted", 0), ("shorted", 1)]


class Inbox:
    """An SMTP server (aiosmtpd) on a free loopback port counting the messages."""

    def __init__(self):
        self.received = 0
        self.controller = Controller(self, hostname="127.0.0.1", port=benchkit.free_port())
        self.url = ("mailto://127.0.0.1:{}?from=bench@lab.example&to=ops@lab.example&secure=no"
                    .format(self.controller.port))

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's)
        self.received += 1
        return "250 OK"


def mail_latency() -> list:
    """Seconds from switching a fault on in the simulator to the mail at the SMTP server."""
    latencies = []
    inbox = Inbox()
    with tempfile.TemporaryDirectory() as data:
        inbox.controller.start()
        sim = bridge = None
        try:
            sim = benchkit.Simulator(["--control-port", "0"])
            bridge = benchkit.Bridge([*sim.device("cavity"), "--data-dir", data,
                                      "--poll-period", "0.1", "--notify", inbox.url])
            with socket.create_connection(("127.0.0.1", sim.control_port)) as sock:
                stream = sock.makefile("rwb")

                def switch(fault: str, ch: int, state: str) -> None:
                    stream.write("{} {} {}\n".format(fault, ch, state).encode())
                    stream.flush()
                    stream.readline()

                for fault, ch in RUNS:
                    before = inbox.received
                    began = time.monotonic()
                    switch(fault, ch, "on")
                    benchkit.wait_until(lambda: inbox.received > before, 30, "the mail")
                    latencies.append(time.monotonic() - began)
                    switch(fault, ch, "off")
                    benchkit.wait_until(lambda: inbox.received > before + 1, 30, "the clear")
        finally:
            for child in (bridge, sim):
                if child is not None:
                    child.stop()
            inbox.controller.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", action="store_true", help="only the rule cost")
    args = parser.parse_args()
    cost = rule_cost()
    print("rules, 8 devices at 10 Hz, every rule on: {us_per_sample:.0f} µs per sample,"
          " {cpu_fraction:.1%} of one core ({samples} samples, {alarms} alarms)".format(**cost))
    if not args.rules:
        lat = mail_latency()
        print("fault to mail (poll 0.1 s), run by run: {} s (after the first, Apprise spaces"
              " the messages to one receiver by its throttle, 5.5 s for mail)".format(
                  ", ".join("{:.2f}".format(x) for x in lat)))


if __name__ == "__main__":
    main()
