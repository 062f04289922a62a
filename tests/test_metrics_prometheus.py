"""/metrics: parsed by prometheus_client, linted by promtool, scraped by a real Prometheus."""

import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faultkit import free_port, wait_for, wait_until
from test_bridge_app import polled, running_bridge
from test_bridge_cli import Process, bridge_process

CHANNEL_GAUGES = {
    "thermostat_temperature_celsius", "thermostat_thermistor_resistance_ohms",
    "thermostat_adc_input_volts", "thermostat_tec_current_amperes",
    "thermostat_tec_voltage_volts", "thermostat_current_setpoint_amperes",
    "thermostat_pid_output_amperes", "thermostat_pid_engaged",
}


def families(text: str) -> dict:
    """Metric families by name (counters under their name without ``_total``)."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_values(family) -> dict:
    """{(sample name, labels as a sorted tuple): value} of a family."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


async def test_metrics_exposition(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 12)  # past the first PID target refresh cycle
        r = await client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        found = families(r.text)
        for name in CHANNEL_GAUGES | {"thermostat_target_temperature_celsius"}:
            family = found[name]
            assert family.type == "gauge"
            assert sorted(s.labels["channel"] for s in family.samples) == ["0", "1"], name
        temperature = sample_values(found["thermostat_temperature_celsius"])
        assert all(10 < v < 40 for v in temperature.values())
        assert {s.value for s in found["thermostat_pid_engaged"].samples} == {1.0}
        assert {s.value for s in found["thermostat_target_temperature_celsius"].samples} \
            == {24.0, 26.0}
        assert found["thermostat_up"].samples[0].value == 1.0
        assert 0 <= found["thermostat_sample_age_seconds"].samples[0].value < 1
        last = found["thermostat_last_poll_timestamp_seconds"].samples[0].value
        assert abs(last - time.time()) < 5
        assert found["thermostat_poll_duration_seconds"].samples[0].value > 0
        polls = found["thermostat_polls"]
        assert polls.type == "counter" and polls.samples[0].name == "thermostat_polls_total"
        assert polls.samples[0].value >= 12
        for name in ("thermostat_csv_rows_written", "thermostat_csv_write_errors",
                     "thermostat_poll_errors", "thermostat_polls_skipped"):
            assert found[name].type == "counter"
        assert found["thermostat_csv_rows_written"].samples[0].value >= 12
        info = found["thermostat_info"]  # an info metric is a gauge in the text format
        assert info.samples[0].value == 1 and info.samples[0].labels["firmware"] == "2025"
        assert info.samples[0].labels["hwrev"].startswith("v")


async def test_metrics_is_a_plain_route(bridge_app_client):
    client = bridge_app_client
    r = await client.get("/metrics", follow_redirects=False)
    assert r.status_code == 200 and "# TYPE thermostat_up gauge" in r.text


@pytest.fixture
async def bridge_app_client(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 2)
        yield client


async def test_stale_values_are_not_exported(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 3)
        bridge.simulation.sim.faults.hang = True

        async def stale():
            found = families((await client.get("/metrics")).text)
            return found if found["thermostat_up"].samples[0].value == 0 else None

        found = await wait_for(stale, what="thermostat_up 0")
        assert not CHANNEL_GAUGES & set(found)
        assert "thermostat_target_temperature_celsius" not in found
        assert found["thermostat_sample_age_seconds"].samples[0].value > 3 * 0.05
        assert "thermostat_last_poll_timestamp_seconds" in found
        await wait_for(lambda: bridge.poller.failures["timeout"] >= 1, what="a timeout")
        found = families((await client.get("/metrics")).text)
        errors = sample_values(found["thermostat_poll_errors"])
        assert errors[("thermostat_poll_errors_total", (("reason", "timeout"),))] >= 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_promtool_finds_no_lint_problems(bridge_app_client):
    text = (await bridge_app_client.get("/metrics")).text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="the prometheus binary is not installed (Debian package prometheus)")
def test_real_prometheus_scrapes_both_channels(tmp_path):
    with bridge_process(tmp_path / "data") as (bridge, url):
        target = url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: thermostat\n"
            "    static_configs: [{targets: ['%s'], labels: {device: thermostat0}}]\n" % target)
        listen = "127.0.0.1:{}".format(free_port())
        prometheus = Process(["prometheus", "--config.file", str(config),
                              "--storage.tsdb.path", str(tmp_path / "tsdb"),
                              "--web.listen-address", listen])
        api = "http://{}/api/v1/".format(listen)
        try:
            def both_channels():
                try:
                    r = httpx.get(api + "query_range", timeout=5, params={
                        "query": "thermostat_temperature_celsius",
                        "start": time.time() - 120, "end": time.time(), "step": "1s"})
                except httpx.TransportError:
                    return None
                result = r.json().get("data", {}).get("result", []) if r.is_success else []
                return result if len(result) == 2 and all(s["values"] for s in result) else None

            result = wait_until(both_channels, timeout=60, what="Prometheus range query")
            assert sorted(s["metric"]["channel"] for s in result) == ["0", "1"]
            for series in result:
                assert series["metric"]["device"] == "thermostat0"
                assert series["metric"]["job"] == "thermostat"
                assert all(10 < float(v) < 40 for _, v in series["values"])
            (up,) = httpx.get(api + "query", params={"query": "thermostat_up"}).json()["data"][
                "result"]
            assert up["value"][1] == "1"
        finally:
            prometheus.stop()
