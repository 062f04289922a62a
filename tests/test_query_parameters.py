"""Every route refuses query parameters it does not take (422 naming them),
and the bridge's own clients (the live page, the Grafana dashboards) send
only parameters their route takes."""

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from harness import bridge_config
from thermostat_ctrl.bridge.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent


async def test_a_misspelt_parameter_is_a_422_naming_it(bridge_client):
    bridge, client = bridge_client
    r = await client.get("/data.csv", params={"start": "garbage"})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", "start"] and error["input"] == "garbage"
    assert "unknown query parameter" in error["msg"] and "from" in error["msg"]
    r = await client.get("/series", params={"from": 0, "form": 1, "fileds": "adc"})
    assert r.status_code == 422
    assert [e["loc"][1] for e in r.json()["detail"]] == ["form", "fileds"]
    ok = await client.get("/series", params={"from": 0, "fields": "temperature"})
    assert ok.status_code == 200


async def test_every_route_refuses_unknown_parameters(bridge_client):
    bridge, client = bridge_client
    spec = (await client.get("/openapi.json")).json()
    paths = ["/"] + [path for path, ops in spec["paths"].items()
                     if "get" in ops and "{" not in path]
    assert {"/", "/series", "/data.csv", "/report", "/health", "/metrics", "/devices",
            "/stream", "/alarms"} <= set(paths)
    for path in paths:
        r = await client.get(path, params={"nosuch": "1"})
        assert r.status_code == 422, (path, r.status_code)
        assert r.json()["detail"][0]["loc"] == ["query", "nosuch"], path
    r = await client.post("/save_once", params={"nosuch": "1"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "nosuch"]


async def test_an_empty_field_list_says_so(bridge_client):
    bridge, client = bridge_client
    for params, words in [({"fields": ""}, "fields is empty"),
                          ({"fields": "temperature,"}, "empty name")]:
        r = await client.get("/series", params=params)
        assert r.status_code == 422
        (error,) = r.json()["detail"]
        assert error["loc"] == ["query", "fields"] and words in error["msg"], error


def _declared(app) -> dict:
    """Query parameters of each path, from the OpenAPI document."""
    spec = app.openapi()
    return {path: {p["name"] for op in ops.values() for p in op.get("parameters", [])
                   if p["in"] == "query"} for path, ops in spec["paths"].items()}


def _dashboard_queries():
    for dashboard in sorted((ROOT / "scripts/grafana/dashboards").glob("*.json")):
        text = json.loads(dashboard.read_text())
        stack = [text]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if "url" in node and isinstance(node.get("url_options"), dict):
                    keys = {p["key"] for p in node["url_options"].get("params", [])}
                    yield dashboard.name, urlsplit(node["url"]).path, keys
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)


def _live_page_queries():
    for path in sorted((ROOT / "thermostat_ctrl/bridge/web/static").glob("*.js")):
        script = path.read_text()
        # Each query URL is one expression: "path?a=" + ... + "&b=" + ...;
        for match in re.finditer(r'"([a-z_./]+)\?', script):
            expression = script[match.start():script.index(";", match.start())]
            yield path.name, "/" + match.group(1).lstrip("/"), set(
                re.findall(r"[?&]([a-z_]+)=", expression))


def test_the_dashboards_and_the_live_page_send_only_known_parameters(tmp_path):
    app = create_app(bridge_config(tmp_path))
    try:
        declared = _declared(app)
        queries = list(_dashboard_queries()) + list(_live_page_queries())
        assert {path for _, path, _ in queries} >= {"/data.csv", "/devices", "/series",
                                                    "/stream"}
        assert any(keys >= {"from", "to", "max_points"} for source, path, keys in queries
                   if source == "live.js" and path == "/series")
        for source, path, keys in queries:
            assert keys <= declared[path], (source, path, keys - declared[path])
    finally:
        app.state.bridge._lock.release()
