"""Grafana provisioning files, the Prometheus example config and the systemd unit.

Grafana itself cannot run here, so these are contract tests: the files load,
panels reference provisioned datasources, valid units and the ``device``
variable, and every Infinity query, sent the way Infinity sends it, gets the
columns it selects.  The drawing test reads the dashboard and the bridge's
answers together: for each range from 15 minutes to 30 days, Grafana's line
rules (insertNulls, spanNulls) applied to the answers break each line at a
real gap and nowhere in continuous data.
"""

import importlib.util
import json
import math
import pathlib
import re
import shutil
import subprocess
import time

import numpy as np
import yaml

from harness import FIRST, parse_csv, polled, running_bridge
from thermostat_ctrl.bridge.web.routes_alarms import AlarmOut
from thermostat_ctrl.bridge.schema import columns_for
from thermostat_ctrl.bridge.storage.downsample import bucket_width
from thermostat_ctrl.bridge.storage.store import Store
from thermostat_ctrl.bridge.web.metrics import CHANNEL_METRICS

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


def load(kind: str) -> dict:
    return json.loads((GRAFANA / "dashboards/thermostat-{}.json".format(kind)).read_text())


def test_dashboards_are_written_by_their_generator():
    spec = importlib.util.spec_from_file_location("make_dashboards",
                                                  GRAFANA / "make_dashboards.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for kind in ("infinity", "prometheus"):
        text = (GRAFANA / "dashboards/thermostat-{}.json".format(kind)).read_text()
        assert text == generator.render(kind), "run scripts/grafana/make_dashboards.py"


def test_dashboards_reference_provisioned_datasources_and_valid_units():
    sources = datasources()
    assert len(DASHBOARDS) == 2
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert "id" not in dashboard and dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        titles = [p["title"] for p in dashboard["panels"]]
        alarms = (["Channel state"] if "prometheus" in path.name else []) + ["Active alarms"]
        assert titles == ["Data fresh / stale", "Poll errors", "Temperature and setpoint",
                          "Temperature error (T - setpoint)", "TEC current: measured and set",
                          "TEC voltage", "PID output", "PID engaged", *alarms]
        for panel, target in targets(dashboard):
            for ref in (panel["datasource"], target["datasource"]):
                assert ref["uid"] in sources and sources[ref["uid"]]["type"] == ref["type"]
            if panel["type"] in ("timeseries", "stat"):
                assert panel["fieldConfig"]["defaults"]["unit"] in UNITS
        assert dashboard["panels"][2]["fieldConfig"]["defaults"]["unit"] == "celsius"
        (variable,) = dashboard["templating"]["list"]
        assert variable["name"] == "device" and variable["type"] == "query"
        assert variable["datasource"]["uid"] in sources


def test_lines_break_only_where_the_data_says_so():
    """No insertNulls threshold (it cuts a downsampled answer's widely spaced
    rows apart), nulls not spanned (the gap mark breaks the line)."""
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] == "timeseries":
                custom = panel["fieldConfig"]["defaults"]["custom"]
                assert custom.get("insertNulls", False) is False, panel["title"]
                assert custom["spanNulls"] is False, panel["title"]


def test_prometheus_panels_query_exported_metrics_of_the_chosen_device():
    exported = {name for name, _ in CHANNEL_METRICS.values()} | {
        "thermostat_target_temperature_celsius", "thermostat_up",
        "thermostat_poll_errors_total", "thermostat_channel_state", "thermostat_alarm_active"}
    dashboard = load("prometheus")
    assert dashboard["templating"]["list"][0]["query"]["query"] == \
        "label_values(thermostat_up, device)"
    for panel, target in targets(dashboard):
        names = set(re.findall(r"thermostat_[a-z_]+", target["expr"]))
        assert names and names <= exported, target["expr"]
        if panel["type"] == "timeseries":
            assert target["expr"].count('device="$device"') == len(names), target["expr"]


def infinity_targets():
    return [t for _, t in targets(load("infinity"))]


