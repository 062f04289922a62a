"""The ``thermostat_bridge`` command and the ASGI factory, as real processes on loopback."""

import csv
import io
import os
import sys
import time

import httpx
import pytest

from harness import (BRIDGE, FIRST, SERVING, Process, bridge_process, free_port, healthy,
                     read_log, run_cli, wait_until)


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


def _rows_of(data_dir) -> list:
    return [row for _, _, row in read_log(data_dir)]


def test_second_bridge_on_the_same_directory_writes_nothing(tmp_path):
    """The second ``--simulation`` bridge in one folder exits at once: not a
    single row of its own simulator reaches the first bridge's log."""
    with bridge_process(tmp_path) as (first, url):
        wait_until(lambda: len(_rows_of(tmp_path / FIRST)) >= 3, what="3 rows")
        second = run_cli("--simulation", "--port", "0", "--data-dir", str(tmp_path),
                         "--poll-period", "0.1")
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "in use" in lines[0], second.stderr
        polls = httpx.get(url + "/health").json()["devices"][0]["polls_ok"]
        assert first.stop() == 0
    ts = [int(row[1]) for row in _rows_of(tmp_path / FIRST)]
    # Every row is the first bridge's: one per poll of its own, on its 0.1 s
    # schedule (a row of the second's simulator would sit between two).
    assert len(ts) >= polls and ts == sorted(set(ts))
    assert min(b - a for a, b in zip(ts, ts[1:])) >= 50


def test_busy_port_exits_before_anything_is_written(tmp_path):
    with bridge_process(tmp_path / "first") as (first, url):
        port = url.rsplit(":", 1)[1]
        r = run_cli("--simulation", "--port", port, "--data-dir", str(tmp_path / "second"))
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot serve on 127.0.0.1:" + port in lines[0], r.stderr
    assert not (tmp_path / "second").exists()


def test_lab_from_a_toml_file_with_command_line_overrides(tmp_path):
    config = tmp_path / "bridge.toml"
    config.write_text('simulation = 2\npoll_period = 5.0\nfields = ["temperature"]\n'
                      'data_dir = "{}"\n'.format(tmp_path / "data"))
    process = Process(BRIDGE + ["--config", str(config), "--poll-period", "0.1", "--speed",
                                "20", "--port", "0"])
    try:
        url = process.wait_for_line(SERVING).group(1)
        devices = wait_until(lambda: _all_polled(url), what="both devices polled")
        assert [d["name"] for d in devices] == ["sim0", "sim1"]
        assert {d["poll_period_s"] for d in devices} == {0.1}  # the command line won
        assert {tuple(d["fields"]) for d in devices} == {("temperature",)}
    finally:
        assert process.stop() == 0
    for name in ("sim0", "sim1"):
        assert _rows_of(tmp_path / "data" / name)


def _all_polled(url: str):
    devices = httpx.get(url + "/devices").json()
    return devices if all(d["polls_ok"] >= 2 for d in devices) else None


@pytest.mark.parametrize("text, message", [
    ('[[device]]\nname = "Laser"\naddress = "10.0.0.5"\n', "device name 'Laser'"),
    ('[[device]]\nname = "a"\n', "[[device]] 1: needs an address"),
    ('[[device]]\nname = "a"\naddress = "10.0.0.5:0"\n', "[[device]] 1 (a): bad port"),
    ('[[device]]\naddress = "10.0.0.5"\nadress = "x"\n', "unknown key(s) adress"),
    ('[[device]]\nname = "a"\naddress = "x"\n[[device]]\nname = "a"\naddress = "y"\n',
     "device name a given more than once"),
    ('poll_perod = 1\n', "unknown key(s) poll_perod"),
    ('poll_period = "fast"\n[[device]]\naddress = "x"\n', "poll period"),
    ('[[device]\n', "bridge.toml"),
])
def test_bad_toml_entry_is_one_line_and_nothing_is_written(tmp_path, text, message):
    config = tmp_path / "bridge.toml"
    config.write_text(text)
    r = run_cli("--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("args, message", [
    (("-d", "Laser=10.0.0.5"), "device name 'Laser'"),
    (("-d", "a=10.0.0.5", "-d", "a=10.0.0.6"), "given more than once"),
    (("-d", "a=10.0.0.5:70000"), "device 'a=10.0.0.5:70000': bad port"),
    (("--simulation", "0"), "simulation needs 1 to 32 devices"),
])
def test_bad_device_entry_is_one_line(tmp_path, args, message):
    r = run_cli(*args, "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "data").exists()
