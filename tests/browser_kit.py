"""Helpers for the live-view tests (a helper module, not a test module).

* :func:`served_bridge`: the bridge app on a real uvicorn server on a free
  loopback port, in a thread of this process, so tests can both talk HTTP
  to it (streams need a real server) and look at the bridge's internals.
* :func:`read_events` / :func:`open_stream`: a Server-Sent Events reader.
* :func:`launch_chromium`: Debian's Chromium driven by Playwright, or a
  skip with the reason when either is missing.
* :func:`record_errors`: a page's console errors and uncaught exceptions.
"""

import contextlib
import json
import shutil
import threading
import time
from typing import Iterator, Optional

import httpx
import pytest
import uvicorn

from harness import bridge_config, free_port, wait_until
from thermostat_ctrl.bridge.web.app import create_app

#: Debian's Chromium (Playwright's own browser download is not used).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextlib.contextmanager
def served_bridge(data_dir, **config) -> Iterator[tuple]:
    """Yield (bridge, base URL) of a bridge (see ``harness.bridge_config``)
    served by uvicorn from a background thread."""
    app = create_app(bridge_config(data_dir, **config))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 30, "uvicorn started")
        assert server.started, "uvicorn did not start"
        yield app.state.bridge, "http://127.0.0.1:{}".format(port)
    finally:
        server.should_exit = True
        thread.join(30)


def read_events(lines: Iterator[str]) -> Iterator[dict]:
    """Parse Server-Sent Event lines into dicts (``event``, ``id``, ``data``
    decoded as JSON, ``retry``); comments are skipped."""
    event: dict = {}
    for line in lines:
        if line == "":
            if event:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        event[name] = event[name] + "\n" + value if name == "data" and name in event else value


@contextlib.contextmanager
def open_stream(url: str, headers: Optional[dict] = None, timeout: float = 10.0):
    """Yield (response, events iterator) of a streaming GET."""
    with httpx.Client(timeout=timeout) as client:
        with client.stream("GET", url, headers=headers or {}) as response:
            yield response, read_events(response.iter_lines())


def next_of(events: Iterator[dict], kind: str, timeout: float = 10.0) -> dict:
    """The next event of type ``kind``."""
    deadline = time.monotonic() + timeout
    for event in events:
        if event.get("event") == kind:
            return event
        assert time.monotonic() < deadline, "no {!r} event within {} s".format(kind, timeout)
    raise AssertionError("the stream ended before a {!r} event".format(kind))


def launch_chromium(playwright):
    """Chromium from Debian, headless; skips with the reason when it cannot run."""
    if not shutil.which(CHROMIUM):
        pytest.skip("no Chromium at {} (apt-get install chromium)".format(CHROMIUM))
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM,
                                          args=["--no-sandbox", "--disable-gpu"])
    except Exception as e:  # Playwright reports a browser that will not start this way
        pytest.skip("Chromium does not start here: {}".format(str(e).splitlines()[0]))


def record_errors(page) -> list:
    """The list, kept up to date, of ``page``'s console errors and uncaught
    exceptions; a failed load names its URL (Chromium's own message does not)."""
    errors: list = []

    def console(message):
        if message.type == "error":
            where = message.location.get("url") if message.text.startswith("Failed to load") else ""
            errors.append(message.text + (": " + where if where else ""))

    page.on("console", console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors
