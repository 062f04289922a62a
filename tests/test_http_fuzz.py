"""Hostile HTTP input against the bridge.

* hypothesis: any method, path, query (known and unknown parameter names,
  any text, huge numbers, repeated keys) and headers on every endpoint: no
  5xx, no traceback text, bounded response size and time;
* schemathesis: the API as documented by /openapi.json, against the real
  ``thermostat_bridge`` process (skipped when schemathesis is absent);
* request limits: over-long query strings and paths get 414, large bodies
  413 (declared or chunked), from the app and from a real uvicorn;
* the device behind the bridge (a recording proxy) only ever receives the
  bridge's own polling commands, whatever the requests.
"""

import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import BRIDGE, FIRST, SERVING, Process, SimThread, bridge_config, only, wait_until
from thermostat_ctrl.bridge.web import security
from thermostat_ctrl.bridge.web.app import create_app

#: Largest body any request may get back: the memory window (20 s of 0.05 s
#: polls) and the CSV log of this short test run are far smaller.
MAX_RESPONSE = 2_000_000
MAX_SECONDS = 3.0
POLL_COMMANDS = {b"report", b"pid", b"hwrev", b"output"}
PATHS = ["/", "/report", "/series", "/data.csv", "/save_once", "/health", "/metrics",
         "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"]
PARAMS = ["from", "to", "fields", "max_points"]


@pytest.fixture(scope="module")
def device():
    """The simulator behind a recording proxy, served from a thread."""
    served = SimThread(proxy=True, speed=20.0)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(device, tmp_path_factory):
    """A TestClient of the bridge polling the proxied simulator."""
    app = create_app(bridge_config(tmp_path_factory.mktemp("fuzz"),
                                   devices=["{}=127.0.0.1:{}".format(FIRST, device.proxy.port)],
                                   memory_s=20.0))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        # The app runs in TestClient's thread.
        wait_until(lambda: only(app.state.bridge).poller.polls_ok >= 3, 10, "3 polls")
        yield test_client


_numbers = st.one_of(st.integers(-2 ** 80, 2 ** 80), st.floats(allow_nan=True)).map(str)
_values = st.one_of(_numbers, st.text(max_size=40),
                    st.sampled_from(["", "temperature", "tec_i,adc", "1e3", "0x10", " 5",
                                     "9" * 400, "temperature," * 50, "%00", "\u202e", "-0"]))
_names = st.one_of(st.sampled_from(PARAMS), st.text(min_size=1, max_size=10))
_query = st.lists(st.tuples(_names, _values), max_size=6)
_paths = st.one_of(st.sampled_from(PATHS), st.text(max_size=30).map(lambda t: "/" + t))
_headers = st.dictionaries(
    st.sampled_from(["Accept", "Accept-Encoding", "Content-Type", "Range", "Origin",
                     "Authorization", "If-None-Match"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40), max_size=3)


def check_response(r: httpx.Response, seconds: float) -> None:
    """The properties every response must have."""
    assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text[:500])
    assert len(r.content) <= MAX_RESPONSE
    assert seconds < MAX_SECONDS, (r.request.url, seconds)
    text = r.content.decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text, text[:500]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE",
                               "OPTIONS", "PATCH"]),
       path=_paths, query=_query, headers=_headers)
def test_any_request_is_answered_without_5xx_or_traceback(client, method, path, query,
                                                          headers):
    began = time.monotonic()
    try:
        r = client.request(method, path, params=query, headers=headers)
    except httpx.InvalidURL:
        return  # not even a URL: the client refuses to send it
    check_response(r, time.monotonic() - began)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/series", "/data.csv"]),
       values=st.fixed_dictionaries({}, optional={p: _values for p in PARAMS}))
def test_data_parameters(client, path, values):
    began = time.monotonic()
    r = client.get(path, params=values)
    check_response(r, time.monotonic() - began)
    assert r.status_code in (200, 414, 422), (values, r.status_code, r.text[:300])
    if r.status_code == 422:
        assert r.json()["detail"], r.text


