"""Fixtures shared by the test modules (helpers live in :mod:`harness`)."""

import subprocess

import pytest

from harness import polled, running_bridge


@pytest.fixture
async def bridge_client(tmp_path):
    """(bridge, client) of an in-process bridge on one simulated device, polled 5 times."""
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 5)
        yield bridge, client


@pytest.fixture
async def lab_client(tmp_path):
    """(bridge, client) of an in-process bridge on three simulated devices, each polled 5 times."""
    async with running_bridge(tmp_path, simulation=3) as (bridge, client):
        await polled(bridge, 5)
        yield bridge, client


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (skips with the reason
    when Playwright or Chromium is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed"
                                                                 " (pip install playwright)")
    from browser_kit import launch_chromium
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs (needs root, as CI runs)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: {}".format(r.stderr.strip()))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