def test_infinity_targets_use_backend_parser_time_macros_device_and_max_points():
    allowed = datasources()["thermostat-infinity"]["jsonData"]["allowedHosts"]
    variable = load("infinity")["templating"]["list"][0]["query"]
    assert variable["queryType"] == "infinity"
    assert variable["infinityQuery"]["url"] == "http://127.0.0.1:8000/devices"
    assert variable["infinityQuery"]["columns"][0]["selector"] == "name"
    for target in infinity_targets():
        assert target["parser"] == "backend"
        assert any(target["url"].startswith(host) for host in allowed)
        if target["url"].endswith("/devices"):
            assert target["type"] == "json"
            continue
        if target["url"].endswith("/alarms"):
            assert target["type"] == "json"
            assert target["url_options"]["params"] == [{"key": "device", "value": "${device}"}]
            continue
        assert target["type"] == "csv"
        params = {p["key"]: p["value"] for p in target["url_options"]["params"]}
        assert params["from"] == "${__timeFrom}" and params["to"] == "${__timeTo}"
        assert params["device"] == "${device}"
        assert 2 <= int(params["max_points"]) <= 5000
        assert target["columns"][0] == {"selector": "ts", "text": "time",
                                        "type": "timestamp_epoch"}


def infinity_request(target: dict, start: int, end: int, device: str = FIRST) -> tuple:
    """(path, params) of a target as Infinity sends it, variables interpolated."""
    values = {"${__timeFrom}": str(start), "${__timeTo}": str(end), "${device}": device}
    params = {p["key"]: values.get(p["value"], p["value"])
              for p in target["url_options"].get("params", [])}
    return target["url"].removeprefix("http://127.0.0.1:8000"), params


HEADERS = {"Accept": "text/csv; charset=utf-8", "Accept-Encoding": "gzip"}


async def test_infinity_queries_get_the_columns_they_select(tmp_path):
    async with running_bridge(tmp_path, simulation=2) as (bridge, client):
        await polled(bridge, 5)
        now = int(time.time() * 1000)
        for target in infinity_targets():
            for device in bridge.devices:
                path, params = infinity_request(target, now - 60_000, now + 1000, device)
                r = await client.get(path, params=params, headers=HEADERS)
                assert r.status_code == 200
                if path == "/devices":
                    rows = r.json()
                    assert [row["name"] for row in rows] == list(bridge.devices)
                    assert all({c["selector"] for c in target["columns"]} <= set(row)
                               for row in rows)
                    continue
                if path == "/alarms":
                    assert r.json() == []  # the simulation has none; the columns exist:
                    assert {c["selector"] for c in target["columns"]} <= set(
                        AlarmOut.model_fields)
                    continue
                rows = parse_csv(r.text)
                assert {c["selector"] for c in target["columns"]} <= set(rows[0])
                assert 2 <= len(rows) <= int(params["max_points"]) + 1
                assert all(now - 60_000 <= int(row[1]) <= now + 1000 for row in rows[1:])


# ---------------------------------------------- drawing: gaps and continuous data

PERIOD_S = 30  # the history's poll period: 2880 rows a day
DAY = 86_400_000
RANGES = {"15 min": 900_000, "1 h": 3_600_000, "24 h": DAY, "7 d": 7 * DAY, "30 d": 30 * DAY}


def history_plan(start: int) -> tuple[dict, dict, list]:
    """For each range: a window holding one gap of a fifth of it, and a
    window without any; the gaps, as (last sample before, first after)."""
    gapped, continuous, gaps = {}, {}, []
    gapped["30 d"] = (start, start + 30 * DAY)
    for name, length in RANGES.items():
        continuous[name] = (start + 31 * DAY, start + 31 * DAY + length)
    at = start + 62 * DAY
    for name in ("7 d", "24 h", "1 h", "15 min"):
        gapped[name] = (at, at + RANGES[name])
        at += RANGES[name] + DAY
    for name, (a, b) in gapped.items():
        middle, half = (a + b) // 2, RANGES[name] // 10
        gaps.append((middle - half, middle + half))
    return gapped, continuous, gaps


