"""Changing a Thermostat from the page, in a real browser: Debian's Chromium
driven by Playwright, against a bridge with write tokens on a simulated
device.

Skipped, with the reason, where Playwright or Chromium cannot run.
Screenshots are saved in the test run's temporary folder; with
``UPDATE_SCREENSHOTS=1`` the settings panel is also written to
``scripts/screenshots/settings-panel.png`` and a ramp under way to
``scripts/screenshots/ramp.png`` (the README's).
"""

import asyncio
import concurrent.futures
import http.server
import os
import threading
from pathlib import Path

import httpx
import pytest

from browser_kit import launch_chromium, record_errors, served_bridge
from harness import FIRST, wait_until
from thermostat_ctrl.bridge.audit import OUTSIDE
from thermostat_ctrl.driver import Thermostat

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed"
                                                             " (pip install playwright)")

ROOT = Path(__file__).resolve().parent.parent
README_SHOT = ROOT / "scripts" / "screenshots" / "settings-panel.png"
RAMP_SHOT = ROOT / "scripts" / "screenshots" / "ramp.png"
ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
TOKENS = (("alice", ALICE), ("bob", BOB))
VIEWPORT = {"width": 1400, "height": 1000}
CH0 = '.channel[data-channel="0"] '


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(bridge, url, screenshot folder): one simulated device, write tokens
    for alice and bob, simulated time 50 times faster (the autotune)."""
    data = tmp_path_factory.mktemp("control-data")
    with served_bridge(data, simulation=1, poll_period=0.2, memory_s=120.0, speed=50.0,
                       write_tokens=TOKENS) as (bridge, url):
        bridge.devices[FIRST].simulation.hold(0)
        bridge.devices[FIRST].simulation.hold(1)
        wait_until(lambda: bridge.devices[FIRST].poller.gains, 30, "the polled settings")
        yield bridge, url, tmp_path_factory.mktemp("control-shots")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, lab):
    bridge, url, shots = lab
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.errors = record_errors(page)
    yield page
    context.close()


def device(bridge, call):
    """``call(driver)`` on a connection of the test's own to the simulator."""
    host, port = bridge.devices[FIRST].address

    async def run():
        driver = Thermostat(host, port)
        for _ in range(50):  # the simulator may still count a previous connection (it has 4)
            try:
                await driver.connect()
                break
            except ConnectionError:
                await asyncio.sleep(0.05)
        try:
            return await call(driver)
        finally:
            await driver.close()
    # Playwright's sync API runs an event loop in this thread: use another.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def api(url, method, path, token=None, **kwargs):
    headers = {"Authorization": "Bearer " + token} if token else {}
    return httpx.request(method, url + path, headers=headers, timeout=10, **kwargs)


def open_device(page, url, token=None):
    page.goto("{}/#device={}".format(url, FIRST))
    page.wait_for_selector(CH0 + ".settings details")
    if token is not None:
        page.fill("#write-token", token)
        page.click(".access button[type=submit]")
        page.wait_for_selector(".access .who")
    page.evaluate("document.querySelectorAll('.settings details').forEach(d => d.open = true)")


def wait_value(page, selector, value, timeout=15_000):
    """Wait until the input at ``selector`` shows ``value``."""
    page.wait_for_function("([s, v]) => { const n = document.querySelector(s);"
                           " return n && n.value === v; }", arg=[selector, value],
                           timeout=timeout)


def wait_text(page, selector, text, timeout=15_000):
    """Wait until the element at ``selector`` contains ``text``."""
    page.wait_for_function("([s, t]) => { const n = document.querySelector(s);"
                           " return n && n.innerText.includes(t); }", arg=[selector, text],
                           timeout=timeout)


def audit_rows(page):
    return page.eval_on_selector_all("#audit tbody tr", "rows => rows.map(r => r.innerText)")


