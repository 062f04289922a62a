"""The alarm banner and the channel states in Debian's Chromium: an unplugged
sensor shows at once as a critical alarm and a FAULT badge, acknowledge and
silence work with the token, the banner clears with the fault; a channel
with its PID off shows its constant current, no setpoint and no error."""

import asyncio
import concurrent.futures
from pathlib import Path

import httpx
import pytest

from browser_kit import served_bridge
from harness import FIRST, wait_until
from thermostat_ctrl.driver import Thermostat

pytest.importorskip("playwright.sync_api", reason="Playwright is not installed"
                                                 " (pip install playwright)")

ROOT = Path(__file__).resolve().parent.parent
SHOT = ROOT / "scripts" / "screenshots" / "alarm.png"
TOKEN = "a-token-for-the-alarm-test"
VIEWPORT = {"width": 1400, "height": 1000}


def test_an_unplugged_sensor_on_the_page_acknowledged_silenced_and_cleared(browser, tmp_path):
    with served_bridge(tmp_path, simulation=2, poll_period=0.2, token=TOKEN) as (bridge, url):
        sim = bridge.devices[FIRST].simulation.sim
        wait_until(lambda: bridge.devices[FIRST].poller.polls_ok >= 5, 30, "5 polls")
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda dialog: dialog.accept(TOKEN))
        page.goto(url + "/#device=" + FIRST)
        page.wait_for_function("() => window.liveView && liveView.status")
        assert page.locator("#alarms").is_hidden()
        sim.faults.unplugged = {1}
        banner = page.locator("#alarms li[data-rule=sensor_open]")
        banner.wait_for(timeout=15_000)
        assert FIRST + " ch1: no temperature reading" in banner.inner_text()
        assert "CRITICAL" in banner.inner_text()
        badge = page.locator("article[data-channel='1'] h2 .badge")
        page.wait_for_function(
            "() => document.querySelector(\"article[data-channel='1'] h2 .badge\")"
            ".textContent === 'FAULT'")
        page.screenshot(path=str(tmp_path / "alarm.png"))
        SHOT.write_bytes((tmp_path / "alarm.png").read_bytes())
        # Acknowledge (the page asks for the token once).
        banner.get_by_role("button", name="Acknowledge").click()
        page.wait_for_function("() => document.querySelector('#alarms li').textContent"
                               ".includes('acknowledged by page')")
        [alarm] = httpx.get(url + "/alarms", params={"device": FIRST}).json()
        assert alarm["acknowledged_by"] == "page"
        page.locator("#alarms li button", has_text="Silence 1 h").click()
        page.wait_for_function("() => document.querySelector('#alarms').textContent"
                               ".includes('1 silenced')")
        [silence] = httpx.get(url + "/alarms/silences").json()
        assert (silence["device"], silence["channel"], silence["rule"]) == (FIRST, 1,
                                                                              "sensor_open")
        sim.faults.unplugged = set()
        page.wait_for_function("() => document.querySelector('#alarms').hidden", timeout=15_000)
        page.wait_for_function(
            "() => document.querySelector(\"article[data-channel='1'] h2 .badge\")"
            ".textContent !== 'FAULT'")
        assert badge.inner_text() in ("SETTLING", "IN BAND", "OUT OF BAND", "PID OFF")
        assert errors == []
        context.close()


def test_without_the_token_the_buttons_say_why_and_change_nothing(browser, tmp_path):
    with served_bridge(tmp_path, simulation=1, poll_period=0.2) as (bridge, url):
        sim = bridge.devices[FIRST].simulation.sim
        sim.faults.unplugged = {0}
        wait_until(lambda: bridge.alarms.active(), 30, "the alarm")
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept("anything"))
        page.goto(url + "/")
        page.locator("#alarms li").first.get_by_role("button", name="Acknowledge").click()
        page.wait_for_function("() => document.querySelector('#alarms .problem')")
        assert "need the bridge's token" in page.locator("#alarms .problem").inner_text()
        assert bridge.alarms.active()[0].acknowledged_by is None
        context.close()


async def constant_current(port: int, ch: int, amps: float) -> None:
    """Switch channel ``ch`` of the simulator on ``port`` to a constant current."""
    async with Thermostat("127.0.0.1", port) as driver:
        await driver.set_current(ch, amps)


def test_a_channel_with_its_pid_off_shows_its_current_not_a_setpoint(browser, tmp_path):
    with served_bridge(tmp_path, simulation=1, poll_period=0.2, memory_s=60.0) as (bridge, url):
        device = bridge.devices[FIRST]
        wait_until(lambda: device.poller.polls_ok >= 5, 30, "5 polls")
        # On a thread of its own: Playwright's sync API holds this thread's event loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, constant_current(device.simulation.port, 1, 0.25)).result(30)
        wait_until(lambda: device.poller.latest.report[1]["pid_engaged"] is False, 10, "PID off")
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(url + "/#device=" + FIRST)
        page.wait_for_function("() => window.liveView && liveView.status && liveView.live.ts.length > 5")
        page.wait_for_function(
            "() => document.querySelector(\"article[data-channel='1'] h2 .badge\")"
            ".textContent === 'PID OFF'")
        now = page.locator("article[data-channel='1'] .now").inner_text()
        assert "constant current 0.250 A" in now and "setpoint" not in now and "mK" not in now
        # No setpoint or error drawn where the PID is off.
        temperature, setpoint, error = page.evaluate(
            "() => [liveView.plots[5].u.data[1], liveView.plots[5].u.data[2],"
            " liveView.plots[6].u.data[1]].map((s) => s.slice(-3))")
        assert all(isinstance(v, float) for v in temperature)
        assert setpoint == [None, None, None] and error == [None, None, None]
        context.close()
