"""The ``thermostat_bridge`` command and the ASGI factory, as real processes on loopback."""

import csv
import io
import os
import sys
import time

import httpx
import pytest

from harness import FIRST, Process, bridge_process, free_port, healthy, run_cli, wait_until


def test_simulation_serves_data_and_stops_on_sigint(tmp_path):
    with bridge_process(tmp_path) as (process, url):
        wait_until(lambda: healthy(url), what="/health 200")
        assert httpx.get(url + "/report").status_code == 200
        rows = wait_until(lambda: _csv_rows(url, 4), what="4 CSV rows")
        assert rows[0][:2] == ["time", "ts"] and "temperature_ch0" in rows[0]
        assert "thermostat_temperature_celsius" in httpx.get(url + "/metrics").text
        assert httpx.get(url + "/docs").status_code == 200
        assert process.stop() == 0
    (log,) = (tmp_path / FIRST).glob("thermostat-*.csv")
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
    ((), "give the devices: -d/--device, --simulation or --config"),
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
                       "thermostat_ctrl.bridge.web.app:app_from_env", "--host", "127.0.0.1",
                       "--port", str(port)], env=env)
    url = "http://127.0.0.1:{}".format(port)
    try:
        (health,) = wait_until(lambda: healthy(url), what="/health 200").json()["devices"]
        assert health["simulation"] and health["fields"] == ["temperature"]
        assert health["poll_period_s"] == 0.1
    finally:
        assert process.stop() == 0
