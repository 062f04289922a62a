#!/usr/bin/env python3
"""Write the two provisioned dashboards (dashboards/*.json) from one description.

Both show, for the device chosen in the ``device`` variable: temperature with
its setpoint, the error (temperature minus setpoint), TEC current measured
and set, TEC voltage, PID output and PID engaged per channel; and one stat
per device for "data fresh / stale" and for its poll errors.  The Infinity
dashboard reads the bridge (``/data.csv``, ``/devices``), the Prometheus one
its metrics.  Lines are broken only where an answer says so (a null, the
bridge's gap mark, or Prometheus' staleness): no ``insertNulls`` threshold,
which would cut a downsampled answer's widely spaced rows apart.

    python scripts/grafana/make_dashboards.py   # after editing this file
"""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
BRIDGE = "http://127.0.0.1:8000"
INFINITY = {"type": "yesoreyeram-infinity-datasource", "uid": "thermostat-infinity"}
PROMETHEUS = {"type": "prometheus", "uid": "thermostat-prom"}
#: Rows asked of the bridge per panel (about the pixels of a wide panel).
MAX_POINTS = 2000
CHANNELS = (0, 1)

#: (title, unit, [(bridge field, metric, legend prefix)], width); the error
#: panel is computed from temperature and setpoint.
SERIES_PANELS = [
    ("Temperature and setpoint", "celsius",
     [("temperature", "thermostat_temperature_celsius", "T"),
      ("target", "thermostat_target_temperature_celsius", "setpoint")], 24),
    ("Temperature error (T - setpoint)", "celsius", "error", 24),
    ("TEC current: measured and set", "amp",
     [("tec_i", "thermostat_tec_current_amperes", "measured"),
      ("i_set", "thermostat_current_setpoint_amperes", "set")], 12),
    ("TEC voltage", "volt", [("tec_u_meas", "thermostat_tec_voltage_volts", "U")], 12),
    ("PID output", "amp", [("pid_output", "thermostat_pid_output_amperes", "output")], 12),
    ("PID engaged", "bool_on_off", [("pid_engaged", "thermostat_pid_engaged", "engaged")], 12),
]
STATUS_COLORS = [("ok", "fresh", "green"), ("stale", "stale", "red"),
                 ("no data", "no data", "orange"), ("failed", "failed", "red")]


def _line_config(unit: str) -> dict:
    return {"defaults": {"unit": unit, "decimals": 4 if unit == "celsius" else None,
                         "custom": {"drawStyle": "line", "lineInterpolation": "linear",
                                    "spanNulls": False, "insertNulls": False,
                                    "showPoints": "never"}},
            "overrides": []}


def _infinity_target(ref: str, fields: list, columns: list) -> dict:
    params = [("from", "${__timeFrom}"), ("to", "${__timeTo}"), ("device", "${device}"),
              ("fields", ",".join(fields)), ("max_points", str(MAX_POINTS))]
    return {"refId": ref, "datasource": INFINITY, "type": "csv", "source": "url",
            "parser": "backend", "format": "timeseries", "url": BRIDGE + "/data.csv",
            "url_options": {"method": "GET", "data": "",
                            "params": [{"key": k, "value": v} for k, v in params]},
            "columns": [{"selector": "ts", "text": "time", "type": "timestamp_epoch"}]
            + [{"selector": s, "text": t, "type": "number"} for s, t in columns],
            "root_selector": "", "filters": []}


def _devices_target(column: str, kind: str) -> dict:
    return {"refId": "A", "datasource": INFINITY, "type": "json", "source": "url",
            "parser": "backend", "format": "table", "url": BRIDGE + "/devices",
            "url_options": {"method": "GET", "data": ""},
            "columns": [{"selector": "name", "text": "name", "type": "string"},
                        {"selector": column, "text": column, "type": kind}],
            "root_selector": "", "filters": []}


