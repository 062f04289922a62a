"""The bridge's HTTP API against the in-process simulator (fast simulated time)."""

import asyncio
import json
import math
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thermostat_ctrl.bridge import schema
from thermostat_ctrl.bridge.storage.csvformat import iso_time
from thermostat_ctrl.bridge.web import render
from thermostat_ctrl.bridge.web.app import create_app

from harness import FIRST, bridge_config, only, parse_csv, polled, running_bridge, wait_for, wait_until


# ---------------------------------------------------------------- endpoints

async def test_report_and_health(bridge_client):
    bridge, client = bridge_client
    r = await client.get("/report")
    assert r.status_code == 200
    body = r.json()
    assert body["time"] == iso_time(body["ts"])
    assert [c["channel"] for c in body["channels"]] == [0, 1]
    assert isinstance(body["channels"][0]["temperature"], float)
    assert body["channels"][0]["pid_engaged"] is True
    r = await client.get("/health")
    assert r.status_code == 200
    whole = r.json()
    assert whole["status"] == "ok" and [d["name"] for d in whole["devices"]] == ["sim0"]
    assert whole["consumers"]["store"]["dropped"] == 0
    health = whole["devices"][0]
    assert (await client.get("/health", params={"device": "sim0"})).json()["name"] \
        == "sim0"
    assert health["status"] == "ok" and health["connected"] and health["simulation"]
    assert health["firmware"] == "2025"
    assert health["polls_ok"] >= 5 and health["csv_write_errors"] == 0
    assert health["fields"][:3] == [schema.DEVICE_TIME, "interval", "adc"]


async def test_series_rows(bridge_client):
    bridge, client = bridge_client
    r = await client.get("/series")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    rows = r.json()
    assert len(rows) >= 5
    columns = schema.columns_for(only(bridge).poller.fields)
    assert list(rows[0]) == ["time", "ts", *columns]
    ts = [row["ts"] for row in rows]
    assert ts == sorted(set(ts))
    for row in rows:
        assert row["time"] == iso_time(row["ts"])
        assert row["pid_engaged_ch0"] == 1 and row["pid_engaged_ch1"] == 1
        assert 10 < row["temperature_ch0"] < 40
        assert row["device_time_ch0"] > 0


