"""The live view's server side: /stream and /stream/devices (Server-Sent
Events from the sample bus), the page and its assets, offline /docs, the
Content-Security-Policy, and reads with --protect-reads."""

import asyncio
import base64
import socket

import httpx
import pytest

from browser_kit import next_of, open_stream, served_bridge
from harness import FIRST, bridge_process, now_ms, only, polled, running_bridge, wait_until
from thermostat_ctrl.bridge.web import csp, stream

TOKEN = "s3cret-token-for-the-live-view"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(bridge, url) of two simulated devices on a real server."""
    with served_bridge(tmp_path_factory.mktemp("lab"), simulation=2) as served:
        bridge, _ = served
        wait_until(lambda: all(d.poller.polls_ok >= 5 for d in bridge.devices.values()),
                   20, "5 polls of each device")
        yield served


def test_samples_are_the_rows_of_series_with_ts_as_id(lab):
    bridge, url = lab
    with open_stream(url + "/stream?device=" + FIRST) as (response, events):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in response.headers
        samples = [next_of(events, "sample") for _ in range(6)]
    ids = [int(s["id"]) for s in samples]
    assert ids == [s["data"]["ts"] for s in samples] and ids == sorted(set(ids))
    rows = {r["ts"]: r for r in httpx.get(url + "/series", params={
        "device": FIRST, "from": ids[0], "to": ids[-1]}).json()}
    assert [s["data"] for s in samples] == [rows[ts] for ts in ids]


def test_status_events_carry_what_the_page_needs(lab):
    bridge, url = lab
    with open_stream(url + "/stream?device=sim1") as (response, events):
        status = next_of(events, "status")["data"]
    assert status["name"] == "sim1" and status["status"] == "ok"
    assert status["firmware"] == "2025" and status["hwrev"].startswith("v")
    assert len(status["targets"]) == 2 and status["limits"][0]["max_v"] == 4.0
    assert status["memory_s"] == 60.0 and status["stale_after_s"] < status["disconnected_after_s"]
    assert status["latest"]["temperature_ch0"] is not None


def test_devices_stream_gives_every_device(lab):
    bridge, url = lab
    with open_stream(url + "/stream/devices") as (response, events):
        states = next_of(events, "devices")["data"]
    assert [s["name"] for s in states] == list(bridge.devices)
    assert all(s["latest"]["ts"] > 0 and s["targets"] for s in states)


def test_last_event_id_replays_what_was_missed(lab):
    bridge, url = lab
    device = bridge.devices[FIRST]
    with open_stream(url + "/stream?device=" + FIRST) as (response, events):
        last = int(next_of(events, "sample")["id"])
    # Away for a while: 10 polls happen.
    polls = device.poller.polls_ok
    wait_until(lambda: device.poller.polls_ok >= polls + 10, 10, "10 polls")
    with open_stream(url + "/stream?device=" + FIRST,
                     headers={"Last-Event-ID": str(last)}) as (response, events):
        got = [int(next_of(events, "sample")["id"]) for _ in range(15)]
    stored = [r["ts"] for r in httpx.get(url + "/series", params={
        "device": FIRST, "from": last + 1, "to": got[-1]}).json()]
    assert got == stored, "the replay and the live samples must join without hole or repeat"


def test_after_parameter_replays_and_the_header_wins(lab):
    bridge, url = lab
    rows = httpx.get(url + "/series", params={"device": FIRST}).json()
    after = rows[-5]["ts"]
    with open_stream(url + "/stream?device={}&after={}".format(FIRST, after)) as (r, events):
        first = [int(next_of(events, "sample")["id"]) for _ in range(4)]
    assert first == [row["ts"] for row in rows[-4:]]
    with open_stream(url + "/stream?device={}&after=0".format(FIRST),
                     headers={"Last-Event-ID": str(rows[-2]["ts"])}) as (r, events):
        assert int(next_of(events, "sample")["id"]) == rows[-1]["ts"]


@pytest.mark.parametrize("query, headers, status, name", [
    ("device=nope", {}, 404, None),
    ("", {}, 422, "device"),
    ("device=sim0&after=-1", {}, 422, "after"),
    ("device=sim0&after=x", {}, 422, "after"),
    ("device=sim0", {"Last-Event-ID": "yesterday"}, 422, "last-event-id"),
    ("device=sim0", {"Last-Event-ID": "9" * 30}, 422, "last-event-id"),
])
def test_bad_stream_requests_are_refused_by_name(lab, query, headers, status, name):
    bridge, url = lab
    r = httpx.get(url + "/stream?" + query, headers=headers, timeout=5)
    assert r.status_code == status, r.text
    if name is not None:
        assert name in [str(part).lower() for part in r.json()["detail"][0]["loc"]]


def test_stream_is_documented(lab):
    bridge, url = lab
    paths = httpx.get(url + "/openapi.json").json()["paths"]
    for path in ("/stream", "/stream/devices"):
        assert "text/event-stream" in paths[path]["get"]["responses"]["200"]["content"]


def _idle_client(url: str, path: str) -> socket.socket:
    """A client that sends the request and then never reads."""
    host, port = url.rsplit("//", 1)[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall("GET {} HTTP/1.1\r\nHost: x\r\n\r\n".format(path).encode())
    return sock


def _state(url: str) -> tuple:
    """(the device's health, the stream consumers' counters) from /health."""
    health = httpx.get(url + "/health", timeout=5).json()
    return health["devices"][0], health["consumers"].get("stream")


def test_clients_that_stop_reading_are_dropped_and_hold_nothing_up(tmp_path):
    # The bridge as deployed (its own process, polling at 20 Hz), so that only
    # the bridge's own work competes with its poll schedule.
    with bridge_process(tmp_path, "--poll-period", "0.05", "--memory-s", "60") as (_, url):
        wait_until(lambda: _state(url)[0]["polls_ok"] >= 5, 20, "5 polls")
        idle = [_idle_client(url, "/stream?device=" + FIRST) for _ in range(3)]
        try:
            wait_until(lambda: (_state(url)[1] or {}).get("subscribers") == 3, 10, "3 streams")
            skipped = _state(url)[0]["polls_skipped"]
            with open_stream(url + "/stream?device=" + FIRST) as (response, events):
                seen = []
                # Meanwhile the idle clients fall behind and are dropped.
                while _state(url)[1]["subscribers"] > 1:
                    seen.extend(int(next_of(events, "sample")["id"]) for _ in range(25))
                    assert len(seen) < 5000, "the idle clients were never dropped"
                # The reading client got every sample, in order, throughout.
                stored = [r["ts"] for r in httpx.get(url + "/series", params={
                    "from": seen[0], "to": seen[-1]}).json()]
                assert seen == stored
            device, consumers = _state(url)
            assert device["polls_skipped"] - skipped <= 2
            assert consumers["queued"] <= stream.BACKLOG
        finally:
            for sock in idle:
                sock.close()


async def test_a_stream_falling_a_backlog_behind_ends(tmp_path):
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 2)
        device = only(bridge)
        events = stream._device_events(bridge, device, None)
        assert (await events.__anext__()).retry == stream.RETRY_MS
        assert (await events.__anext__()).event == "status"
        # Nobody reads for a backlog's worth of samples.
        sample = device.poller.latest
        for i in range(stream.BACKLOG):
            bridge.bus.publish(sample)
        with pytest.raises(StopAsyncIteration):
            while True:
                await asyncio.wait_for(events.__anext__(), 5)
        assert bridge.bus.stats()["stream"].subscribers == 0


# ---------------------------------------------------- the page and its assets

def test_page_assets_and_offline_docs_are_served_by_the_bridge(lab):
    bridge, url = lab
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("static/live.js", "static/live.css", "static/uplot/uPlot.iife.min.js",
                  "static/uplot/uPlot.min.css"):
        assert 'src="{}"'.format(asset) in page.text or 'href="{}"'.format(asset) in page.text
        assert httpx.get(url + "/" + asset).status_code == 200, asset
    assert "http" not in page.text.replace('href="', "").split("<footer>")[0].lower()
    for docs in ("/docs", "/redoc"):
        html = httpx.get(url + docs).text
        assert "cdn" not in html.lower() and "https://" not in html, docs
        assert "static-offline-docs/" in html
    assert httpx.get(url + "/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert 'src="/docs/redoc.standalone.js"' in httpx.get(url + "/redoc").text
    redoc = httpx.get(url + "/docs/redoc.standalone.js")
    assert redoc.status_code == 200 and "javascript" in redoc.headers["content-type"]
    assert "cdn.redoc.ly" not in redoc.text and len(redoc.text) > 100_000


def test_every_response_has_a_same_origin_policy(lab):
    bridge, url = lab
    for path in ("/", "/static/live.js", "/series", "/devices", "/nope"):
        assert httpx.get(url + path).headers["content-security-policy"] == csp.STRICT, path
    for path in ("/docs", "/redoc"):
        assert httpx.get(url + path).headers["content-security-policy"] == csp.DOCS, path
    for policy in (csp.STRICT, csp.DOCS):
        directives = [d.strip() for d in policy.split(";")]
        assert "default-src 'self'" in directives and "frame-ancestors 'none'" in directives
        assert "http" not in policy and "*" not in policy
    headers = httpx.get(url + "/", headers={"Origin": "http://elsewhere.example"}).headers
    assert not any(h.lower().startswith("access-control-") for h in headers)


def test_protect_reads_needs_the_token_and_says_how_to_give_it(tmp_path):
    with served_bridge(tmp_path, token=TOKEN, protect_reads=True) as (bridge, url):
        wait_until(lambda: only(bridge).poller.polls_ok >= 3, 20, "3 polls")
        for path in ("/", "/static/live.js", "/series", "/stream?device=" + FIRST,
                     "/stream/devices"):
            r = httpx.get(url + path, headers={"Accept": "text/html"}, timeout=5)
            assert r.status_code == 401, path
            challenges = r.headers.get_list("www-authenticate")
            assert "Bearer" in challenges and any(c.startswith("Basic ") for c in challenges)
            assert "token as the password" in r.text and "Authorization: Bearer" in r.text
        basic = "Basic " + base64.b64encode(("anyone:" + TOKEN).encode()).decode()
        wrong = "Basic " + base64.b64encode(b"anyone:wrong").decode()
        assert httpx.get(url + "/", headers={"Authorization": wrong}).status_code == 401
        assert httpx.get(url + "/", headers={"Authorization": basic}).status_code == 200
        with open_stream(url + "/stream?device=" + FIRST,
                         headers={"Authorization": basic}) as (response, events):
            assert response.status_code == 200 and next_of(events, "sample")
        # The browser's Basic credentials never authorise a change.
        r = httpx.post(url + "/save_once", headers={"Authorization": basic})
        assert r.status_code == 401
        polls = only(bridge).poller.polls_ok
        r = httpx.post(url + "/save_once", headers={"Authorization": "Bearer " + TOKEN})
        assert r.status_code == 200 and only(bridge).poller.polls_ok > polls
        assert r.json()["ts"] <= now_ms()
