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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from thermostat_ctrl.bridge.acquisition.bus import SampleBus  # noqa: E402
from thermostat_ctrl.bridge.acquisition.sample import Sample  # noqa: E402
from thermostat_ctrl.bridge.alarms.book import AlarmBook  # noqa: E402
from thermostat_ctrl.bridge.alarms.monitor import AlarmMonitor  # noqa: E402
from thermostat_ctrl.bridge.config import DeviceConfig  # noqa: E402


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


def mail_latency() -> list:
    """Seconds from switching a fault on in the simulator to the mail at the SMTP server."""
    from harness import BRIDGE, SERVING, Process, free_port, wait_until
    from receivers import MailReceiver

    latencies = []
    with MailReceiver() as mail, tempfile.TemporaryDirectory() as data:
        sim_port = free_port()
        sim = subprocess.Popen([sys.executable, "-m", "thermostat_ctrl.simulator.cli", "--port",
                                str(sim_port), "--control-port", "0"], stdout=subprocess.PIPE,
                               text=True)
        control = int(sim.stdout.readline().rsplit(":", 1)[1])
        sim.stdout.readline()
        bridge = Process(BRIDGE + ["-d", "cavity=127.0.0.1:{}".format(sim_port), "--port", "0",
                                   "--data-dir", data, "--poll-period", "0.1",
                                   "--notify", mail.url])
        try:
            bridge.wait_for_line(SERVING)
            import socket
            with socket.create_connection(("127.0.0.1", control)) as sock:
                stream = sock.makefile("rwb")
                for fault, ch in RUNS:
                    before = len(mail.messages)
                    stream.write("{} {} on\n".format(fault, ch).encode())
                    stream.flush()
                    began = time.monotonic()
                    stream.readline()
                    wait_until(lambda: len(mail.messages) > before, timeout=30, what="mail")
                    latencies.append(time.monotonic() - began)
                    stream.write("{} {} off\n".format(fault, ch).encode())
                    stream.flush()
                    stream.readline()
                    wait_until(lambda: len(mail.messages) > before + 1, timeout=30,
                               what="the clear")
        finally:
            bridge.stop()
            sim.send_signal(2)
            sim.wait()
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
