"""The shipped Prometheus alerting rules: promtool checks them and runs
their unit tests; a real Prometheus and Alertmanager carry an induced
simulator fault to a webhook receiver."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from browser_kit import served_bridge
from harness import FIRST, Process, free_port, wait_until
from receivers import WebhookReceiver

RULES = Path(__file__).resolve().parent.parent / "scripts" / "prometheus"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian package prometheus)")


@needs_promtool
def test_promtool_checks_the_rules():
    r = subprocess.run(["promtool", "check", "rules", str(RULES / "alerts.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS: 9 rules found" in r.stdout, r.stdout + r.stderr


@needs_promtool
def test_promtool_runs_the_rules_unit_tests():
    r = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=RULES,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_rule_of_the_bridge_has_its_prometheus_alert():
    from thermostat_ctrl.bridge.alarms.rules import RULES as BRIDGE_RULES
    text = (RULES / "alerts.yml").read_text()
    for name in BRIDGE_RULES:
        assert "rule: {}".format(name) in text, name


@pytest.mark.skipif(not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
                    reason="needs the Debian packages prometheus and prometheus-alertmanager")
def test_an_unplugged_sensor_reaches_a_webhook_through_prometheus_and_alertmanager(tmp_path):
    with WebhookReceiver() as hook, served_bridge(tmp_path / "data", simulation=1,
                                                  poll_period=0.2) as (bridge, url):
        am_listen = "127.0.0.1:{}".format(free_port())
        (tmp_path / "alertmanager.yml").write_text(json.dumps({
            "route": {"receiver": "hook", "group_wait": "1s", "group_interval": "1s",
                      "repeat_interval": "1h", "group_by": ["alertname", "device"]},
            "receivers": [{"name": "hook", "webhook_configs": [
                {"url": "http://127.0.0.1:{}/hook".format(hook.port), "send_resolved": True}]}],
        }))
        alertmanager = Process(["prometheus-alertmanager",
                                "--config.file", str(tmp_path / "alertmanager.yml"),
                                "--storage.path", str(tmp_path / "am"),
                                "--web.listen-address", am_listen,
                                "--cluster.listen-address", ""])
        prom_listen = "127.0.0.1:{}".format(free_port())
        shutil.copy(RULES / "alerts.yml", tmp_path / "alerts.yml")
        (tmp_path / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_listen]}]}]},
            "scrape_configs": [{"job_name": "thermostat", "static_configs": [
                {"targets": [url.removeprefix("http://")]}]}],
        }))
        prometheus = Process(["prometheus", "--config.file", str(tmp_path / "prometheus.yml"),
                              "--storage.tsdb.path", str(tmp_path / "tsdb"),
                              "--web.listen-address", prom_listen])
        try:
            def scraped():
                try:
                    r = httpx.get("http://{}/api/v1/query".format(prom_listen),
                                  params={"query": "thermostat_temperature_celsius"}, timeout=5)
                except httpx.TransportError:
                    return False
                return r.is_success and len(r.json()["data"]["result"]) == 2

            wait_until(scraped, timeout=60, what="Prometheus scraping the bridge")
            bridge.devices[FIRST].simulation.sim.faults.unplugged = {1}
            began = time.monotonic()

            def alert(status):
                for body in hook.bodies:
                    for a in body.get("alerts", []):
                        if a["labels"]["alertname"] == "ThermostatSensorOpen" and \
                                a["status"] == status:
                            return a
                return None

            fired = wait_until(lambda: alert("firing"), timeout=60, what="the alert by webhook")
            latency = time.monotonic() - began
            assert fired["labels"]["device"] == FIRST and fired["labels"]["channel"] == "1"
            assert fired["labels"]["severity"] == "critical"
            assert "thermistor open" in fired["annotations"]["summary"]
            bridge.devices[FIRST].simulation.sim.faults.unplugged = set()
            wait_until(lambda: alert("resolved"), timeout=60, what="the resolved alert")
            print("fault to Alertmanager webhook: {:.1f} s".format(latency))
        finally:
            prometheus.stop()
            alertmanager.stop()