def test_a_target_set_on_the_page_is_read_back_and_audited(page, lab):
    bridge, url, shots = lab
    open_device(page, url, ALICE)
    form = CH0 + "form[data-group=target] "
    page.fill(form + "input[name=value]", "25.75")
    page.click(form + "button[type=submit]")
    page.wait_for_selector(form + ".message.ok")
    assert "the device now has value 25.75" in page.inner_text(form + ".message")
    assert device(bridge, lambda d: d.get_pid())[0]["target"] == 25.75
    wait_until(lambda: any("alice" in r and "25.75" in r for r in audit_rows(page)), 10,
               "the audit row on the page")
    [entry] = [e for e in api(url, "GET", "/audit").json() if e["what"] == "target"
               and e["after"] == {"value": 25.75}]
    assert entry["who"] == "alice" and entry["result"] == "ok"
    assert ALICE not in page.content(), "the token is never in the page"
    page.screenshot(path=str(shots / "settings-panel.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        page.screenshot(path=str(README_SHOT), full_page=True)
    assert page.errors == [], page.errors


def test_without_the_token_the_controls_are_disabled(page, lab):
    bridge, url, shots = lab
    open_device(page, url)
    assert "LOCKED" in page.inner_text("#access")
    assert "Locked: enter a write token" in page.inner_text(CH0 + ".settings")
    buttons = page.eval_on_selector_all(".settings button.write, .settings input",
                                        "nodes => nodes.map(n => n.disabled)")
    assert buttons and all(buttons)
    assert api(url, "PUT", "/devices/{}/channels/0/target".format(FIRST),
               json={"value": 25.0}).status_code == 401
    page.fill("#write-token", "not-the-token-0123456789")
    page.click(".access button[type=submit]")
    page.wait_for_selector(".access .error")
    assert "token refused" in page.inner_text(".access")
    page.screenshot(path=str(shots / "locked.png"), full_page=True)


class _Foreign(http.server.BaseHTTPRequestHandler):
    """A page of another origin (another port of the same host: the same
    site) that tries to write to the bridge, with and without the token."""

    bridge_url = ""

    def do_GET(self):
        target = "{}/devices/{}/channels/0/".format(self.bridge_url, FIRST)
        body = """<!doctype html><html><body>
<form id="f" method="post" action="{target}engage"></form>
<script>
window.results = [];
fetch("{target}target", {{method: "PUT", headers: {{"Authorization": "Bearer {token}",
      "Content-Type": "application/json"}}, body: JSON.stringify({{value: 30.0}})}})
  .then(r => results.push("fetch " + r.status), e => results.push("fetch failed"));
fetch("{target}engage", {{method: "POST", mode: "no-cors", credentials: "include"}})
  .then(r => results.push("no-cors " + r.type), e => results.push("no-cors failed"));
</script></body></html>""".format(target=target, token=ALICE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_write_from_a_page_of_another_origin_is_refused(page, lab):
    bridge, url, shots = lab
    assert api(url, "PUT", "/devices/{}/channels/0/current".format(FIRST), ALICE,
               json={"value": 0.05}).status_code == 200
    before = len(api(url, "GET", "/audit").json())
    _Foreign.bridge_url = url
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Foreign)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto("http://127.0.0.1:{}/".format(server.server_address[1]))
        page.wait_for_function("() => window.results.length === 2")
        results = page.evaluate("window.results")
        assert "fetch failed" in results, results  # no CORS grant: the browser may not send it
        with page.expect_navigation():
            page.evaluate("document.getElementById('f').submit()")
        assert "may not write to this bridge" in page.content()
    finally:
        server.shutdown()
    report = device(bridge, lambda d: d.report())
    assert report[0]["pid_engaged"] is False, "the foreign page did not engage the PID"
    assert device(bridge, lambda d: d.get_pid())[0]["target"] != 30.0
    assert len(api(url, "GET", "/audit").json()) == before


def test_a_change_made_on_the_device_shows_as_outside_change(page, lab):
    bridge, url, shots = lab
    open_device(page, url)
    device(bridge, lambda d: d.set_target(1, 27.25))
    wait_until(lambda: any(OUTSIDE in r and "27.25" in r for r in audit_rows(page)), 30,
               "the outside change on the page")
    # The panel follows the device.
    wait_value(page, '.channel[data-channel="1"] form[data-group=target] input[name=value]',
               "27.25")


def test_a_race_between_two_writers_is_a_409_shown_on_the_page(page, lab):
    bridge, url, shots = lab
    assert api(url, "PUT", "/devices/{}/channels/0/target".format(FIRST), ALICE,
               json={"value": 25.0}).status_code == 200
    open_device(page, url, ALICE)
    wait_value(page, CH0 + "form[data-group=target] input[name=value]", "25")
    form = CH0 + "form[data-group=target] "
    page.fill(form + "input", "24.5")
    # Bob writes, and this page submits at once, before it could see his change.
    status = page.evaluate("""async ([path, token]) => {
        const r = await fetch(path, {method: "PUT", body: JSON.stringify({value: 26.5}),
            headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"}});
        document.querySelector('%sform[data-group=target]').requestSubmit();
        return r.status;
    }""" % CH0, ["devices/{}/channels/0/target".format(FIRST), BOB])
    assert status == 200
    page.wait_for_selector(form + ".message.error")
    assert "someone changed it meanwhile" in page.inner_text(form + ".message")
    assert "value 26.5" in page.inner_text(form + ".message")
    assert device(bridge, lambda d: d.get_pid())[0]["target"] == 26.5
    wait_value(page, CH0 + "form[data-group=target] input[name=value]", "26.5")
    results = [(e["who"], e["result"]) for e in api(url, "GET", "/audit").json()[-2:]]
    assert results == [("bob", "ok"), ("alice", "conflict")]


def test_a_target_ramped_from_the_page_shows_its_progress(page, lab):
    bridge, url, shots = lab
    api(url, "POST", "/devices/{}/channels/0/engage".format(FIRST), ALICE)
    assert api(url, "PUT", "/devices/{}/channels/0/target".format(FIRST), ALICE,
               json={"value": 25.0}).status_code == 200
    open_device(page, url, ALICE)
    form = CH0 + "form[data-group=target] "
    wait_value(page, form + "input[name=value]", "25")
    page.fill(form + "input[name=value]", "26")
    page.fill(form + "input[name=ramp]", "0")
    page.click(form + "button[type=submit]")
    page.wait_for_selector(form + ".message.error")
    assert "ramp: a rate above 0 K/s" in page.inner_text(form + ".message")
    page.fill(form + "input[name=value]", "26")
    page.fill(form + "input[name=ramp]", "0.01")  # 100 s of device time, 2 s here
    page.click(form + "button[type=submit]")
    page.wait_for_selector(form + ".message.ok")
    assert "ramp started" in page.inner_text(form + ".message")
    procedures = CH0 + "form.autotune "
    wait_text(page, procedures + ".job-state", "to 26 °C at 0.01 K/s")
    page.screenshot(path=str(shots / "ramp.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        page.locator(CH0 + ".settings").screenshot(path=str(RAMP_SHOT))
    wait_text(page, procedures + ".job-state", "done", timeout=60_000)
    wait_value(page, form + "input[name=value]", "26")
    assert device(bridge, lambda d: d.get_pid())[0]["target"] == 26.0
    [entry] = api(url, "GET", "/audit").json()[-1:]
    assert (entry["what"], entry["who"], entry["result"]) == ("ramp", "alice", "ok")
    assert entry["requested"] == {"target": 26.0, "rate": 0.01, "expect": 25.0}
    assert page.errors == [], page.errors


def test_the_autotune_shows_its_progress_and_abort_restores(page, lab):
    bridge, url, shots = lab
    settings = "/devices/{}/channels/0/settings".format(FIRST)
    api(url, "POST", "/devices/{}/channels/0/engage".format(FIRST), ALICE)
    before = api(url, "GET", settings).json()
    open_device(page, url, ALICE)
    form = CH0 + "form.autotune "
    page.click(form + "button.start")
    page.click(form + ".message.confirm button.danger")
    page.wait_for_selector(form + ".job.running")
    wait_text(page, form + ".job-state", "relay", timeout=60_000)
    page.screenshot(path=str(shots / "autotune.png"), full_page=True)
    page.click(form + "button.abort")
    wait_text(page, form + ".job-state", "aborted", timeout=60_000)
    after = api(url, "GET", settings).json()
    for key in ("target", "pid", "pid_engaged", "limits"):
        assert after[key] == before[key], key
    whats = [(e["what"], e["result"]) for e in api(url, "GET", "/audit").json()[-3:]]
    assert whats == [("autotune", "started"), ("abort", "ok"), ("autotune", "aborted")]
    assert page.errors == [], page.errors


def test_a_snapshot_of_a_2025_device_restores_onto_a_2023_one(page, lab, tmp_path):
    bridge, url, shots = lab
    assert api(url, "PUT", "/devices/{}/channels/0/pid".format(FIRST), ALICE,
               json={"kp": 0.61, "ki": 0.021}).status_code == 200
    assert api(url, "PUT", "/devices/{}/channels/1/postfilter".format(FIRST), ALICE,
               json={"rate": 25.0}).status_code == 200
    open_device(page, url, ALICE)
    with page.expect_download() as download:
        page.click("#snapshot-download")
    path = tmp_path / "snapshot.json"
    download.value.save_as(path)
    with served_bridge(tmp_path / "old", simulation=1, poll_period=0.2, firmware="2023",
                       write_tokens=TOKENS) as (old, old_url):
        wait_until(lambda: old.devices[FIRST].poller.gains, 30, "the polled settings")
        open_device(page, old_url, BOB)
        page.set_input_files("#snapshot-file", str(path))
        page.wait_for_selector(".snapshot-diff")
        settings = page.inner_text(".snapshot-diff")
        assert "channels[0].pid.kp" in settings and "0.61" in settings
        page.click("#snapshot-restore")
        page.click("#snapshots button.danger >> text=Confirm")
        wait_text(page, "#snapshots", "restored:")
        page.screenshot(path=str(shots / "snapshot-restored.png"), full_page=True)
        s = api(old_url, "GET", "/devices/{}/channels/1/settings".format(FIRST)).json()
        assert s["firmware"] == "2023" and s["postfilter"] == 21.25, "2025's 25 Hz filter"
        s0 = api(old_url, "GET", "/devices/{}/channels/0/settings".format(FIRST)).json()
        assert s0["pid"]["kp"] == pytest.approx(0.61) and s0["pid"]["ki"] == pytest.approx(0.021)
        assert "bob" in api(old_url, "GET", "/audit").json()[-1]["who"]
        assert api(old_url, "GET", "/audit").json()[-1]["what"] == "restore"
        # Off its page before that bridge shuts down (a page left open on a
        # bridge going away rightly sees failed requests).
        page.goto("about:blank")
    assert page.errors == [], page.errors


def test_a_step_test_from_the_page_shows_its_figures(page, lab):
    bridge, url, shots = lab
    api(url, "POST", "/devices/{}/channels/0/engage".format(FIRST), ALICE)
    before = api(url, "GET", "/devices/{}/channels/0/settings".format(FIRST)).json()
    open_device(page, url, ALICE)
    form = CH0 + "form.autotune "
    page.fill(form + "input[name=delta]", "0.3")
    page.click(form + "button.step")
    page.click(form + ".message.confirm button.danger")
    wait_text(page, form + ".job-state", "step_test by alice")
    wait_text(page, form + ".job-state", "done", timeout=120_000)
    assert "up: rise" in page.inner_text(form + ".step-result")
    after = api(url, "GET", "/devices/{}/channels/0/settings".format(FIRST)).json()
    assert after["target"] == before["target"], "the target is put back"
    assert api(url, "GET", "/audit").json()[-1]["what"] == "step_test"
    assert page.errors == [], page.errors