def test_widest_ranges_are_bounded(client):
    for path in ("/series", "/data.csv"):
        for params in ({"from": 0, "to": 253_402_300_799_999},
                       {"from": 0, "to": 253_402_300_799_999, "max_points": 100_000},
                       {"from": 0, "max_points": 2}):
            began = time.monotonic()
            r = client.get(path, params=params)
            check_response(r, time.monotonic() - began)
            assert r.status_code == 200


def test_device_only_ever_got_polling_commands(client, device):
    """Runs after the fuzz tests in this module: whatever the requests, the
    device only received the bridge's polling commands."""
    client.post("/save_once", params={"fields": "x\nreset"}, content=b"reset\n")
    assert device.proxy.lines and set(device.proxy.lines) <= POLL_COMMANDS


# ------------------------------------------------------------------ limits

def test_long_query_and_path_get_414(client):
    r = client.get("/series", params={"fields": "temperature," * 300})
    assert r.status_code == 414 and "query string" in r.json()["detail"]
    r = client.get("/" + "a" * (security.MAX_PATH + 1))
    assert r.status_code == 414
    # Just inside the limit is answered normally.
    r = client.get("/series", params={"fields": "x" * (security.MAX_QUERY - 10)})
    assert r.status_code == 422


def test_large_bodies_get_413(client):
    r = client.post("/save_once", content=b"x" * (security.MAX_BODY + 1))
    assert r.status_code == 413
    r = client.post("/save_once", content=iter([b"x" * 3000] * 3))  # chunked, no length
    assert r.status_code == 413
    r = client.post("/save_once", content=b"x" * 100)
    assert r.status_code == 200
    r = client.post("/save_once", content=iter([b"x" * 100]))
    assert r.status_code == 200


def _raw_request(port: int, request: bytes) -> bytes:
    """Send raw bytes; return what the server answers until it closes, the
    response is complete, or it resets the connection."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(request)
            while not _complete(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    return data


def _complete(data: bytes) -> bool:
    if b"\r\n\r\n" not in data:
        return False
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real ``thermostat_bridge --simulation`` process; yields its URL."""
    process = Process(BRIDGE + ["--simulation", "--speed", "20", "--port", "0",
                                "--poll-period", "0.1",
                                "--data-dir", str(tmp_path_factory.mktemp("served"))])
    try:
        yield process.wait_for_line(SERVING).group(1)
    finally:
        assert process.stop() == 0


def test_limits_on_the_real_server(served):
    port = int(served.rsplit(":", 1)[1])
    began = time.monotonic()
    reply = _raw_request(port, b"POST /save_once HTTP/1.1\r\nHost: x\r\nContent-Length: "
                               b"100000000\r\n\r\n" + b"x" * 10000)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    reply = _raw_request(port, b"GET /series?fields=" + b"a" * 5000 +
                         b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 414"), reply[:200]
    reply = _raw_request(port, b"GET /health HTTP/1.1\r\nHost: x\r\n" +
                         b"X-Filler: " + b"y" * 200_000 + b"\r\n\r\n")
    assert reply[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 431", b""), reply[:200]
    reply = _raw_request(port, b"GARBAGE\r\n\r\n")
    assert reply[:12] in (b"HTTP/1.1 400", b""), reply[:200]
    assert time.monotonic() - began < 10
    assert httpx.get(served + "/health", timeout=5).status_code in (200, 503)


def test_schemathesis_against_openapi(served):
    schemathesis = pytest.importorskip(
        "schemathesis", reason="schemathesis is not installed (pip install"
                               " 'thermostat_ctrl[test]')")
    from schemathesis import checks
    schema = schemathesis.openapi.from_url(served + "/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/stream"):
            continue  # endless event streams: their input is tested in test_live_stream.py

        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            began = time.monotonic()
            response = case.call(timeout=MAX_SECONDS)
            try:
                case.validate_response(response, checks=[checks.not_a_server_error])
            except Exception as e:  # collected: all operations are run
                failures.append((operation.label, repr(e)[:300]))
            assert time.monotonic() - began < MAX_SECONDS
            assert len(response.content) <= MAX_RESPONSE
            assert b"Traceback" not in response.content
        run()
    assert failures == []
