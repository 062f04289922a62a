"""Grafana provisioning files, the Prometheus example config and the systemd unit.

Grafana itself cannot run here, so these are contract tests: the files load,
panels reference provisioned datasources and valid units, and every Infinity
query, sent the way Infinity sends it, gets CSV with the columns it selects.
"""

import json
import pathlib
import shutil
import subprocess
import time

import yaml

from thermostat_ctrl.bridge.web.metrics import CHANNEL_METRICS
from harness import parse_csv, polled, running_bridge

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"
GRAFANA = SCRIPTS / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
UNITS = {"celsius", "amp", "volt", "ohm", "watt", "s", "percentunit", "bool_on_off", "none"}
INFINITY = "yesoreyeram-infinity-datasource"


def datasources() -> dict:
    config = yaml.safe_load((GRAFANA / "provisioning/datasources/thermostat.yaml").read_text())
    assert config["apiVersion"] == 1
    return {d["uid"]: d for d in config["datasources"]}


def targets(dashboard: dict):
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel, target


def test_datasources():
    sources = datasources()
    assert {d["type"] for d in sources.values()} == {INFINITY, "prometheus"}
    infinity = next(d for d in sources.values() if d["type"] == INFINITY)
    assert infinity["jsonData"]["allowedHosts"] == ["http://127.0.0.1:8000"]
    prometheus = next(d for d in sources.values() if d["type"] == "prometheus")
    assert prometheus["url"].startswith("http://")


def test_dashboard_provider():
    config = yaml.safe_load((GRAFANA / "provisioning/dashboards/thermostat.yaml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_dashboards_reference_provisioned_datasources_and_valid_units():
    sources = datasources()
    assert len(DASHBOARDS) == 2
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert "id" not in dashboard and dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        titles = [p["title"] for p in dashboard["panels"]]
        assert titles == ["Temperature", "TEC current", "TEC voltage", "PID output",
                          "PID engaged"]
        for panel, target in targets(dashboard):
            for ref in (panel["datasource"], target["datasource"]):
                assert ref["uid"] in sources and sources[ref["uid"]]["type"] == ref["type"]
            assert panel["fieldConfig"]["defaults"]["unit"] in UNITS
        assert dashboard["panels"][0]["fieldConfig"]["defaults"]["unit"] == "celsius"


def test_prometheus_panels_query_exported_metrics():
    exported = {name for name, _ in CHANNEL_METRICS.values()}
    dashboard = json.loads((GRAFANA / "dashboards/thermostat-prometheus.json").read_text())
    for _, target in targets(dashboard):
        assert target["expr"] in exported


def infinity_targets():
    dashboard = json.loads((GRAFANA / "dashboards/thermostat-infinity.json").read_text())
    return [t for _, t in targets(dashboard)]


def test_infinity_targets_use_backend_parser_time_macros_and_max_points():
    allowed = datasources()["thermostat-infinity"]["jsonData"]["allowedHosts"]
    for target in infinity_targets():
        assert target["parser"] == "backend" and target["type"] == "csv"
        assert any(target["url"].startswith(host) for host in allowed)
        params = {p["key"]: p["value"] for p in target["url_options"]["params"]}
        assert params["from"] == "${__timeFrom}" and params["to"] == "${__timeTo}"
        assert 2 <= int(params["max_points"]) <= 5000
        assert target["columns"][0] == {"selector": "ts", "text": "time",
                                        "type": "timestamp_epoch"}


async def test_infinity_queries_get_the_columns_they_select(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 5)
        now = int(time.time() * 1000)
        for target in infinity_targets():
            params = {p["key"]: p["value"] for p in target["url_options"]["params"]}
            params.update({"from": now - 60_000, "to": now + 1000})
            r = await client.get(target["url"].removeprefix("http://127.0.0.1:8000"),
                                 params=params, headers={"Accept": "text/csv; charset=utf-8",
                                                         "Accept-Encoding": "gzip"})
            assert r.status_code == 200
            rows = parse_csv(r.text)
            assert {c["selector"] for c in target["columns"]} <= set(rows[0])
            assert 2 <= len(rows) <= int(params["max_points"]) + 1
            assert all(now - 60_000 <= int(row[1]) <= now + 1000 for row in rows[1:])


def test_prometheus_example_config():
    config = yaml.safe_load((SCRIPTS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "config", str(SCRIPTS / "prometheus.yml")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr


def test_systemd_unit():
    text = (SCRIPTS / "systemd/thermostat-bridge.service").read_text()
    service = dict(line.split("=", 1) for line in text.splitlines()
                   if "=" in line and not line.startswith("#"))
    assert service["Restart"] == "always"
    assert service.get("DynamicUser") == "yes" or "User" in service
    assert "--data-dir" in service["ExecStart"] and "thermostat_bridge" in service["ExecStart"]
    assert "/home/" not in text
