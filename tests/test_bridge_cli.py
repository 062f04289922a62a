"""The ``thermostat_bridge`` command and the ASGI factory, as real processes on loopback."""

import contextlib
import csv
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from faultkit import free_port, wait_until

CLI = [sys.executable, "-m", "thermostat_ctrl.bridge.cli"]
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")


def run_cli(*args, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run the CLI to completion."""
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


class Process:
    """A server process whose stderr is collected by a thread."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=env)
        self.lines: list = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for_line(self, pattern: re.Pattern, timeout: float = 30.0) -> re.Match:
        """The first stderr line matching ``pattern``, waiting for it to appear."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError("no line matching {!r}; stderr:\n{}".format(
            pattern.pattern, "".join(self.lines)))

    def stop(self) -> int:
        """SIGINT the process; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def bridge_process(data_dir, *extra):
    """Run ``thermostat_bridge --simulation`` on a free loopback port; yield (process, url)."""
    process = Process(CLI + ["--simulation", "--speed", "20", "--port", "0", "--bind",
                             "127.0.0.1", "--data-dir", str(data_dir), "--poll-period", "0.1",
                             *extra])
    try:
        url = process.wait_for_line(SERVING).group(1)
        yield process, url
    finally:
        process.stop()


def healthy(url: str):
    """The /health response when it is 200, else None (also when not answering)."""
    try:
        r = httpx.get(url + "/health", timeout=2)
    except httpx.TransportError:
        return None
    return r if r.status_code == 200 else None


def test_simulation_serves_data_and_stops_on_sigint(tmp_path):
    with bridge_process(tmp_path) as (process, url):
        wait_until(lambda: healthy(url), what="/health 200")
        assert httpx.get(url + "/report").status_code == 200
        rows = wait_until(lambda: _csv_rows(url, 4), what="4 CSV rows")
        assert rows[0][:2] == ["time", "ts"] and "temperature_ch0" in rows[0]
        assert "thermostat_temperature_celsius" in httpx.get(url + "/metrics").text
        assert httpx.get(url + "/docs").status_code == 200
        assert process.stop() == 0
    (log,) = tmp_path.glob("thermostat-*.csv")
    assert log.read_text().startswith("time,ts,device_time_ch0,")


def _csv_rows(url: str, n: int):
    rows = list(csv.reader(io.StringIO(httpx.get(url + "/data.csv").text)))
    return rows if len(rows) > n else None


def test_fields_option_selects_columns(tmp_path):
    with bridge_process(tmp_path, "--fields", "temperature,tec_i") as (process, url):
        rows = wait_until(lambda: _csv_rows(url, 2), what="CSV rows")
        assert rows[0] == ["time", "ts", "temperature_ch0", "temperature_ch1",
                           "tec_i_ch0", "tec_i_ch1"]


def test_unknown_field_exits_with_one_line(tmp_path):
    r = run_cli("--simulation", "--port", "0", "--data-dir", str(tmp_path), "-q",
                "--poll-period", "0.1", "--fields", "temperature,nosuch")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch" in lines[0] and "available" in lines[0], r.stderr


def test_unwritable_data_dir_exits_at_once(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    began = time.monotonic()
    r = run_cli("--simulation", "--data-dir", str(blocker / "data"))
    assert r.returncode == 2 and time.monotonic() - began < 10
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(blocker / "data") in lines[0], r.stderr


@pytest.mark.parametrize("args, message", [
    ((), "one of the arguments -d/--device --simulation is required"),
    (("-d", "10.0.0.1", "--simulation"), "not allowed with"),
    (("-d", "10.0.0.1", "--speed", "10"), "speed only applies to the simulation"),
    (("--simulation", "--poll-period", "0"), "poll period"),
    (("-d", "10.0.0.1:99999"), "bad port"),
    (("--simulation", "--fields", "a,,b"), "empty name"),
    (("--simulation", "--firmware", "2024"), "invalid choice"),
])
def test_usage_errors(args, message):
    r = run_cli(*args)
    assert r.returncode == 2
    assert message in r.stderr.strip().splitlines()[-1]


def test_asgi_factory_from_environment(tmp_path):
    port = free_port()
    env = dict(os.environ, THERMOSTAT_SIMULATION="1", THERMOSTAT_SPEED="20",
               THERMOSTAT_DATA_DIR=str(tmp_path), THERMOSTAT_POLL_PERIOD="0.1",
               THERMOSTAT_FIELDS="temperature")
    process = Process([sys.executable, "-m", "uvicorn", "--factory",
                       "thermostat_ctrl.bridge.app:app_from_env", "--host", "127.0.0.1",
                       "--port", str(port)], env=env)
    url = "http://127.0.0.1:{}".format(port)
    try:
        health = wait_until(lambda: healthy(url), what="/health 200").json()
        assert health["simulation"] and health["fields"] == ["temperature"]
        assert health["poll_period_s"] == 0.1
    finally:
        assert process.stop() == 0
