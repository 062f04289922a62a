"""/metrics: parsed by prometheus_client, linted by promtool, scraped by a real Prometheus."""

import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import (Process, bridge_process, free_port, only, polled, running_bridge, wait_for,
                     wait_until)

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


DEVICES = ["sim0", "sim1"]
#: Series of the bridge itself, without a device label.
BRIDGE_WIDE = {"thermostat_bus_delivered", "thermostat_bus_dropped", "thermostat_bus_queued",
               "thermostat_alarm_rule_evaluations"}


async def test_metrics_exposition(tmp_path):
    async with running_bridge(tmp_path, simulation=2) as (bridge, client):
        await polled(bridge, 12)  # past the first PID target refresh cycle
        await wait_for(lambda: all(d.store.rows_written >= 12 for d in bridge.devices.values()),
                       what="12 rows stored")  # the store writes on its own thread
        r = await client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        found = families(r.text)
        for name in CHANNEL_GAUGES | {"thermostat_target_temperature_celsius"}:
            family = found[name]
            assert family.type == "gauge"
            assert sorted((s.labels["device"], s.labels["channel"]) for s in family.samples) \
                == [(d, ch) for d in DEVICES for ch in "01"], name
        for name, family in found.items():
            for sample in family.samples:
                if name in BRIDGE_WIDE:
                    assert "device" not in sample.labels, sample
                else:
                    assert sample.labels["device"] in DEVICES, sample
        temperature = sample_values(found["thermostat_temperature_celsius"])
        assert all(10 < v < 40 for v in temperature.values())
        assert {s.value for s in found["thermostat_pid_engaged"].samples} == {1.0}
        targets = {(s.labels["device"], s.labels["channel"]): s.value
                   for s in found["thermostat_target_temperature_celsius"].samples}
        # The simulated devices' targets differ (OFFSET_C apart).
        assert targets == {("sim0", "0"): 24.0, ("sim0", "1"): 26.0,
                           ("sim1", "0"): 25.5, ("sim1", "1"): 27.5}
        for device in DEVICES:
            labels = (("device", device),)
            values = {name: sample_values(found[name]) for name in found}
            assert values["thermostat_up"][("thermostat_up", labels)] == 1.0
            assert 0 <= values["thermostat_sample_age_seconds"][
                ("thermostat_sample_age_seconds", labels)] < 1
            last = values["thermostat_last_poll_timestamp_seconds"][
                ("thermostat_last_poll_timestamp_seconds", labels)]
            assert abs(last - time.time()) < 5
            assert values["thermostat_poll_duration_seconds"][
                ("thermostat_poll_duration_seconds", labels)] > 0
            assert values["thermostat_polls"][("thermostat_polls_total", labels)] >= 12
            assert values["thermostat_csv_rows_written"][
                ("thermostat_csv_rows_written_total", labels)] >= 12
        for name in ("thermostat_polls", "thermostat_csv_rows_written",
                     "thermostat_csv_write_errors", "thermostat_poll_errors",
                     "thermostat_polls_skipped", "thermostat_bus_delivered",
                     "thermostat_bus_dropped"):
            assert found[name].type == "counter", name
        consumers = {s.labels["consumer"] for s in found["thermostat_bus_delivered"].samples}
        assert {"store", "render"} <= consumers
        info = found["thermostat_info"]  # an info metric is a gauge in the text format
        assert sorted(s.labels["device"] for s in info.samples) == DEVICES
        assert all(s.value == 1 and s.labels["firmware"] == "2025"
                   and s.labels["hwrev"].startswith("v") for s in info.samples)


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
        only(bridge).simulation.sim.faults.hang = True

        async def stale():
            found = families((await client.get("/metrics")).text)
            return found if found["thermostat_up"].samples[0].value == 0 else None


        found = await wait_for(stale, what="thermostat_up 0")
        assert not CHANNEL_GAUGES & set(found)
        assert "thermostat_target_temperature_celsius" not in found
        assert found["thermostat_sample_age_seconds"].samples[0].value > 3 * 0.05
        assert "thermostat_last_poll_timestamp_seconds" in found
        await wait_for(lambda: only(bridge).poller.failures["timeout"] >= 1, what="a timeout")
        found = families((await client.get("/metrics")).text)
        errors = sample_values(found["thermostat_poll_errors"])
        assert errors[("thermostat_poll_errors_total",
                       (("device", "sim0"), ("reason", "timeout")))] >= 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_promtool_finds_no_lint_problems(bridge_app_client):
    text = (await bridge_app_client.get("/metrics")).text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="the prometheus binary is not installed (Debian package prometheus)")
def test_real_prometheus_scrapes_every_device_and_channel(tmp_path):
    with bridge_process(tmp_path / "data", simulation=2) as (bridge, url):
        target = url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: thermostat\n"
            "    static_configs: [{targets: ['%s']}]\n" % target)
        listen = "127.0.0.1:{}".format(free_port())
        prometheus = Process(["prometheus", "--config.file", str(config),
                              "--storage.tsdb.path", str(tmp_path / "tsdb"),
                              "--web.listen-address", listen])
        api = "http://{}/api/v1/".format(listen)
        try:
            def every_series():
                try:
                    r = httpx.get(api + "query_range", timeout=5, params={
                        "query": "thermostat_temperature_celsius",
                        "start": time.time() - 120, "end": time.time(), "step": "1s"})
                except httpx.TransportError:
                    return None
                result = r.json().get("data", {}).get("result", []) if r.is_success else []
                return result if len(result) == 4 and all(s["values"] for s in result) else None

            result = wait_until(every_series, timeout=60, what="Prometheus range query")
            assert sorted((s["metric"]["device"], s["metric"]["channel"]) for s in result) \
                == [(d, ch) for d in DEVICES for ch in "01"]
            for series in result:
                assert series["metric"]["job"] == "thermostat"
                assert all(10 < float(v) < 40 for _, v in series["values"])
            up = httpx.get(api + "query", params={"query": "thermostat_up"}).json()["data"][
                "result"]
            assert sorted((u["metric"]["device"], u["value"][1]) for u in up) \
                == [(d, "1") for d in DEVICES]
        finally:
            prometheus.stop()
