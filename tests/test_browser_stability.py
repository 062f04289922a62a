"""The stability panel in a real browser (Debian's Chromium via Playwright):
the figures and the Allan deviation plot of the visible window, its JSON and
CSV links.  A screenshot of the device page with a day of history is saved
in the test run's temporary folder (``stability.png``)."""

import importlib.util
import re
from pathlib import Path

import httpx
import pytest

from browser_kit import record_errors, served_bridge
from harness import FIRST, now_ms, wait_until

ROOT = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(bridge, url, screenshot folder): one simulated device polled every
    second, with the history of the last day up to half an hour ago."""
    spec = importlib.util.spec_from_file_location("gen_history", ROOT / "scripts" / "gen_history.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    data = tmp_path_factory.mktemp("stability-data")
    (data / FIRST).mkdir()
    until = now_ms() - 1_800_000
    gen.write_day(str(data / FIRST), until // DAY_MS - 1)
    gen.write_day(str(data / FIRST), until // DAY_MS, until_ms=until)
    with served_bridge(data, poll_period=1.0, memory_s=120.0) as (bridge, url):
        wait_until(lambda: bridge.devices[FIRST].poller.polls_ok >= 5, 30, "5 polls")
        yield bridge, url, tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser, lab):
    bridge, url, shots = lab
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.errors = record_errors(page)
    page.goto("{}/#device={}".format(url, FIRST))
    yield page
    context.close()


def panel_answer(page, url, channel):
    """The /stability answer of the JSON link of a channel's panel."""
    href = page.locator(".channel[data-channel='{}'] .stability-json".format(channel)) \
        .get_attribute("href")
    return httpx.get(url + "/" + href, timeout=30).json()


def cell(page, channel, name):
    return page.locator(".channel[data-channel='{}'] .stability-figures th:text-is('{}') + td"
                        .format(channel, name)).inner_text()


def test_the_panel_shows_the_figures_and_plot_of_the_visible_window(page, lab):
    bridge, url, shots = lab
    page.wait_for_selector(".channel[data-channel='1'] .stability .allan-plot .u-over")
    for channel in (0, 1):
        answer = panel_answer(page, url, channel)
        assert cell(page, channel, "samples").startswith("{} in ".format(answer["n"]))
        assert answer["allan"], answer
    # A day: octaves of τ up to a tenth of it, the first the poll period.
    page.click("[data-range='24h']")
    page.wait_for_function(
        "() => /from=/.test(document.querySelector('.stability-json').href)"
        " && document.querySelector('.stability-json').href.includes('band_mk=10')"
        " && liveView.view.kind === 'range' && !liveView.fetching")
    wait_until(lambda: panel_answer(page, url, 0)["n"] > 80_000, 30, "a day of samples")
    answer = panel_answer(page, url, 0)
    page.wait_for_function("(n) => document.querySelector("
                           "'.channel[data-channel=\"0\"] .stability-figures').innerText"
                           ".includes(n + ' in ')", arg=answer["n"])
    assert [p["tau_s"] for p in answer["allan"]][:2] == [1.0, 2.0]
    assert answer["allan"][-1]["tau_s"] == 8192.0
    adev = cell(page, 0, "ADEV(1 s)")
    assert adev == "{:.4f} mK".format(answer["allan"][0]["adev_k"] * 1000)
    assert cell(page, 0, "within ±10 mK") == "{:.2f} %".format(100 * answer["in_band_fraction"])
    page.locator(".channel[data-channel='0'] .stability").screenshot(
        path=str(shots / "stability-panel.png"))
    page.screenshot(path=str(shots / "stability.png"), full_page=True)
    print("screenshots in", shots)
    # The CSV link downloads the table of the same window.
    link = page.locator(".channel[data-channel='0'] .stability-csv")
    assert re.search(r"stability\.csv\?device={}&channel=0&from=\d+&to=\d+".format(FIRST),
                     link.get_attribute("href"))
    with page.expect_download() as download:
        link.click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "tau_s,adev_k,lo_k,hi_k,terms,alpha"
    assert len(lines) == len(answer["allan"]) + 1
    assert page.errors == []


def test_a_range_too_long_says_why(page, lab):
    bridge, url, shots = lab
    page.wait_for_selector(".stability .allan-plot .u-over")
    # 200 days of 1 s polls: more samples than one answer computes on.
    page.evaluate("liveView.setView({kind: 'range', from: Date.now() - 200 * 86400e3,"
                  " to: Date.now(), label: 'zoom'})")
    page.wait_for_function("() => document.querySelector('.stability-note').innerText"
                           ".includes('more than the')")
    assert page.errors == [] or all("422" in e for e in page.errors)
