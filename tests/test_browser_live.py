"""The live view in a real browser: Debian's Chromium driven by Playwright,
against a bridge on two simulated devices (one with a day of history).

Skipped, with the reason, where Playwright or Chromium cannot run.
Screenshots of the overview and of one device's page are saved in the
test run's temporary folder; with ``UPDATE_SCREENSHOTS=1`` the device page
is also written to ``scripts/screenshots/live-view.png`` (the README's).
"""

import importlib.util
import math
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from browser_kit import record_errors, served_bridge
from harness import FIRST, now_ms, wait_until

pytest.importorskip("playwright.sync_api", reason="Playwright is not installed"
                                                 " (pip install playwright)")

ROOT = Path(__file__).resolve().parent.parent
README_SHOT = ROOT / "scripts" / "screenshots" / "live-view.png"
SECOND = "sim1"
VIEWPORT = {"width": 1400, "height": 1000}


def _gen_history():
    spec = importlib.util.spec_from_file_location("gen_history", ROOT / "scripts" / "gen_history.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(bridge, url, screenshot folder): two simulated devices; sim0
    has the history of the day before and of the day up to half an hour ago."""
    data = tmp_path_factory.mktemp("browser-data")
    gen, day_ms = _gen_history(), 86_400_000
    (data / FIRST).mkdir()
    until = now_ms() - 1_800_000  # just after midnight, its day is yesterday
    gen.write_day(str(data / FIRST), until // day_ms - 1)
    gen.write_day(str(data / FIRST), until // day_ms, until_ms=until)
    with served_bridge(data, simulation=2, poll_period=0.2, memory_s=120.0) as (bridge, url):
        wait_until(lambda: all(d.poller.polls_ok >= 10 and d.poller.targets
                               for d in bridge.devices.values()), 30, "10 polls of each device")
        yield bridge, url, tmp_path_factory.mktemp("screenshots")


class Watched:
    """A page whose console errors and requests are recorded."""

    def __init__(self, browser, url, **context):
        self.context = browser.new_context(viewport=VIEWPORT, **context)
        self.page = self.context.new_page()
        self.errors, self.requests = record_errors(self.page), []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = url

    def foreign(self):
        return [u for u in self.requests if not u.startswith(
            (self.url + "/", "blob:" + self.url + "/", "data:"))]

    def open_device(self, name=FIRST):
        self.page.goto("{}/#device={}".format(self.url, name))
        self.page.wait_for_function(
            "() => window.liveView && liveView.plots && liveView.plots.length === 10"
            " && liveView.live.ts.length > 5 && liveView.status"
            # both channels' settings read (a device hung before then would answer 503)
            " && document.querySelectorAll('.settings details').length === 2")
        return self.page

    def close(self):
        self.context.close()


@pytest.fixture
def watched(browser, lab):
    bridge, url, shots = lab
    w = Watched(browser, url)
    yield w
    w.close()


#: Where a line breaks: the page and /series each mark a gap (no poll for a
#: few periods) with one null point, at a time of their own inside it.
GAP = "gap"


def plotted(page, plot=0, series=1):
    """(ts ms, value) of one plot's drawn points, read from the page, GAP where its line breaks."""
    xs, ys = page.evaluate(
        "([p, s]) => [liveView.plots[p].u.data[0], liveView.plots[p].u.data[s]]", [plot, series])
    return [GAP if y is None else (round(x * 1000), y) for x, y in zip(xs, ys)]


def served(rows, name):
    """(ts ms, value) of /series rows in the form of :func:`plotted`."""
    return [GAP if r[name] is None else (r["ts"], r[name]) for r in rows]


def test_overview_and_page_load_with_no_error_and_nothing_from_elsewhere(watched, lab):
    bridge, url, shots = lab
    page = watched.page
    page.goto(url + "/")
    page.wait_for_selector(".card[data-device='{}'] .state".format(SECOND))
    for name in bridge.devices:
        # (waited for: on a loaded host a poll may come late, and the card
        # rightly says STALE for a moment)
        page.wait_for_function("name => { const t = document.querySelector("
                               "`.card[data-device='${name}']`).innerText;"
                               " return t.includes('LIVE') && t.includes('°C'); }", arg=name)
    # A sparkline per device and channel, for a wall screen.
    page.wait_for_function("() => document.querySelectorAll('.card canvas.spark').length === {}"
                           .format(2 * len(bridge.devices)))
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    page.locator(".card[data-device='{}']".format(FIRST)).click()
    page.wait_for_function("() => window.liveView && liveView.name === '{}' && liveView.status"
                           .format(FIRST))
    page.wait_for_function("() => liveView.live.ts.length > 5")
    page.wait_for_timeout(300)  # the plots of the latest frame
    page.screenshot(path=str(shots / "device.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shots / "device.png", README_SHOT)
    assert watched.errors == []
    assert watched.foreign() == []


def test_each_plot_holds_the_devices_samples(watched, lab):
    bridge, url, shots = lab
    page = watched.open_device()
    page.wait_for_function("() => liveView.live.ts.length > 20")
    points = plotted(page)
    rows = httpx.get(url + "/series", params={"device": FIRST, "from": points[0][0],
                                              "to": points[-1][0]}).json()
    assert points == served(rows, "temperature_ch0")
    columns = {2: ["tec_i_ch0", "i_set_ch0"], 3: ["tec_u_meas_ch0"], 4: ["pid_output_ch0"],
               7: ["tec_i_ch1", "i_set_ch1"], 8: ["tec_u_meas_ch1"], 9: ["pid_output_ch1"]}
    for plot, names in columns.items():
        for s, name in enumerate(names, 1):
            drawn = plotted(page, plot, s)  # later, perhaps with more samples
            start = next(i for i, p in enumerate(drawn) if p != GAP and p[0] == points[0][0])
            assert drawn[start:start + len(rows)] == served(rows, name), (plot, name)
    # The current limits are drawn with their values from the device.
    limit = page.evaluate("liveView.plots[2].u.data[3].find((v) => v != null)")
    assert limit == bridge.devices[FIRST].poller.limits[0]["max_i_pos"]


def test_a_new_sample_appears_within_2_s(watched, lab):
    page = watched.open_device()
    began = now_ms()
    page.wait_for_function("(t) => liveView.live.last > t && liveView.plots[0].u.data[0]"
                           ".at(-1) * 1000 >= t", arg=began, timeout=2000)
    assert now_ms() - began < 2000


def test_24_h_fetches_history_and_draws_it(watched, lab):
    bridge, url, shots = lab
    page = watched.open_device()
    with page.expect_response(lambda r: "/series?" in r.url and "max_points=" in r.url) as info:
        page.click("button[data-range='24h']")
    response = info.value
    rows = response.json()
    width = page.evaluate("Math.floor(document.querySelector('.channel .plots')"
                          ".getBoundingClientRect().width)")
    assert "max_points={}".format(width) in response.url
    page.wait_for_function("() => liveView.view.label === '24h' && liveView.shown.ts.length > 100")
    # Gaps left out: the page marks them at its own resolution of the downsampled rows.
    drawn = [p for p in plotted(page) if p != GAP]
    assert drawn == [p for p in served(rows, "temperature_ch0") if p != GAP]
    assert len(rows) > 100, "a day of history, downsampled to the plot's width"
    span = page.evaluate("[liveView.plots[0].u.scales.x.min, liveView.plots[0].u.scales.x.max]")
    assert span[1] - span[0] == pytest.approx(86_400, abs=5)
    # The half hour between the history and this run is drawn as a gap.
    xs = page.evaluate("liveView.plots[0].u.data[1]")
    assert None in xs[1:-1]


def test_zoom_by_dragging_and_back(watched, lab):
    page = watched.open_device()
    page.click("button[data-range='24h']")
    page.wait_for_function("() => liveView.view.label === '24h' && !liveView.fetching")
    box = page.locator(".channel[data-channel='0'] .u-over").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()
    page.wait_for_function("() => liveView.view.label === 'zoom' && !liveView.fetching",
                           polling=100)
    view = page.evaluate("liveView.view")
    assert view["to"] - view["from"] == pytest.approx(0.2 * 86_400_000, rel=0.05)
    span = page.evaluate("[liveView.plots[5].u.scales.x.min, liveView.plots[5].u.scales.x.max]")
    assert span == pytest.approx([view["from"] / 1000, view["to"] / 1000])
    page.click("#back")
    page.wait_for_function("() => liveView.view.label === '24h'", polling=100)
    page.click("#back")
    page.wait_for_function("() => liveView.view.kind === 'live'", polling=100)
    assert page.locator("#back").is_disabled()


def test_statistics_agree_with_series_over_the_same_window(watched, lab):
    bridge, url, shots = lab
    page = watched.open_device()
    page.click("button[data-range='1h']")
    page.wait_for_function("() => liveView.view.label === '1h' && !liveView.fetching")
    view = page.evaluate("liveView.view")
    stats = page.evaluate("liveView.stats()")
    rows = httpx.get(url + "/series", params={"device": FIRST, "from": math.floor(view["from"]),
                                              "to": math.ceil(view["to"]),
                                              "max_points": view["maxPoints"]}).json()
    for ch, s in enumerate(stats):
        values = [r["temperature_ch{}".format(ch)] for r in rows
                  if r["temperature_ch{}".format(ch)] is not None]
        mean = sum(values) / len(values)
        assert s["n"] == len(values)
        assert s["mean"] == pytest.approx(mean, rel=1e-12)
        assert s["min"] == min(values) and s["max"] == max(values)
        assert s["p2p"] == pytest.approx(max(values) - min(values))
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        assert s["std"] == pytest.approx(std, rel=1e-9)
        text = page.locator(".channel[data-channel='{}'] .stats".format(ch)).inner_text()
        assert str(len(values)) in text and "{:.4f}".format(mean) in text


def test_a_hung_device_shows_stale_then_disconnected_and_recovers(watched, lab):
    bridge, url, shots = lab
    simulation = bridge.devices[SECOND].simulation
    # Its targets stay put: a target step makes the page read the settings,
    # and a read under way when the device hangs is rightly answered 503.
    for ch in (0, 1):
        simulation.hold(ch)
    sim = simulation.sim
    poller = bridge.devices[SECOND].poller
    wait_until(lambda: poller.targets == [c.pid.target for c in sim.device.channels], 10,
               "the poller to read the targets the device holds")
    page = watched.open_device(SECOND)
    strip = page.locator("#strip .state")
    assert strip.inner_text() == "LIVE"
    sim.faults.hang = True
    try:
        page.wait_for_function("() => document.querySelector('#strip .state').textContent"
                               " === 'STALE'", timeout=5000)
        page.wait_for_function("() => document.querySelector('#strip .state').textContent"
                               " === 'DISCONNECTED'", timeout=10000)
        page.wait_for_function("() => document.querySelector('#strip').textContent"
                               ".includes('timeout')", timeout=5000)
    finally:
        sim.faults.hang = False
    page.wait_for_function("() => document.querySelector('#strip .state').textContent === 'LIVE'",
                           timeout=10000)
    assert watched.errors == []


def test_the_csv_link_downloads_the_visible_range(watched, lab):
    bridge, url, shots = lab
    page = watched.open_device()
    page.click("button[data-range='1h']")
    page.wait_for_function("() => liveView.view.label === '1h' && !liveView.fetching")
    href = page.get_attribute("#csv", "href")
    view = page.evaluate("liveView.view")
    assert href == "data.csv?device={}&from={}&to={}".format(
        FIRST, math.floor(view["from"]), math.ceil(view["to"]))
    with page.expect_download() as info:
        page.click("#csv")
    body = Path(info.value.path()).read_text()
    assert body == httpx.get(url + "/" + href).text
    assert body.count("\n") > 1000


def test_docs_render_offline(watched, lab):
    bridge, url, shots = lab
    page = watched.page
    page.goto(url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock-summary-path[data-path='/stream']")
    assert watched.foreign() == []
    assert watched.errors == []
    # ReDoc renders too, its menu's logo included, without fetching anything foreign.
    page.goto(url + "/redoc")
    page.wait_for_selector("text=Server-Sent Events", timeout=20000)
    page.wait_for_selector("img[alt='redocly logo']", state="attached")
    assert watched.foreign() == []
    assert watched.errors == []


def test_with_protect_reads_the_page_says_how_to_give_the_token(browser, tmp_path):
    token = "a-token-for-the-browser-test"
    with served_bridge(tmp_path, token=token, protect_reads=True) as (bridge, url):
        wait_until(lambda: bridge.devices[FIRST].poller.polls_ok >= 5, 20, "5 polls")
        # Headless Chromium cannot show the sign-in dialog; the answer it would show is:
        anonymous = Watched(browser, url)
        answer = anonymous.page.request.get(url + "/", headers={"Accept": "text/html"})
        assert answer.status == 401 and "token as the password" in answer.text()
        anonymous.close()
        signed_in = Watched(browser, url, http_credentials={"username": "lab",
                                                            "password": token})
        page = signed_in.open_device()
        page.wait_for_function("() => liveView.status && liveView.live.ts.length > 5")
        began = time.monotonic()
        page.wait_for_function("(t) => liveView.live.last > t", arg=now_ms(), timeout=3000)
        assert time.monotonic() - began < 3
        signed_in.close()
