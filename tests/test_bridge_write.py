"""The bridge's write API against the in-process simulator: write tokens,
read-back, 422 on each bad field, 409 on a race, 503 when the device is
down, and the audit trail (with changes made outside the bridge)."""

import contextlib
import json
import re

import pytest

from thermostat_ctrl.bridge import access, config as bridge_config
from thermostat_ctrl.bridge import snapshot as snapshot_module
from thermostat_ctrl.bridge.audit import FILE_NAME, OUTSIDE, AuditLog
from thermostat_ctrl.bridge.control import PROCEDURES, RESOURCES
from thermostat_ctrl.bridge.web import routes_procedures, routes_write
from thermostat_ctrl.driver import Thermostat

from harness import FIRST, now_ms, only, parse_csv, polled, running_bridge, wait_for

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
TOKENS = (("alice", ALICE), ("bob", BOB))
AS_ALICE = {"Authorization": "Bearer " + ALICE}
AS_BOB = {"Authorization": "Bearer " + BOB}
CH0 = "/devices/{}/channels/0/".format(FIRST)


@pytest.fixture
async def writable(tmp_path):
    """(bridge, client) of a bridge with alice's and bob's write tokens."""
    async with running_bridge(tmp_path, write_tokens=TOKENS) as (bridge, client):
        for ch in (0, 1):
            only(bridge).simulation.hold(ch)  # its target steps would race the tests
        await polled(bridge, 5)
        yield bridge, client


@contextlib.asynccontextmanager
async def own_connection(bridge):
    """A driver on a connection of the test's own to the simulator (retried
    while the simulator still counts the test's previous one: it has 4)."""
    host, port = only(bridge).address
    driver = Thermostat(host, port)
    await wait_for(lambda: _connected(driver), what="a connection to the simulator")
    try:
        yield driver
    finally:
        await driver.close()


async def _connected(driver) -> bool:
    try:
        await driver.connect()
    except ConnectionError:
        return False
    return True


async def device_settings(bridge) -> tuple:
    """(pid, output settings but the PID-driven current) of channel 0, read on
    a connection of the test's own."""
    async with own_connection(bridge) as driver:
        output = (await driver.get_output())[0]
        if (await driver.report())[0]["pid_engaged"]:
            del output["i_set"]
        return (await driver.get_pid())[0], output


async def audit_of(client, **params) -> list:
    r = await client.get("/audit", params=params)
    assert r.status_code == 200
    return r.json()


# ----------------------------------------------------------------- tokens

