"""The shared test harness (a helper module, not a test module).

* Processes: :class:`Process` (a server whose stderr is collected),
  :func:`bridge_process` (``thermostat_bridge --simulation`` on a free port),
  :func:`run_cli`.
* In-process bridge: :func:`bridge_config`, :func:`running_bridge` (the app
  with its lifespan and an httpx client), :func:`polled`.
* :class:`TamperProxy`: a loopback TCP proxy in front of the simulator that
  records every command line a client sends and can replace the device's
  reply lines (invalid JSON, the doubled-brace error reply, ...).
* :class:`LoopThread` / :class:`SimThread`: an asyncio loop (with a
  simulator) in a background thread, so a subprocess (controller, bridge)
  can talk to it while the test drives it synchronously.
* :func:`hold_all_slots`: occupy the simulator's 4 connection slots.
* Reply-shape checks, condition waits and CSV readers.
* :func:`fill`: take every free byte of a disk (the ``small_disk`` fixture's).
"""

import asyncio
import concurrent.futures
import contextlib
import csv
import errno
import gc
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, TypeVar

import httpx

from thermostat_ctrl.bridge import config as bridge_config_module
from thermostat_ctrl.bridge.runtime import tune_process
from thermostat_ctrl.bridge.storage.csvformat import log_files
from thermostat_ctrl.bridge.web.app import create_app
from thermostat_ctrl.simulator import Simulator

T = TypeVar("T")
Mangle = Callable[[bytes], Optional[bytes]]

SLOTS = 4
_TERMINATORS = re.compile(rb"[\r\n]")

#: Lines that are not a valid reply to ``report`` (each makes a ProtocolError).
INVALID_REPLIES = (
    b'{"channel": 0, "temperature": 25.0',            # JSON cut short
    b"[{\"channel\": 0, \"temperature\": NaN}, {\"channel\": 1, \"temperature\": NaN}]",
    b'[{"channel": 0}]',                                 # one channel only
    b'"report"',                                         # a JSON string
    b"\xff\xfe\x00garbage",                              # not ASCII
    b"",                                                 # an empty line
)
#: The firmware's doubled-brace error reply (``load`` without saved config).
DOUBLE_BRACE = b'{{"error": "flash config not found"}}'

#: Keys that identify each show reply, to check that a reply matches its command.
REPLY_KEYS = {
    "report": {"channel", "temperature", "pid_engaged", "tec_i"},
    "pid": {"channel", "parameters", "target"},
    "output": {"channel", "max_i_pos", "max_v"},
    "postfilter": {"channel", "rate"},
    "b_parameter": {"channel", "params"},
}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_channels(reply: Any, kind: str) -> None:
    """Assert ``reply`` is the two channel objects of a ``kind`` show reply."""
    assert isinstance(reply, list) and len(reply) == 2, reply
    for ch, obj in enumerate(reply):
        assert obj["channel"] == ch and REPLY_KEYS[kind] <= set(obj), (kind, obj)
        for other, keys in REPLY_KEYS.items():
            if other != kind:
                assert not (keys - {"channel"}) <= set(obj), (kind, "looks like", other, obj)


async def wait_for(condition: Callable[[], Any], timeout: float = 10.0,
                   what: str = "condition", interval: float = 0.005) -> Any:
    """Await until ``condition()`` (sync or async) is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(interval)


def wait_until(condition: Callable[[], T], timeout: float = 15.0, what: str = "condition",
               interval: float = 0.01) -> T:
    """Blocking variant of :func:`wait_for`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