def write_history(device_dir, start: int, end: int, gaps: list) -> None:
    """Rows every PERIOD_S from ``start`` to ``end`` but inside ``gaps``,
    through the bridge's own store."""
    columns = columns_for(["temperature", "target", "tec_i", "i_set", "tec_u_meas",
                           "pid_output", "pid_engaged"])
    store = Store(str(device_dir), columns, 10, PERIOD_S)
    ts = np.arange(start, end, PERIOD_S * 1000, dtype=np.int64)
    for a, b in gaps:
        ts = ts[(ts < a) | (ts > b)]
    t = (ts - start) / 1000.0
    target = np.where((t // 20_000) % 2 == 0, 25.0, 30.0)
    for i, when in enumerate(ts.tolist()):
        temp = target[i] + 0.05 * math.sin(t[i] / 3000)
        store.append(when, columns, np.array([temp, temp + 1, target[i], target[i] + 1,
                                               0.5, 0.6, 0.5, 0.6, 1.0, 1.2, 0.5, 0.6, 1, 1]))
    store.close()


def grafana_breaks(rows: list, column: int, custom: dict) -> list:
    """Where Grafana's time-series panel breaks the line of one column:
    (ts before, ts after) of each break, by its insertNulls/spanNulls rules."""
    points = [(int(row[1]), row[column] if row[column] != "" else None) for row in rows[1:]]
    threshold = custom.get("insertNulls", False)
    if threshold is not False:
        filled = []
        for point in points:
            if filled and point[0] - filled[-1][0] > threshold:
                filled.append((filled[-1][0] + 1, None))
            filled.append(point)
        points = filled
    breaks, last, null_seen = [], None, False
    for when, value in points:
        if value is None:
            null_seen = True
            continue
        if last is not None and null_seen and custom.get("spanNulls") is not True:
            breaks.append((last, when))
        last, null_seen = when, False
    return breaks


async def test_panels_draw_continuous_lines_and_break_only_at_real_gaps(tmp_path):
    start = (int(time.time() * 1000) // DAY - 80) * DAY
    gapped, continuous, gaps = history_plan(start)
    write_history(tmp_path / FIRST, start, start + 78 * DAY, gaps)
    panels = [p for p in load("infinity")["panels"] if p["type"] == "timeseries"]
    async with running_bridge(tmp_path, poll_period=PERIOD_S) as (bridge, client):
        for name in RANGES:
            for window, expected in ((continuous[name], []), (gapped[name], [gaps_in(
                    gapped[name], gaps)])):
                for panel in panels:
                    custom = panel["fieldConfig"]["defaults"]["custom"]
                    (target,) = panel["targets"]
                    path, params = infinity_request(target, *window)
                    r = await client.get(path, params=params, headers=HEADERS)
                    assert r.status_code == 200, r.text
                    rows = parse_csv(r.text)
                    assert len(rows) - 1 <= int(params["max_points"])
                    for column in target["columns"][1:]:
                        index = rows[0].index(column["selector"])
                        breaks = grafana_breaks(rows, index, custom)
                        where = (name, panel["title"], column["text"], window)
                        if not expected:
                            assert breaks == [], where
                            continue
                        ((before, after),) = breaks
                        ((gap_from, gap_to),) = expected
                        # the break spans the gap, and no more than a sample or a
                        # bucket beyond it on either side
                        slack = max(PERIOD_S * 1000, bucket_width(*window, int(
                            params["max_points"])))
                        assert gap_from - slack <= before < gap_from, (where, breaks)
                        assert gap_to < after <= gap_to + slack, (where, breaks)


def gaps_in(window: tuple, gaps: list) -> tuple:
    (gap,) = [g for g in gaps if window[0] < g[0] < window[1]]
    return gap


def test_prometheus_example_config():
    config = yaml.safe_load((SCRIPTS / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "config", str(SCRIPTS / "prometheus" / "prometheus.yml")],
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