async def test_data_csv_matches_log_format(bridge_client, tmp_path):
    bridge, client = bridge_client
    r = await client.get("/data.csv", headers={"Accept": "text/csv; charset=utf-8"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    rows = parse_csv(r.text)
    assert rows[0] == ["time", "ts", *schema.columns_for(only(bridge).poller.fields)]
    assert len(rows) >= 6
    for row in rows[1:]:
        assert row[0] == iso_time(int(row[1]))
        assert row[1].isdigit()
    # The served rows are byte-identical to the CSV log's rows.
    logged = (tmp_path / FIRST / "thermostat-{}.csv".format(rows[1][0][:10])).read_text()
    assert logged.splitlines()[0] == ",".join(rows[0])
    log_lines = set(logged.splitlines()[1:])
    assert all(",".join(row) in log_lines for row in rows[1:] if row[0][:10] == rows[1][0][:10])


async def test_data_csv_gzip(bridge_client):
    bridge, client = bridge_client
    await polled(bridge, 40)  # enough rows for the body to be worth compressing
    r = await client.get("/data.csv", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    plain = await client.get("/data.csv", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert parse_csv(r.text)[0] == parse_csv(plain.text)[0]


async def test_from_to_inclusive_and_fields(bridge_client):
    bridge, client = bridge_client
    rows = (await client.get("/series")).json()
    first, last = rows[1]["ts"], rows[3]["ts"]
    r = await client.get("/series", params={"from": first, "to": last,
                                            "fields": "temperature,tec_i"})
    got = r.json()
    assert [row["ts"] for row in got] == [row["ts"] for row in rows[1:4]]
    assert list(got[0]) == ["time", "ts", "temperature_ch0", "temperature_ch1",
                            "tec_i_ch0", "tec_i_ch1"]
    assert got[0]["temperature_ch0"] == rows[1]["temperature_ch0"]
    csv_rows = parse_csv((await client.get("/data.csv", params={
        "from": first, "to": last, "fields": "temperature"})).text)
    assert [int(row[1]) for row in csv_rows[1:]] == [row["ts"] for row in rows[1:4]]


async def test_max_points_keeps_extremes(bridge_client):
    bridge, client = bridge_client
    await polled(bridge, 40)
    raw = (await client.get("/series", params={"fields": "temperature"})).json()
    start, end = raw[0]["ts"], raw[-1]["ts"]
    params = {"from": start, "to": end, "fields": "temperature", "max_points": 6}
    down = (await client.get("/series", params=params)).json()
    assert 2 <= len(down) <= 6
    for column in ("temperature_ch0", "temperature_ch1"):
        for extreme in (min, max):
            assert (extreme(r[column] for r in down if r[column] is not None)
                    == extreme(r[column] for r in raw if r[column] is not None))
    rows = parse_csv((await client.get("/data.csv", params=params)).text)
    assert 3 <= len(rows) <= 7


async def test_save_once(bridge_client):
    bridge, client = bridge_client
    r = await client.post("/save_once")
    assert r.status_code == 200
    row = r.json()
    assert list(row)[:2] == ["time", "ts"] and row["time"] == iso_time(row["ts"])
    series = (await client.get("/series", params={"from": row["ts"], "to": row["ts"]})).json()
    assert series == [row]


async def test_concurrent_save_once_never_overlaps(bridge_client):
    bridge, client = bridge_client
    driver = only(bridge).poller.driver
    report = driver.report
    active = []
    most = 0

    async def counting_report():
        nonlocal most
        active.append(1)
        most = max(most, len(active))
        try:
            return await report()
        finally:
            active.pop()

    driver.report = counting_report
    replies = await asyncio.gather(*(client.post("/save_once") for _ in range(8)))
    assert [r.status_code for r in replies] == [200] * 8
    assert len({r.json()["ts"] for r in replies}) == 8
    assert most == 1


async def test_landing_docs_and_openapi(bridge_client):
    bridge, client = bridge_client
    r = await client.get("/")
    assert r.status_code == 200 and 'href="metrics"' in r.text
    assert (await client.get("/docs")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/report", "/series", "/data.csv", "/save_once", "/health", "/metrics"} <= set(paths)


# ------------------------------------------------------- staleness and gaps

async def test_hang_makes_report_stale_and_leaves_a_gap(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 5)
        sim = only(bridge).simulation.sim
        sim.faults.hang = True
        hung_at = time.time() * 1000
        r = await wait_for(lambda: _status(client.get("/report"), 503), what="stale /report")
        assert "stale" in r.json()["detail"]
        assert (await client.get("/health")).status_code == 503
        await wait_for(lambda: only(bridge).poller.failures["timeout"] >= 1, what="a timeout")
        assert (await client.get("/health")).json()["devices"][0]["poll_errors"]["timeout"] >= 1
        sim.faults.hang = False
        resumed_at = time.time() * 1000
        await wait_for(lambda: _status(client.get("/report"), 200), what="fresh /report")
        await polled(bridge, only(bridge).poller.polls_ok + 3)
        ts = np.array([row["ts"] for row in (await client.get("/series")).json()])
        # Nothing was recorded while the device hung: a gap, no repeated rows.
        assert not np.any((ts > hung_at + 100) & (ts < resumed_at - 100))
        assert np.any(ts < hung_at) and np.any(ts > resumed_at)


async def _status(request, status: int):
    response = await request
    return response if response.status_code == status else None


async def test_report_before_any_reading(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        only(bridge).simulation.sim.faults.hang = True
        await wait_for(lambda: only(bridge).poller.failures["timeout"] >= 1, what="a timeout")
        only(bridge).poller.latest = None  # as before the first poll
        r = await client.get("/report")
        assert r.status_code == 503 and "no reading yet" in r.json()["detail"]
        health = await client.get("/health")
        assert health.status_code == 503 and health.json()["devices"][0]["status"] == "no data"


async def test_field_subset_and_schema_change_across_restarts(tmp_path):
    async with running_bridge(tmp_path, fields=("temperature",)) as (bridge, client):
        await polled(bridge, 3)
        first = (await client.get("/series")).json()
        assert list(first[0]) == ["time", "ts", "temperature_ch0", "temperature_ch1"]
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 3)
        rows = (await client.get("/series", params={"fields": "temperature"})).json()
        assert {r["ts"] for r in first} <= {r["ts"] for r in rows}
        both = (await client.get("/series", params={"fields": "temperature,tec_i"})).json()
        old = [r for r in both if r["ts"] <= first[-1]["ts"]]
        assert old and all(r["tec_i_ch0"] is None for r in old)


# --------------------------------------------------------------- bad input

BAD_QUERIES = [
    ({"from": "abc"}, "from"), ({"from": "-1"}, "from"), ({"to": "1.5"}, "to"),
    ({"from": "10", "to": "5"}, "from"), ({"from": str(10 ** 30)}, "from"),
    ({"max_points": "1"}, "max_points"), ({"max_points": str(10 ** 9)}, "max_points"),
    ({"max_points": "x"}, "max_points"), ({"fields": "temperature,nosuch"}, "fields"),
    ({"fields": ""}, "fields"), ({"fields": "temperature,temperature"}, "fields"),
]


@pytest.mark.parametrize("path", ["/series", "/data.csv"])
async def test_bad_input_gets_422_naming_the_parameter(bridge_client, path):
    bridge, client = bridge_client
    for params, name in BAD_QUERIES:
        r = await client.get(path, params=params)
        assert r.status_code == 422, (params, r.text)
        detail = r.json()["detail"]
        assert any(name in e["loc"] for e in detail), (params, detail)
        assert "Traceback" not in r.text


@pytest.fixture(scope="module")
def sync_client(tmp_path_factory):
    app = create_app(bridge_config(tmp_path_factory.mktemp("fuzz")))
    with TestClient(app) as client:
        # The app runs in TestClient's thread.
        wait_until(lambda: only(app.state.bridge).poller.polls_ok >= 3, 10, "3 polls")
        yield client


_text = st.one_of(st.none(), st.integers(-2 ** 70, 2 ** 70).map(str),
                  st.text(max_size=12), st.sampled_from(["temperature", "tec_i,adc", "1e3"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/series", "/data.csv"]), start=_text, end=_text, fields=_text,
       max_points=_text)
def test_fuzzed_queries_never_fail_the_server(sync_client, path, start, end, fields, max_points):
    params = {k: v for k, v in {"from": start, "to": end, "fields": fields,
                                "max_points": max_points}.items() if v is not None}
    r = sync_client.get(path, params=params)
    assert r.status_code in (200, 422), (params, r.status_code, r.text)
    assert "Traceback" not in r.text



def test_render_of_recent_and_other_rows():
    """Rows rendered once as they arrive and rows rendered on demand come out
    byte for byte the same."""
    rng = np.random.default_rng(1)
    values = np.round(rng.normal(20, 5, size=(3600, 26)), 6)
    values[::9, 4] = math.nan
    values[:, 10:12] = rng.integers(0, 2, size=(3600, 2))
    ts = 1_795_759_540_000 + 1000 * np.arange(3600, dtype=np.int64)
    columns = ["f{}_ch{}".format(i // 2, i % 2) for i in range(26)]
    recent = render.RecentRows(600)
    for t, row in zip(ts, values):
        recent.add(int(t), columns, row)  # as the render consumer does for each sample
    body = render.to_csv(ts, columns, values)
    text = render.to_json(ts, columns, values)
    rows = parse_csv(body.decode())
    assert rows[1][6] == "" and rows[1][12] in ("0", "1")
    assert float(rows[2][2]) == values[1, 0]
    assert len(rows) == 3601 and all(len(r) == 28 for r in rows)
    parsed = json.loads(text)
    assert len(parsed) == 3600 and parsed[0]["f2_ch0"] is None
    assert parsed[1]["f0_ch0"] == values[1, 0] and parsed[1]["ts"] == ts[1]
    window = slice(3000, 3600)  # what the recent rows hold
    assert recent.take(ts[window], columns, 0) is not None
    assert render.to_csv(ts[window], columns, values[window], recent) == \
        render.to_csv(ts[window], columns, values[window])
    assert render.to_json(ts[window], columns, values[window], recent) == \
        render.to_json(ts[window], columns, values[window])
    # Rows it does not hold (long gone), rows not consecutive in it, or other
    # columns are rendered on demand.
    assert recent.take(ts[:600], columns, 0) is None
    assert recent.take(ts[3000:3600:2], columns, 0) is None
    assert recent.take(ts[window], columns[:2], 1) is None