class TamperProxy:
    """Forwards loopback TCP connections to ``upstream_port``, line by line.

    ``lines`` records every command line clients sent (split on CR/LF like
    the device, empty lines dropped).  While ``mangle`` is set, each reply
    line from the device is passed to it and replaced by its result (None:
    forwarded unchanged); replacement lines get a newline appended.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lines: list = []
        self.mangle: Optional[Mangle] = None
        self.port = 0
        self._server: Optional[asyncio.base_events.Server] = None
        self._tasks: set = set()
        self._writers: set = set()

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Close the listener and every proxied connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        pumps = [asyncio.ensure_future(self._requests(reader, up_writer)),
                 asyncio.ensure_future(self._replies(up_reader, writer))]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
            self._tasks.discard(task)
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)

    async def _requests(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        partial = b""
        while True:
            data = await reader.read(4096)
            if not data:
                return
            pieces = _TERMINATORS.split(partial + data)
            partial = pieces.pop()
            self.lines.extend(p for p in pieces if p)
            up.write(data)

    async def _replies(self, up: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await up.readline()
            if not line.endswith(b"\n"):
                return
            mangle = self.mangle
            replacement = mangle(line.rstrip(b"\n")) if mangle is not None else None
            writer.write(line if replacement is None else replacement + b"\n")


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop; block for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Call ``fn()`` on the loop's thread; block for its result."""
        future: concurrent.futures.Future = concurrent.futures.Future()

        def work() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:  # handed to the caller
                future.set_exception(e)

        self.loop.call_soon_threadsafe(work)
        return future.result(timeout)

    def close(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class SimThread(LoopThread):
    """A :class:`Simulator` (and a :class:`TamperProxy` in front of it) served
    from a background thread, for tests that drive a subprocess."""

    def __init__(self, port: int = 0, proxy: bool = False, **sim_options):
        super().__init__()
        self.sim = Simulator(**sim_options)
        self.port = self.run(self.sim.start("127.0.0.1", port))
        self.proxy: Optional[TamperProxy] = None
        if proxy:
            self.proxy = TamperProxy(self.port)
            self.run(self.proxy.start())

    def set_fault(self, name: str, value: Any) -> None:
        """Set ``sim.faults.<name>`` on the simulator's thread."""
        self.call(lambda: setattr(self.sim.faults, name, value))

    def stop(self) -> None:
        """Stop proxy, simulator and loop."""
        if self.proxy is not None:
            self.run(self.proxy.stop())
        self.run(self.sim.stop())
        self.close()


async def open_raw(port: int) -> tuple:
    """A plain TCP connection to the simulator: (reader, writer)."""
    return await asyncio.open_connection("127.0.0.1", port)


async def _alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    try:
        writer.write(b"hwrev\n")
        line = await asyncio.wait_for(reader.readline(), 1.0)
    except (OSError, asyncio.TimeoutError):
        return False
    return line.endswith(b"\n")


async def hold_all_slots(sim: Simulator) -> list:
    """Drop every connection and take all 4 slots with idle clients of our
    own (retrying if a client under test wins a slot in between); return
    their (reader, writer) pairs."""
    for _ in range(20):
        sim.drop_connections()
        held = [await open_raw(sim.port) for _ in range(SLOTS)]
        if all([await _alive(r, w) for r, w in held]):
            return held
        for _, w in held:
            w.transport.abort()
    raise AssertionError("could not take every connection slot")


async def release(held: list, sim: Simulator, keep: int = 0) -> None:
    """Close held connections down to ``keep`` and wait until the simulator
    has freed their slots."""
    while len(held) > keep:
        held.pop()[1].close()
    await wait_for(lambda: sim.connection_count <= keep, what="slots freed")


def fill(disk) -> str:
    """Take every free byte of ``disk``; the filler's path."""
    path = os.path.join(disk, "filler")
    with open(path, "wb", buffering=0) as f:
        block = b"\0" * 4096
        while True:
            try:
                f.write(block)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        while True:  # the last bytes of the last page too
            try:
                f.write(b"\0")
            except OSError:
                return path


def csv_files(data_dir: Path) -> list:
    """The CSV files of one device folder in write order (day, then sequence number)."""
    data_dir = Path(data_dir)
    return [data_dir / name for name in log_files(p.name for p in data_dir.iterdir())]


def read_log(data_dir: Path) -> list:
    """Every row of every CSV file of a device folder as (file name, header,
    row) after checking that each file parses, every line is complete and
    has the header's width, and timestamps strictly increase within each file."""
    out = []
    for path in csv_files(data_dir):
        data = path.read_bytes()
        assert data.endswith(b"\n"), "{}: torn last line {!r}".format(path.name, data[-80:])
        rows = list(csv.reader(data.decode("ascii").splitlines()))
        header, body = rows[0], rows[1:]
        assert header[:2] == ["time", "ts"], (path.name, header)
        last = None
        for row in body:
            assert len(row) == len(header), (path.name, row)
            ts = int(row[1])
            assert last is None or ts > last, "{}: ts {} after {}".format(path.name, ts, last)
            last = ts
            out.append((path.name, header, row))
    return out


def parse_csv(text: str) -> list:
    """Rows of a CSV body after checking the format rules (Go encoding/csv-like)."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\n\n" not in text and "\r" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert all(len(r) == len(rows[0]) for r in rows)
    return rows


# ------------------------------------------------------- in-process bridge

#: Poll period of the in-process test bridges.
PERIOD = 0.05
#: Name of the first (or only) device.
FIRST = "sim0"


def bridge_config(data_dir, devices=(), simulation: int = 1, **kwargs):
    """A config with fast polls and fast simulated time: ``simulation``
    simulated devices, or the real ``devices`` given."""
    options = dict(data_dir=str(data_dir), poll_period=PERIOD, memory_s=60.0)
    if devices:
        options["devices"] = list(devices)
    else:
        options.update(simulation=simulation, speed=20.0)
    options.update(kwargs)
    return bridge_config_module.build(**options)


def tuned_like_a_bridge() -> None:
    """Tune this process as a bridge process is (:func:`~thermostat_ctrl.bridge.
    runtime.tune_process`), after collecting the garbage of earlier tests: the
    suite's heap grows test by test, and a full collection of it holds the
    GIL long enough to delay a poll, or the simulated time of a simulator."""
    gc.collect()
    tune_process()


@contextlib.asynccontextmanager
async def running_bridge(data_dir, **kwargs):
    """Yield (bridge, client) for an app (see :func:`bridge_config`), lifespan
    running, in a process tuned as a bridge's is."""
    tuned_like_a_bridge()
    app = create_app(bridge_config(data_dir, **kwargs))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield app.state.bridge, client


async def polled(bridge, n: int, device: Optional[str] = None) -> None:
    """Wait until ``device`` (default: every device) has made at least ``n``
    successful polls and its store (on a thread of its own) has taken them."""
    devices = [bridge.devices[device]] if device else list(bridge.devices.values())

    def done(d) -> bool:
        store = d.store
        return d.poller.polls_ok >= n and \
            store.rows_written + store.write_errors + store.out_of_order >= n

    await wait_for(lambda: all(done(d) for d in devices), what="{} polls".format(n))


# ---------------------------------------------------------------- processes

BRIDGE = [sys.executable, "-m", "thermostat_ctrl.bridge.cli"]
SERVING = re.compile(r"serving \d+ device\(s\) on (http://127\.0\.0\.1:\d+)")


def run_cli(*args, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run ``thermostat_bridge`` to completion."""
    return subprocess.run(BRIDGE + list(args), capture_output=True, text=True, timeout=timeout)


class Process:
    """A server process whose stderr is collected by a thread."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=env)
        self.lines: list = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for_line(self, pattern: re.Pattern, timeout: float = 30.0) -> re.Match:
        """The first stderr line matching ``pattern``, waiting for it to appear."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError("no line matching {!r}; stderr:\n{}".format(
            pattern.pattern, "".join(self.lines)))

    def stop(self) -> int:
        """SIGINT the process; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def bridge_process(data_dir, *extra, simulation: int = 1):
    """Run ``thermostat_bridge --simulation N`` on a free loopback port; yield (process, url)."""
    process = Process(BRIDGE + ["--simulation", str(simulation), "--speed", "20", "--port", "0",
                                "--bind", "127.0.0.1", "--data-dir", str(data_dir),
                                "--poll-period", "0.1", *extra])
    try:
        url = process.wait_for_line(SERVING).group(1)
        yield process, url
    finally:
        process.stop()


def healthy(url: str, query: str = ""):
    """The /health response when it is 200, else None (also when not answering)."""
    try:
        r = httpx.get(url + "/health" + query, timeout=2)
    except httpx.TransportError:
        return None
    return r if r.status_code == 200 else None


def only(bridge):
    """The first (in single-device tests, the only) device of a bridge,
    simulated or real."""
    return next(iter(bridge.devices.values()))