def _series_targets(kind: str, series) -> tuple[list, list]:
    """Targets and transformations of one time-series panel."""
    if series == "error":
        if kind == "prometheus":
            return [{"refId": "A", "datasource": PROMETHEUS, "legendFormat": "error ch{{channel}}",
                     "expr": 'thermostat_temperature_celsius{device="$device"} - on(device, channel)'
                             ' thermostat_target_temperature_celsius{device="$device"}'}], []
        columns = [("{}_ch{}".format(f, ch), "{} ch{}".format(label, ch))
                   for f, label in (("temperature", "T"), ("target", "setpoint"))
                   for ch in CHANNELS]
        calculations = [{"id": "calculateField", "options": {
            "mode": "binary", "alias": "error ch{}".format(ch),
            "binary": {"left": "T ch{}".format(ch), "operator": "-",
                       "right": "setpoint ch{}".format(ch)}}} for ch in CHANNELS]
        hide = {"id": "organize", "options": {"excludeByName": {t: True for _, t in columns}}}
        return [_infinity_target("A", ["temperature", "target"], columns)], calculations + [hide]
    if kind == "prometheus":
        return [{"refId": chr(65 + i), "datasource": PROMETHEUS,
                 "expr": '{}{{device="$device"}}'.format(metric),
                 "legendFormat": "{} ch{{{{channel}}}}".format(label)}
                for i, (_, metric, label) in enumerate(series)], []
    columns = [("{}_ch{}".format(f, ch), "{} ch{}".format(label, ch))
               for f, _, label in series for ch in CHANNELS]
    return [_infinity_target("A", [f for f, _, _ in series], columns)], []


def _stat(panel_id: int, title: str, x: int, kind: str, what: str) -> dict:
    source = INFINITY if kind == "infinity" else PROMETHEUS
    panel = {"id": panel_id, "type": "stat", "title": title, "datasource": source,
             "gridPos": {"x": x, "y": 0, "w": 12, "h": 4},
             "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                           "values": kind == "infinity"},
                         "colorMode": "background", "graphMode": "none",
                         "textMode": "value_and_name", "orientation": "horizontal"}}
    if what == "fresh":
        if kind == "infinity":
            target = _devices_target("status", "string")
            mappings = [{"type": "value", "options": {
                value: {"text": text, "color": color, "index": i}
                for i, (value, text, color) in enumerate(STATUS_COLORS)}}]
            panel["options"]["reduceOptions"]["fields"] = "/^status$/"
        else:
            target = {"refId": "A", "datasource": source, "expr": "thermostat_up",
                      "legendFormat": "{{device}}", "instant": True}
            mappings = [{"type": "value", "options": {
                "1": {"text": "fresh", "color": "green", "index": 0},
                "0": {"text": "stale", "color": "red", "index": 1}}}]
        defaults = {"unit": "none", "mappings": mappings}
    else:
        if kind == "infinity":
            target = _devices_target("polls_failed", "number")
            panel["options"]["reduceOptions"]["fields"] = "/^polls_failed$/"
        else:
            target = {"refId": "A", "datasource": source, "legendFormat": "{{device}}",
                      "instant": True,
                      "expr": "sum by (device) (thermostat_poll_errors_total)"
                              " or sum by (device) (thermostat_up * 0)"}
        defaults = {"unit": "none", "thresholds": {"mode": "absolute", "steps": [
            {"color": "green", "value": None}, {"color": "red", "value": 1}]}}
    if kind == "infinity":
        defaults["displayName"] = "${__data.fields.name}"
    panel["fieldConfig"] = {"defaults": defaults, "overrides": []}
    panel["targets"] = [target]
    return panel


#: Regulation state (thermostat_channel_state) -> (code in the state timeline, colour).
STATES = {"off": (0, "gray"), "settling": (1, "blue"), "in_band": (2, "green"),
          "out_of_band": (3, "orange"), "fault": (4, "red")}