def test_token_file_parsing(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("# who  token\n\nalice {}\n  bob   {}  \n".format(ALICE, BOB))
    config = bridge_config.build(simulation=1, data_dir=str(tmp_path),
                                 write_token_file=str(path))
    assert config.write_tokens == TOKENS
    for text, message in [("alice\n", "expected 'NAME TOKEN'"),
                          ("alice short\n", "line 1 (alice): the token must be at least 16"),
                          ("alice {0}\nbob {0}\n".format(ALICE), "already alice's"),
                          ("alice {}\nalice {}\n".format(ALICE, BOB), "alice is given twice"),
                          ("# nothing\n", "no 'NAME TOKEN' line")]:
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            bridge_config.build(simulation=1, data_dir=str(tmp_path),
                                write_token_file=str(path))
    with pytest.raises(ValueError, match="must differ from the read token"):
        bridge_config.build(simulation=1, data_dir=str(tmp_path), token=ALICE,
                            write_tokens=TOKENS)
    with pytest.raises(ValueError, match="cannot read the write-token file"):
        bridge_config.build(simulation=1, data_dir=str(tmp_path),
                            write_token_file=str(tmp_path / "missing"))


def test_throttle_blocks_after_the_limit_for_the_window():
    now = [0.0]
    throttle = access.Throttle(limit=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.blocked("a") == 0
        throttle.failed("a")
    assert throttle.blocked("a") == 60 and throttle.blocked("b") == 0
    now[0] = 59.5
    assert throttle.blocked("a") == pytest.approx(0.5)
    now[0] = 60.0
    assert throttle.blocked("a") == 0


async def test_writes_need_a_write_token(writable):
    bridge, client = writable
    body = {"value": 25.5}
    r = await client.put(CH0 + "target", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await client.put(CH0 + "target", json=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403
    r = await client.put(CH0 + "target", json=body, headers={
        **AS_ALICE, "Origin": "http://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    r = await client.put(CH0 + "target", json=body, headers={
        **AS_ALICE, "Sec-Fetch-Site": "same-site"})
    assert r.status_code == 403
    assert (await client.post("/access", headers=AS_BOB)).json() == {"name": "bob"}
    assert (await client.get("/access")).json() == {"writable": True, "reason": None}
    pid, _ = await device_settings(bridge)
    assert pid["target"] != 25.5
    assert await audit_of(client) == [], "refused writes are no changes"


async def test_bad_tokens_are_rate_limited(writable):
    bridge, client = writable
    for _ in range(5):
        r = await client.post("/access", headers={"Authorization": "Bearer wrong-guess-123456"})
        assert r.status_code == 403
    r = await client.post("/access", headers=AS_ALICE)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


async def test_read_only_bridge_says_so(bridge_client):
    bridge, client = bridge_client
    assert (await client.get("/access")).json()["writable"] is False
    r = await client.put(CH0 + "target", json={"value": 25.0}, headers=AS_ALICE)
    assert r.status_code == 403 and "read-only" in r.json()["detail"]


async def test_read_token_and_write_tokens_are_distinct(tmp_path):
    read = "read-token-0123456789abcdef"
    async with running_bridge(tmp_path, token=read, protect_reads=True,
                              write_tokens=TOKENS) as (bridge, client):
        await polled(bridge, 3)
        r = await client.put(CH0 + "target", json={"value": 25.25},
                             headers={"Authorization": "Bearer " + read})
        assert r.status_code == 403, "the read token is no write token"
        r = await client.put(CH0 + "target", json={"value": 25.25}, headers=AS_ALICE)
        assert r.status_code == 200
        assert (await client.get("/audit")).status_code == 401, "reads stay protected"
        r = await client.get("/audit", headers={"Authorization": "Bearer " + read})
        assert [e["who"] for e in r.json()] == ["alice"]


# ------------------------------------------------------------- read-back

async def test_target_is_read_back_and_audited(writable):
    bridge, client = writable
    failed = only(bridge).poller.polls_failed
    r = await client.put(CH0 + "target", json={"value": 26.125}, headers=AS_ALICE)
    assert r.status_code == 200 and r.json() == {"value": 26.125}
    pid, _ = await device_settings(bridge)
    assert pid["target"] == 26.125
    [entry] = await audit_of(client, device=FIRST)
    assert entry["who"] == "alice" and entry["what"] == "target" and entry["channel"] == 0
    assert entry["after"] == {"value": 26.125} and entry["result"] == "ok"
    assert entry["before"]["value"] != 26.125 and entry["client"] == "127.0.0.1"
    with open("{}/{}".format(bridge.config.data_dir, FILE_NAME)) as f:
        assert ALICE not in f.read()
    # The poller knows the new target at once: the next rows carry it (unless
    # a poll failed since, on a loaded machine: then it is unknown, None).
    poller = only(bridge).poller
    assert (poller.targets or [None])[0] == 26.125 or poller.polls_failed > failed


@pytest.mark.parametrize("path, body, answer", [
    ("pid", {"kp": 0.5, "ki": 0.01, "kd": 3.0}, {"kp": 0.5, "ki": 0.01, "kd": 3.0}),
    ("pid", {"output_min": -1.0, "output_max": 1.25}, {"output_min": -1.0,
                                                       "output_max": 1.25}),
    ("limits", {"max_i_pos": 1.25, "max_v": 3.5}, {"max_i_pos": 1.25, "max_v": 3.5}),
    ("b_parameter", {"t0": 25.0, "r0": 10000.0, "b": 3950.0},
     {"t0": 25.0, "r0": 10000.0, "b": 3950.0}),
    ("postfilter", {"rate": 20.0}, {"rate": 20.0}),
    ("postfilter", {"rate": None}, {"rate": None}),
    ("current", {"value": 0.25}, {"value": 0.25, "pid_engaged": False}),
    ("polarity", {"value": "reversed"}, {"value": "reversed"}),
])
async def test_each_resource_answers_the_device_value(writable, path, body, answer):
    bridge, client = writable
    r = await client.put(CH0 + path, json=body, headers=AS_ALICE)
    assert r.status_code == 200, r.text
    got = r.json()
    for key, value in answer.items():
        assert got[key] == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value)
    async with own_connection(bridge) as driver:
        device = {"pid": (await driver.get_pid())[0]["parameters"],
                  "limits": (await driver.get_output())[0],
                  "b_parameter": (await driver.get_b_parameter())[0]["params"],
                  "postfilter": (await driver.get_postfilter())[0],
                  "current": {"value": (await driver.get_output())[0]["i_set"]},
                  "polarity": {"value": (await driver.get_output())[0]["polarity"]}}[path]
    for key, value in body.items():
        shown = device.get(key)
        if path == "b_parameter" and key == "t0":
            shown -= 273.15
        assert shown == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value)
    [entry] = await audit_of(client)
    assert entry["what"] == path and entry["result"] == "ok"


async def test_engage_and_fan_and_flash(writable):
    bridge, client = writable
    assert (await client.put(CH0 + "current", json={"value": 0.1}, headers=AS_ALICE)
            ).json()["pid_engaged"] is False
    r = await client.post(CH0 + "engage", headers=AS_ALICE)
    assert r.status_code == 200 and r.json() == {"pid_engaged": True}
    r = await client.put("/devices/{}/fan".format(FIRST), json={"power": 40}, headers=AS_ALICE)
    assert r.status_code == 200 and r.json() == {"auto": False, "power": 40}
    assert (await client.post("/devices/{}/save".format(FIRST), headers=AS_ALICE)
            ).status_code == 200
    assert (await client.post("/devices/{}/load".format(FIRST), headers=AS_ALICE)
            ).status_code == 200
    assert [e["what"] for e in await audit_of(client)] == [
        "current", "engage", "fan", "save", "load"]


# -------------------------------------------------------------- bad input

@pytest.mark.parametrize("path, body, field", [
    ("target", {"value": 95.0}, "value"),              # outside the safe window
    ("target", {"value": "26"}, "value"),              # not a number
    ("target", {}, "value"),
    ("target", {"value": 25.0, "extra": 1}, "extra"),
    ("pid", {"kp": 1e-50}, "kp"),                      # not single precision
    ("pid", {"ki": 1e39}, "ki"),
    ("pid", {"output_min": 1.0, "output_max": -1.0}, "output_min"),
    ("pid", {}, "kp"),
    ("limits", {"max_i_pos": -0.1}, "max_i_pos"),
    ("limits", {"max_i_neg": 9.0}, "max_i_neg"),     # beyond the firmware's range
    ("limits", {"max_v": 99.0}, "max_v"),
    ("b_parameter", {"r0": -5.0}, "r0"),
    ("b_parameter", {"b": 0}, "b"),
    ("postfilter", {"rate": 33.0}, "rate"),           # not a supported rate
    ("current", {"value": 5.0}, "value"),             # beyond the firmware's range
    ("current", {"value": True}, "value"),
    ("polarity", {"value": "sideways"}, "value"),
])
async def test_bad_values_are_422_naming_the_field(writable, path, body, field):
    bridge, client = writable
    before = await device_settings(bridge)
    r = await client.put(CH0 + path, json=body, headers=AS_ALICE)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == field, r.json()
    assert await device_settings(bridge) == before, "nothing was written"


async def test_fan_and_channel_422(writable):
    bridge, client = writable
    r = await client.put("/devices/{}/fan".format(FIRST), json={"power": 0}, headers=AS_ALICE)
    assert r.status_code == 422 and "power" in r.json()["detail"][0]["loc"]
    r = await client.put("/devices/{}/channels/2/target".format(FIRST), json={"value": 25.0},
                         headers=AS_ALICE)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "ch"]
    r = await client.put("/devices/nosuch/channels/0/target", json={"value": 25.0},
                         headers=AS_ALICE)
    assert r.status_code == 404


# --------------------------------------------------------- concurrency

async def test_a_stale_expectation_is_409_with_the_current_value(writable):
    bridge, client = writable
    await client.put(CH0 + "target", json={"value": 25.0}, headers=AS_ALICE)
    r = await client.put(CH0 + "target", json={"value": 25.5, "expect": 25.0}, headers=AS_BOB)
    assert r.status_code == 200 and r.json() == {"value": 25.5}
    r = await client.put(CH0 + "target", json={"value": 24.0, "expect": 25.0}, headers=AS_ALICE)
    assert r.status_code == 409 and r.json()["current"] == {"value": 25.5}
    assert (await device_settings(bridge))[0]["target"] == 25.5
    r = await client.put(CH0 + "pid", json={"kp": 0.3, "expect": {"kp": 123.0}},
                         headers=AS_ALICE)
    assert r.status_code == 409 and r.json()["current"]["kp"] != 123.0
    results = [(e["who"], e["result"]) for e in await audit_of(client)]
    assert results == [("alice", "ok"), ("bob", "ok"), ("alice", "conflict"),
                       ("alice", "conflict")]


#: A valid body of each write: a resource of the bridge's control or a procedure.
VALID_BODIES = {"target": {"value": 25.0}, "pid": {"kp": 0.3}, "limits": {"max_v": 4.0},
                "b_parameter": {"b": 3950.0}, "postfilter": {"rate": 16.67},
                "polarity": {"value": "normal"}, "current": {"value": 0.1}, "engage": None,
                "fan": {"power": "auto"}, "save": None, "load": None,
                "autotune": {"target": 25.0}, "step_test": {"delta": 0.5},
                "ramp": {"target": 26.0, "rate": 0.1}}
#: The writes that talk to the device: every resource and every procedure.
DEVICE_WRITES = (*RESOURCES, *PROCEDURES)


def write_routes() -> dict:
    """{last path segment: (method, path)} of every write route of the bridge."""
    routes = {}
    for route in (*routes_write.router.routes, *routes_procedures.router.routes):
        for method in route.methods - {"GET", "HEAD"}:
            if route.path.startswith("/devices/"):
                routes[route.path.rsplit("/", 1)[1]] = method, route.path
    return routes


def test_every_write_route_is_a_resource_or_a_procedure():
    assert set(write_routes()) == {*DEVICE_WRITES, "abort"}  # abort only sets a flag
    assert set(VALID_BODIES) == set(DEVICE_WRITES)


@pytest.mark.parametrize("name", DEVICE_WRITES)
async def test_device_down_is_503(writable, name):
    bridge, client = writable
    sim = only(bridge).simulation.sim
    sim.faults.refuse = True
    sim.drop_connections()
    method, path = write_routes()[name]
    r = await client.request(method, path.format(device=FIRST, ch=0),
                             json=VALID_BODIES[name], headers=AS_ALICE)
    assert r.status_code == 503, r.text
    assert FIRST in r.json()["detail"], r.text
    [entry] = await audit_of(client)
    assert entry["what"] == name and entry["result"] == "device down", entry
    assert entry.get("after") is None


async def test_settings_when_the_device_is_down_is_503(writable):
    bridge, client = writable
    sim = only(bridge).simulation.sim
    sim.faults.refuse = True
    sim.drop_connections()
    r = await client.get(CH0 + "settings")
    assert r.status_code == 503 and FIRST in r.json()["detail"], r.text


# ------------------------------------------------------------ audit trail

async def test_a_change_made_outside_is_audited(writable):
    bridge, client = writable
    async with own_connection(bridge) as driver:
        await driver.set_target(1, 27.5)
        await driver.set_pid_params(1, kp=0.25)
    entries = await wait_for(lambda: _outside(bridge), what="the outside changes audited")
    by_what = {e["what"]: e for e in entries}
    assert by_what["target"]["after"] == {"target": 27.5}
    assert by_what["target"]["before"]["target"] != 27.5
    assert by_what["pid"]["after"] == {"kp": pytest.approx(0.25)} and \
        by_what["pid"]["channel"] == 1
    # A write through the bridge is not reported again as an outside change.
    await client.put(CH0 + "target", json={"value": 26.5}, headers=AS_ALICE)
    await polled(bridge, only(bridge).poller.polls_ok + 40)
    assert [e["who"] for e in (await audit_of(client)) if e["what"] == "target"] == \
        [OUTSIDE, "alice"]


def _outside(bridge):
    entries = [e for e in bridge_app_audit(bridge) if e["who"] == OUTSIDE]
    return entries if {e["what"] for e in entries} >= {"target", "pid"} else None


def bridge_app_audit(bridge):
    with open("{}/{}".format(bridge.config.data_dir, FILE_NAME)) as f:
        return [json.loads(line) for line in f]


async def test_an_outside_change_just_before_a_write_is_not_hidden_by_it(writable):
    bridge, client = writable
    await client.put(CH0 + "target", json={"value": 25.0}, headers=AS_ALICE)
    poller = only(bridge).poller
    poller.on_details = None  # the poller does not see the next change...
    async with own_connection(bridge) as driver:
        await driver.set_target(0, 27.0)
    # ... a write does, before it writes.
    r = await client.put(CH0 + "target", json={"value": 25.5}, headers=AS_BOB)
    assert r.json() == {"value": 25.5}
    trail = [(e["who"], e["before"], e["after"]) for e in await audit_of(client)]
    assert trail[1:] == [(OUTSIDE, {"target": 25.0}, {"target": 27.0}),
                         ("bob", {"value": 27.0}, {"value": 25.5})], trail


async def test_audit_filters(writable):
    bridge, client = writable
    await client.put(CH0 + "target", json={"value": 25.0}, headers=AS_ALICE)
    [first] = await audit_of(client)
    await client.put(CH0 + "target", json={"value": 25.5}, headers=AS_BOB)
    assert [e["who"] for e in await audit_of(client, **{"from": first["ts"] + 1})] == ["bob"]
    assert [e["who"] for e in await audit_of(client, to=first["ts"])] == ["alice"]
    assert (await client.get("/audit", params={"device": "nosuch"})).status_code == 404


def test_audit_log_survives_a_torn_line(tmp_path):
    log = AuditLog(str(tmp_path))
    log.record("d", "target", "alice", channel=0, after={"value": 1.0}).result()
    log.close()
    with open(tmp_path / FILE_NAME, "ab") as f:
        f.write(b'{"ts": 12, "dev')  # a crash in the middle of a line
    log = AuditLog(str(tmp_path))
    assert [e["who"] for e in log.entries()] == ["alice"]
    log.record("d", "target", "bob", channel=0).result()
    log.close()
    lines = (tmp_path / FILE_NAME).read_text().splitlines()
    assert [json.loads(line)["who"] for line in lines] == ["alice", "bob"]


# ------------------------------------------------------------- procedures

async def channel_state(client) -> dict:
    """What a procedure must leave as it found it, from the settings endpoint."""
    s = (await client.get(CH0 + "settings")).json()
    return {"target": s["target"], "pid": s["pid"], "pid_engaged": s["pid_engaged"],
            "limits": s["limits"]}


async def procedure_of(client) -> dict:
    r = await client.get(CH0 + "procedure")
    assert r.status_code == 200
    return r.json()


async def test_autotune_runs_reports_progress_and_is_audited(tmp_path):
    async with running_bridge(tmp_path, write_tokens=TOKENS) as (bridge, client):
        await polled(bridge, 5)
        before = await channel_state(client)
        r = await client.post(CH0 + "autotune", json={"target": 25.0}, headers=AS_ALICE)
        assert r.status_code == 202 and r.json()["running"] and r.json()["who"] == "alice"
        assert r.json()["requested"]["rule"] == "designed"  # the default of every front end
        # While it runs the channel is the procedure's.
        busy = await client.put(CH0 + "target", json={"value": 25.5}, headers=AS_BOB)
        assert busy.status_code == 409 and "autotune by alice" in busy.json()["detail"]
        seen = set()

        async def finished():
            job = await procedure_of(client)
            seen.add(job["progress"].get("state"))
            return job if not job["running"] else None
        job = await wait_for(finished, timeout=120, what="the autotune to finish",
                             interval=0.05)
        assert job["error"] is None and job["progress"]["state"] == "done", job
        assert "relay" in seen  # the noise stage is over in a tenth of a second at this speed
        gains = job["result"]["gains"]
        assert gains["kp"] > 0 and "data" not in job["result"]
        assert await channel_state(client) == before, "the gains are only reported"
        # Applying them is an ordinary audited write.
        r = await client.put(CH0 + "pid", json=gains, headers=AS_ALICE)
        assert r.json()["kp"] == pytest.approx(gains["kp"], rel=1e-6)
        trail = [(e["what"], e["who"], e["result"]) for e in await audit_of(client)]
        assert trail == [("autotune", "alice", "started"), ("target", "bob", "busy"),
                         ("autotune", "alice", "ok"), ("pid", "alice", "ok")], trail
        assert not any(e["who"] == OUTSIDE for e in await audit_of(client)), \
            "the autotune's own changes are not outside changes"


async def test_autotune_abort_restores_the_channel(tmp_path):
    async with running_bridge(tmp_path, write_tokens=TOKENS) as (bridge, client):
        await polled(bridge, 5)
        only(bridge).simulation.hold(0)
        before = await channel_state(client)
        r = await client.post(CH0 + "autotune", json={"target": 25.0}, headers=AS_ALICE)
        assert r.status_code == 202
        await wait_for(lambda: _state_is(client, "relay"), timeout=60, what="the relay stage",
                       interval=0.05)
        r = await client.post(CH0 + "abort", headers=AS_BOB)
        assert r.json() == {"aborting": True}
        job = await wait_for(lambda: _ended(client), timeout=60, what="the abort")
        assert job["progress"]["state"] == "aborted" and job["error"]
        assert await channel_state(client) == before
        assert (await client.post(CH0 + "abort", headers=AS_BOB)).json() == {"aborting": False}
        trail = [(e["what"], e["who"], e["result"]) for e in await audit_of(client)]
        assert trail == [("autotune", "alice", "started"), ("abort", "bob", "ok"),
                         ("autotune", "alice", "aborted")], trail


async def _state_is(client, state):
    return (await procedure_of(client))["progress"].get("state") == state


async def _ended(client):
    job = await procedure_of(client)
    return job if not job["running"] else None


async def test_procedure_parameters_are_checked_first(writable):
    bridge, client = writable
    for body, field in [({"target": 95.0}, "target"), ({"target": 25.0, "rule": "magic"},
                                                        "rule"),
                        ({"target": 25.0, "window": 0}, "window")]:
        r = await client.post(CH0 + "autotune", json=body, headers=AS_ALICE)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == field, r.text
    assert await procedure_of(client) is None


# ------------------------------------------------------------------ ramps

async def logged_targets(client, since_ms: int) -> list:
    """Channel 0's target in every row served since ``since_ms``."""
    r = await client.get("/data.csv", params={"from": since_ms, "fields": "target"})
    rows = parse_csv(r.text)
    column = rows[0].index("target_ch0")
    return [float(row[column]) for row in rows[1:] if row[column]]


def count_details_reads(bridge) -> list:
    """A list that grows by one each time the poller reads the settings (the
    audit's outside-change watch compares them then)."""
    reads, poller = [], only(bridge).poller
    hook = poller.on_details

    def counted(p) -> None:
        hook(p)
        reads.append(p.targets)
    poller.on_details = counted
    return reads


async def test_a_ramp_moves_the_target_at_the_rate_and_is_audited(writable):
    bridge, client = writable
    reads = count_details_reads(bridge)
    await client.put(CH0 + "target", json={"value": 25.0}, headers=AS_ALICE)
    since = now_ms()
    r = await client.post(CH0 + "ramp", json={"target": 26.0, "rate": 0.05, "expect": 25.0},
                          headers=AS_ALICE)
    assert r.status_code == 202 and r.json()["procedure"] == "ramp", r.text
    busy = await client.put(CH0 + "target", json={"value": 25.5}, headers=AS_BOB)
    assert busy.status_code == 409 and "ramp by alice" in busy.json()["detail"]
    job = await wait_for(lambda: _ended(client), timeout=60, what="the ramp's end")
    assert job["error"] is None and job["progress"]["state"] == "done", job
    result = job["result"]
    assert (result["start"], result["target"], result["rate"]) == (25.0, 26.0, 0.05)
    # 1 K at 0.05 K/s: 20 s of device time (1 s of the test's), in steps of the samples
    # (a sum of device-time steps: within a rounding of 20 s, at most a sample more)
    assert 20.0 - 1e-9 <= result["duration_s"] < 20.0 + 1.0 and result["steps"] > 20
    assert (await device_settings(bridge))[0]["target"] == 26.0
    # The rows carry the ramp's setpoints as it went, never back, ending on the target.
    await polled(bridge, only(bridge).poller.polls_ok + 2)
    targets = await logged_targets(client, since)
    assert targets == sorted(targets) and targets[-1] == 26.0, targets
    assert len({t for t in targets if 25.0 < t < 26.0}) >= 10, targets
    # The watch for outside changes has compared the settings since: the
    # ramp's steps are none.
    seen = len(reads)
    await wait_for(lambda: len(reads) > seen, timeout=10, what="a read of the settings")
    trail = [(e["what"], e["who"], e["result"]) for e in await audit_of(client)]
    assert trail == [("target", "alice", "ok"), ("ramp", "alice", "started"),
                     ("target", "bob", "busy"), ("ramp", "alice", "ok")], trail
    ended = (await audit_of(client))[-1]
    assert ended["requested"] == {"target": 26.0, "rate": 0.05, "expect": 25.0}
    assert ended["after"]["target"] == 26.0


async def ramp_under_way(client, target: float, past: float) -> None:
    """From 25 degC, alice's ramp to ``target`` at 0.05 K/s, until its setpoint
    is past ``past``."""
    await client.put(CH0 + "target", json={"value": 25.0}, headers=AS_ALICE)
    r = await client.post(CH0 + "ramp", json={"target": target, "rate": 0.05},
                          headers=AS_ALICE)
    assert r.status_code == 202, r.text

    async def ramping() -> bool:
        return (await procedure_of(client))["progress"].get("setpoint", 25.0) > past
    await wait_for(ramping, timeout=60, what="the ramp under way", interval=0.05)


async def test_an_aborted_ramp_leaves_the_target_where_it_got_to(writable):
    bridge, client = writable
    await ramp_under_way(client, 35.0, 25.2)
    assert (await client.post(CH0 + "abort", headers=AS_BOB)).json() == {"aborting": True}
    job = await wait_for(lambda: _ended(client), timeout=60, what="the abort")
    held = (await device_settings(bridge))[0]["target"]
    assert job["progress"]["state"] == "aborted" and 25.2 < held < 35.0, job
    assert "{:.4f}".format(held) in job["error"], job["error"]
    trail = [(e["what"], e["who"], e["result"]) for e in await audit_of(client)]
    assert trail == [("target", "alice", "ok"), ("ramp", "alice", "started"),
                     ("abort", "bob", "ok"), ("ramp", "alice", "aborted")], trail


async def test_a_device_reset_stops_the_ramp_and_names_the_target(writable):
    bridge, client = writable
    await ramp_under_way(client, 30.0, 25.1)
    only(bridge).simulation.sim.reset()  # back with the boot defaults: target 0 degC
    job = await wait_for(lambda: _ended(client), timeout=60, what="the ramp to stop")
    assert job["progress"]["state"] == "failed", job
    assert "rebooted" in job["error"] and "target is now 0.0000 degC" in job["error"], job
    assert (await device_settings(bridge))[0]["target"] == 0.0
    [ended] = [e for e in await audit_of(client) if e["what"] == "ramp"][-1:]
    assert ended["result"] == "failed" and "rebooted" in ended["detail"]


async def test_a_ramp_goes_on_after_the_connection_is_lost_for_a_while(writable):
    bridge, client = writable
    await ramp_under_way(client, 26.0, 25.1)
    sim = only(bridge).simulation.sim
    sim.faults.refuse = True  # away for a moment, then back, still holding the target
    sim.drop_connections()
    await wait_for(lambda: _state_is(client, "reconnecting"), timeout=30,
                   what="the ramp waiting for the device", interval=0.02)
    sim.faults.refuse = False
    job = await wait_for(lambda: _ended(client), timeout=60, what="the ramp's end")
    assert job["error"] is None and job["progress"]["state"] == "done", job
    assert (await device_settings(bridge))[0]["target"] == 26.0


@pytest.mark.parametrize("body, field", [({"target": 26.0, "rate": 0}, "rate"),
                                         ({"target": 26.0, "rate": -0.1}, "rate"),
                                         ({"target": 26.0}, "rate"),
                                         ({"target": 95.0, "rate": 0.1}, "target")])
async def test_a_bad_ramp_is_422_naming_the_field(writable, body, field):
    bridge, client = writable
    before = (await device_settings(bridge))[0]["target"]
    r = await client.post(CH0 + "ramp", json=body, headers=AS_ALICE)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == field, r.text
    assert await procedure_of(client) is None
    assert (await device_settings(bridge))[0]["target"] == before


async def test_a_ramp_from_a_stale_target_is_409(writable):
    bridge, client = writable
    await client.put(CH0 + "target", json={"value": 25.5}, headers=AS_BOB)
    r = await client.post(CH0 + "ramp", json={"target": 26.0, "rate": 0.1, "expect": 25.0},
                          headers=AS_ALICE)
    assert r.status_code == 409 and r.json()["current"] == {"value": 25.5}, r.text
    assert await procedure_of(client) is None
    assert (await device_settings(bridge))[0]["target"] == 25.5


# -------------------------------------------------------------- snapshots

async def test_a_2025_snapshot_restores_onto_a_2023_device(tmp_path):
    async with running_bridge(tmp_path / "new", write_tokens=TOKENS, firmware="2025") \
            as (new, new_client), \
            running_bridge(tmp_path / "old", write_tokens=TOKENS, firmware="2023") \
            as (old, old_client):
        await polled(new, 3)
        await polled(old, 3)
        for ch in (0, 1):
            only(new).simulation.hold(ch)
            only(old).simulation.hold(ch)
        for path, body in [("target", {"value": 23.5}), ("pid", {"kp": 0.6, "ki": 0.02}),
                           ("limits", {"max_i_pos": 1.25, "max_v": 3.0}),
                           ("postfilter", {"rate": 27.27}), ("b_parameter", {"b": 3950.0})]:
            assert (await new_client.put(CH0 + path, json=body, headers=AS_ALICE)
                    ).status_code == 200
        r = await new_client.get("/devices/{}/snapshot".format(FIRST))
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        snap = r.json()
        assert snap["firmware"] == "2025" and snap["channels"][0]["postfilter"] == 27.27
        before = (await old_client.post("/snapshots/diff", json={"a": snap, "device": FIRST}))
        assert {d["setting"] for d in before.json()} >= {
            "channels[0].target", "channels[0].pid.kp", "channels[0].postfilter"}
        r = await old_client.put("/devices/{}/snapshot".format(FIRST), json=snap,
                                 headers=AS_BOB)
        assert r.status_code == 200, r.text
        restored = (await old_client.get("/devices/{}/snapshot".format(FIRST))).json()
        assert restored["firmware"] == "2023"
        assert restored["channels"][0]["postfilter"] == 27.0, "the same filter, 2023's label"
        assert restored["channels"][0]["polarity"] is None
        assert snapshot_module.diff(snap, restored) == [], "the same settings in 2023's terms"
        trail = await audit_of(old_client)
        assert trail[-1]["what"] == "restore" and trail[-1]["who"] == "bob"
        assert "firmware 2025" in trail[-1]["requested"]["from"]
        assert {e["what"] for e in trail} >= {"limits", "pid", "target", "postfilter"}


async def test_a_restore_refuses_what_the_device_cannot_hold(tmp_path):
    async with running_bridge(tmp_path, write_tokens=TOKENS, firmware="2023") \
            as (bridge, client):
        await polled(bridge, 3)
        r = await client.put(CH0 + "polarity", json={"value": "reversed"}, headers=AS_ALICE)
        assert r.status_code == 422 and "firmware 2025" in r.json()["detail"][0]["msg"]
        snap = (await client.get("/devices/{}/snapshot".format(FIRST))).json()
        snap["channels"][0]["limits"]["max_i_pos"] = 2.5   # fits 2023 (3 A)...
        wanted = {**snap, "firmware": "2025"}
        async with running_bridge(tmp_path / "new", write_tokens=TOKENS) as (new, new_client):
            await polled(new, 3)
            before = (await new_client.get("/devices/{}/snapshot".format(FIRST))).json()
            r = await new_client.put("/devices/{}/snapshot".format(FIRST), json=wanted,
                                     headers=AS_ALICE)
            assert r.status_code == 422   # ... not 2025 (2 A)
            assert r.json()["detail"][0]["loc"] == ["body", "channels[0]", "limits",
                                                    "max_i_pos"]
            after = (await new_client.get("/devices/{}/snapshot".format(FIRST))).json()
            assert snapshot_module.diff(before, after) == [], "nothing was written"
            for bad in [{"format": "other"},
                        {**wanted, "channels": [1, {"pid": "x"}]},
                        {**wanted, "channels": [{**wanted["channels"][0], "postfilter": "fast",
                                                 "pid": {"kp": "big"}}, wanted["channels"][1]]},
                        {**wanted, "fan": "on", "firmware": "1999"}]:
                r = await new_client.put("/devices/{}/snapshot".format(FIRST), json=bad,
                                         headers=AS_ALICE)
                assert r.status_code == 422, r.text
                r = await new_client.post("/snapshots/diff", json={"a": bad, "device": FIRST})
                assert r.status_code == 200, r.text
