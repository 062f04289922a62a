"""The ARTIQ master sink (``--artiq-master HOST[:PORT]``): the lab's live
values as non-persistent datasets of an ``artiq_master``, for the
dashboard's applets.

Once a second at most, on a task of its own on the bridge's event loop,
each device's status snapshot (:func:`~..status.device_status`) becomes the
datasets of :mod:`thermostat_ctrl.artiq.datasets` (``thermostat.<device>.
ch<N>.temperature``, ``.error``, ``.target``, ``.state`` and the rolling
window ``.window_time`` / ``.window_temperature``), set through sipyco RPC
on the master's dataset database: target ``dataset_db`` (ARTIQ since
2024), else ``master_dataset_db`` (older masters).  Only fresh samples
enter the window; a device without one shows NaN and its connection as
state.  A master that is down or restarts is retried with backoff and
counted; the polls never wait for it.  The state it reports has the
shape of the other sinks' (:class:`~.influx.SinkState`), so ``/health``
and ``/metrics`` show it with them.
"""

import asyncio
import importlib.util
import logging
import threading
import time
from typing import TYPE_CHECKING, Optional

from ... import protocol
from ...aio import timeout
from ...artiq.datasets import WINDOW_S, LiveWindow, live_values
from .influx import SinkState

if TYPE_CHECKING:
    from ..runtime import Bridge

logger = logging.getLogger(__name__)

__all__ = ["ArtiqMasterSink", "parse_master", "DEFAULT_PORT", "TARGETS"]

#: The master's control port (``artiq_master --port-control``).
DEFAULT_PORT = 3251
#: The dataset database's RPC target, current name first.
TARGETS = ("dataset_db", "master_dataset_db")
#: Seconds between two updates of a device's datasets.
PERIOD_S = 1.0
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
#: Seconds allowed per RPC call to the master.
TIMEOUT_S = 10.0
#: Display hints (dataset metadata) for the dashboard.
METADATA = {"temperature": {"unit": "degC", "precision": 4},
            "target": {"unit": "degC", "precision": 4},
            "error": {"unit": "K", "precision": 5}}


async def _close(client) -> None:
    """Close a sipyco AsyncioClient, whatever state its connection is in."""
    try:
        await client.close_rpc()
    except Exception:  # a half-open or never-opened connection: nothing to close
        pass


def parse_master(address: str) -> tuple:
    """``HOST[:PORT]`` of a master as (host, port), port 3251 by default;
    ValueError naming the option, also when sipyco is not installed."""
    try:
        host, port = protocol.parse_address(address, DEFAULT_PORT)
    except ValueError as e:
        raise ValueError("artiq_master: {}".format(e)) from None
    if importlib.util.find_spec("sipyco") is None:
        raise ValueError("artiq_master needs sipyco, which is not installed (not on PyPI):"
                         " pip install git+https://github.com/m-labs/sipyco")
    return host, port