def _alarm_panels(kind: str, y: int) -> list:
    """The channels' state timeline (Prometheus) and the active alarms (both)."""
    panels = []
    width = 24
    if kind == "prometheus":
        expr = " or ".join('thermostat_channel_state{{device="$device",state="{}"}} * {}'.format(
            state, code) for state, (code, _) in STATES.items())
        mappings = [{"type": "value", "options": {str(code): {
            "text": state.replace("_", " "), "color": color, "index": code}
            for state, (code, color) in STATES.items()}}]
        panels.append({
            "type": "state-timeline", "title": "Channel state", "datasource": PROMETHEUS,
            "gridPos": {"x": 0, "y": y, "w": 12, "h": 6},
            "targets": [{"refId": "A", "datasource": PROMETHEUS, "legendFormat": "ch{{channel}}",
                         "expr": "sum by (channel) ({})".format(expr)}],
            "fieldConfig": {"defaults": {"mappings": mappings, "color": {"mode": "fixed"}},
                            "overrides": []},
            "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8}})
        width = 12
        target = {"refId": "A", "datasource": PROMETHEUS, "instant": True, "format": "table",
                  "expr": 'thermostat_alarm_active{device="$device"} == 1'}
        organize = [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True,
                              "instance": True}}}]
    else:
        target = {"refId": "A", "datasource": INFINITY, "type": "json", "source": "url",
                  "parser": "backend", "format": "table", "url": BRIDGE + "/alarms",
                  "url_options": {"method": "GET", "data": "",
                                  "params": [{"key": "device", "value": "${device}"}]},
                  "columns": [{"selector": k, "text": k, "type": t} for k, t in (
                      ("severity", "string"), ("message", "string"),
                      ("first_seen", "timestamp_epoch"), ("acknowledged_by", "string"))],
                  "root_selector": "", "filters": []}
        organize = []
    panel = {"type": "table", "title": "Active alarms",
             "datasource": PROMETHEUS if kind == "prometheus" else INFINITY,
             "gridPos": {"x": 24 - width, "y": y, "w": width, "h": 6}, "targets": [target],
             "fieldConfig": {"defaults": {}, "overrides": []},
             "options": {"showHeader": True, "footer": {"show": False}}}
    if organize:
        panel["transformations"] = organize
    panels.append(panel)
    return panels


def _variable(kind: str) -> dict:
    common = {"name": "device", "label": "Device", "type": "query", "refresh": 1,
              "multi": False, "includeAll": False, "sort": 1, "current": {}, "options": [],
              "hide": 0}
    if kind == "prometheus":
        query = "label_values(thermostat_up, device)"
        return {**common, "datasource": PROMETHEUS, "definition": query,
                "query": {"query": query, "refId": "device"}}
    return {**common, "datasource": INFINITY, "definition": "GET /devices (name)",
            "query": {"queryType": "infinity", "query": "", "infinityQuery": {
                "refId": "variable", "type": "json", "source": "url", "parser": "backend",
                "format": "table", "url": BRIDGE + "/devices",
                "url_options": {"method": "GET", "data": ""}, "root_selector": "",
                "columns": [{"selector": "name", "text": "name", "type": "string"}],
                "filters": []}}}


def dashboard(kind: str) -> dict:
    """The dashboard reading through ``kind`` (``infinity`` or ``prometheus``)."""
    panels = [_stat(1, "Data fresh / stale", 0, kind, "fresh"),
              _stat(2, "Poll errors", 12, kind, "errors")]
    x, y = 0, 4
    for title, unit, series, width in SERIES_PANELS:
        targets, transformations = _series_targets(kind, series)
        panel = {"id": len(panels) + 1, "type": "timeseries", "title": title,
                 "datasource": INFINITY if kind == "infinity" else PROMETHEUS,
                 "gridPos": {"x": x, "y": y, "w": width, "h": 8},
                 "targets": targets, "fieldConfig": _line_config(unit),
                 "options": {"legend": {"displayMode": "list", "placement": "bottom",
                                        "showLegend": True},
                             "tooltip": {"mode": "multi", "sort": "none"}}}
        if panel["fieldConfig"]["defaults"]["decimals"] is None:
            del panel["fieldConfig"]["defaults"]["decimals"]
        if transformations:
            panel["transformations"] = transformations
        panels.append(panel)
        x += width
        if x >= 24:
            x, y = 0, y + 8
    for panel in _alarm_panels(kind, y if x == 0 else y + 8):
        panels.append({"id": len(panels) + 1, **panel})
    title = "Thermostat (bridge CSV)" if kind == "infinity" else "Thermostat (Prometheus)"
    return {"uid": "thermostat-" + kind, "title": title, "tags": ["thermostat"],
            "timezone": "browser", "schemaVersion": 39, "version": 2, "editable": True,
            "refresh": "5s", "time": {"from": "now-15m", "to": "now"},
            "templating": {"list": [_variable(kind)]}, "annotations": {"list": []},
            "panels": panels}


def render(kind: str) -> str:
    """The JSON text of :func:`dashboard` as the file holds it."""
    return json.dumps(dashboard(kind), indent=2) + "\n"


def main() -> None:
    for kind in ("infinity", "prometheus"):
        (HERE / "dashboards" / "thermostat-{}.json".format(kind)).write_text(render(kind))


if __name__ == "__main__":
    main()
