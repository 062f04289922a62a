"""The running parts of one bridge, shared by the app and its routes."""

import gc
import logging
import threading
from typing import Optional

from fastapi import Request

from .. import protocol
from ..driver import Thermostat
from . import metrics, render, schema
from .config import BridgeConfig
from .poller import Poller, Sample
from .simulation import Simulation
from .store import Store

logger = logging.getLogger(__name__)


class Bridge:
    """Everything one bridge runs: store, poller, optional simulator.

    Construction opens the data directory (OSError with a one-line message
    when it is not writable); :meth:`start` connects and starts polling.
    """

    def __init__(self, config: BridgeConfig):
        self.config = config
        columns = schema.columns_for(config.fields) if config.fields else []
        self.store = Store(config.data_dir, columns, config.capacity)
        self.poller = Poller(self.store, config.poll_period, config.fields,
                             on_sample=self._on_sample)
        self.registry = metrics.registry_for(self.poller, self.store)
        self.simulation: Optional[Simulation] = None
        if config.simulation:
            firmware = "2025" if config.firmware == "auto" else config.firmware
            self.simulation = Simulation(config.speed, firmware)

    @staticmethod
    def _on_sample(sample: Sample) -> None:
        render.warm(sample.columns, sample.values)

    async def start(self) -> None:
        """Start the simulator (in simulation mode) and the poll loop."""
        if self.simulation is not None:
            host, port = await self.simulation.start()
        else:
            host, port = protocol.parse_address(self.config.device)
        driver = Thermostat(host, port, timeout=self.config.reply_timeout,
                            firmware=self.config.firmware, backoff_max=self.config.backoff_max)
        self.poller.start(driver)
        logger.info("polling Thermostat %s:%d every %g s", host, port, self.config.poll_period)
        # Everything allocated so far lives as long as the process: keeping it
        # out of the cyclic collector's full passes keeps those passes, which
        # hold the GIL, short enough not to delay the poll thread.
        gc.freeze()
        # Daemon thread: cache files are replaced atomically, so exiting mid-build is safe.
        threading.Thread(target=self._build_caches, name="history-caches", daemon=True).start()

    def _build_caches(self) -> None:
        # One child process parses the CSV files: the poll loop keeps the GIL
        # and this process's heap stays small.
        built = self.store.history.build_caches(workers=1)
        if built:
            logger.info("built history caches for %d CSV files", built)

    async def stop(self) -> None:
        """Stop polling, close the device connection and the simulator."""
        await self.poller.stop()
        self.store.close()
        if self.simulation is not None:
            await self.simulation.stop()


def bridge_of(request: Request) -> Bridge:
    """The :class:`Bridge` serving a request (a FastAPI dependency)."""
    return request.app.state.bridge