class ArtiqMasterSink:
    """Publishes the live values of ``bridge``'s devices to the master at
    ``address`` (``HOST[:PORT]``)."""

    def __init__(self, address: str, bridge: "Bridge", window_s: float = WINDOW_S):
        self.host, self.port = parse_master(address)
        self.bridge = bridge
        self.name = "artiq://{}:{}".format(self.host, self.port)
        self.window_s = window_s
        self._windows: dict = {}  # (device, channel) -> LiveWindow
        self._published: dict = {}  # device -> ts of the sample last published
        self._task: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._metadata = True  # older masters' set() takes no metadata
        self.target: Optional[str] = None
        self.datasets_set = 0
        self.updates = 0
        self.retries = 0
        self.last_error: Optional[str] = None
        self.last_success_ts: Optional[int] = None
        self._status = "retrying"

    # ------------------------------------------------------------ lifecycle

    def accept(self, batch: list) -> None:
        """Bus consumer: nothing to do, the snapshots are read once a second."""

    def start(self) -> "ArtiqMasterSink":
        """Start publishing on the running event loop; returns self."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="sink " + self.name)
        logger.info("%s: publishing live datasets", self.name)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop publishing (from any thread)."""
        if self._task is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
            self._stopped.wait(timeout)
        self._status = "stopped"

    # --------------------------------------------------------------- publish

    async def _run(self) -> None:
        from sipyco.pc_rpc import AsyncioClient

        backoff = BACKOFF_START_S
        client = None
        try:
            while True:
                started = time.monotonic()
                try:
                    if client is None:
                        client = await self._connect(AsyncioClient)
                    await self._publish(client)
                except Exception as e:  # down, restarting, or refusing: retried
                    if client is not None:
                        await _close(client)
                        client = None
                    self._failed(e, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                backoff = BACKOFF_START_S
                await asyncio.sleep(max(0.0, PERIOD_S - (time.monotonic() - started)))
        finally:
            if client is not None:
                await _close(client)
            self._stopped.set()

    async def _connect(self, AsyncioClient):
        last = None
        for target in TARGETS:
            client = AsyncioClient()
            try:
                async with timeout(TIMEOUT_S):
                    await client.connect_rpc(self.host, self.port, target)
            except Exception as e:  # IncompatibleServer: no such target on this master
                await _close(client)
                if isinstance(e, (OSError, asyncio.TimeoutError)):
                    raise
                last = e
                continue
            self.target = target
            self._published.clear()  # a restarted master has none of them
            return client
        raise ConnectionError("{}:{} serves neither {}: not an ARTIQ master? ({})".format(
            self.host, self.port, " nor ".join(TARGETS), last))

    async def _publish(self, client) -> None:
        from ..status import device_status

        for device in list(self.bridge.devices.values()):
            status = device_status(self.bridge, device)
            ts = status.last_poll_ts
            fresh = status.status == "ok" and ts is not None
            if fresh and self._published.get(device.name) == ts:
                continue  # nothing new since the last update
            values = {}
            for channel in status.channels:
                window = self._windows.setdefault((device.name, channel.channel),
                                                  LiveWindow(self.window_s))
                if fresh:
                    window.add(ts / 1000, channel.temperature)
                    values.update(live_values(device.name, channel.channel,
                                              channel.temperature, channel.target,
                                              channel.state, window))
                else:  # no fabricated readings in a gap
                    values.update(live_values(device.name, channel.channel, None, None,
                                              status.connection, window))
            for key, value in values.items():
                await self._set(client, key, value)
            self._published[device.name] = ts if fresh else None
            with self._lock:
                self.datasets_set += len(values)
                self.updates += 1
        with self._lock:
            if self._status != "ok":
                logger.info("%s: publishing to %s", self.name, self.target)
            self._status = "ok"
            self.last_error = None
            self.last_success_ts = int(time.time() * 1000)

    async def _set(self, client, key: str, value) -> None:
        metadata = METADATA.get(key.rpartition(".")[2])
        if metadata is not None and self._metadata:
            try:
                async with timeout(TIMEOUT_S):
                    await client.set(key, value, persist=False, metadata=metadata)
                return
            except TypeError:  # an older master: set(key, value, persist)
                self._metadata = False
        async with timeout(TIMEOUT_S):
            await client.set(key, value, persist=False)

    def _failed(self, error: Exception, backoff: float) -> None:
        message = "{}: {}".format(type(error).__name__, error) if str(error) else \
            type(error).__name__
        with self._lock:
            repeated = self._status == "retrying" and self.last_error == message
            self.retries += 1
            self._status = "retrying"
            self.last_error = message
        logger.log(logging.DEBUG if repeated else logging.WARNING,
                   "%s: cannot publish (%s); next try in %.1f s", self.name, message, backoff)

    # ------------------------------------------------------------------ state

    def state(self) -> SinkState:
        """What the sink has done, in the shape of the other sinks' state:
        ``points_sent`` counts datasets set, ``batches_sent`` device updates."""
        with self._lock:
            return SinkState(self.name, self._status, self.datasets_set, self.updates,
                             self.retries, 0, 0, 0, None, 0, self.last_error,
                             self.last_success_ts)
