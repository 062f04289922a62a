"""The running parts of one bridge: its devices, the sample bus and its
consumers, wired together.

Each device has a poller (on the shared acquisition thread), a store (ring
buffer, CSV log and history in ``<data-dir>/<name>/``) and, in simulation,
its simulator.  Samples go from the pollers to the bus; the store is its
lossless consumer, on a thread of its own; the web adds its own with
:meth:`Bridge.consume`, and each InfluxDB sink (``config.influx``) one that
spools its points; the ARTIQ master sink (``config.artiq_master``) publishes
the status snapshots once a second.  The alarm monitor is a consumer too: it evaluates the
rules, its verdicts go to the alarm book, the book's raises and clears to
the notifier.  The stability summary (:mod:`.summary`), when configured,
waits for its times on a thread of its own.
"""

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from .. import protocol
from ..driver import Thermostat
from . import schema
from .alarms.book import AlarmBook
from .alarms.monitor import AlarmMonitor
from .alarms.notify import Notifier
from .acquisition.bus import LOSSLESS_MAXLEN, ConsumerThread, SampleBus
from .acquisition.poller import Poller
from .acquisition.simulation import Simulation
from .acquisition.thread import AcquisitionThread
from .config import BridgeConfig, DeviceConfig
from .sinks.artiq_master import ArtiqMasterSink
from .sinks.influx import InfluxSink
from .sinks.settings import spool_dir
from .storage.identity import Identity, claim, update
from .storage.datadir import DataDirLock, adopt_legacy, device_dir
from .storage.store import Store
from .summary import Summaries, alarms_from, check_at

logger = logging.getLogger(__name__)

__all__ = ["Bridge", "Device", "tune_process"]

#: Longest time the poll thread waits for the GIL while another thread runs.
SWITCH_INTERVAL_S = 0.0005


def tune_process() -> None:
    """Process-wide settings for a bridge process; entry points call this once
    the bridge has started (library users keep the defaults; the test harness
    calls it before its bridges and simulators run, as their timing is tested).

    * The switch interval: a poll takes the GIL several times (wake-up, send,
      reply, publish); at the default 5 ms a busy HTTP thread delays each step.
    * Everything allocated at start-up lives as long as the process: keeping
      it out of the cyclic collector's full passes keeps those passes, which
      hold the GIL, short enough not to delay the poll thread.
    * malloc's mmap threshold stays fixed (see :func:`_fix_mmap_threshold`).
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    gc.freeze()
    _fix_mmap_threshold()


#: ``mallopt`` parameter of glibc: blocks this large or larger are mapped on their own.
_M_MMAP_THRESHOLD = -3
#: Its value: glibc's initial one, kept (glibc raises it after each large free,
#: up to 32 MiB, which leaves the freed arrays of every cache build resident).
MMAP_THRESHOLD = 128 * 1024


def _fix_mmap_threshold() -> None:
    """Keep large blocks (parsed files, query answers) mapped on their own, so
    that freeing one returns it to the system: the resident memory after a
    burst of cache builds falls back instead of staying at its peak."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        logger.debug("malloc's mmap threshold left as it is (no glibc mallopt)")


@dataclass
class Device:
    """One polled device and its storage."""

    config: DeviceConfig
    poller: Poller
    store: Store
    memory_s: float  #: seconds of samples kept in memory
    simulation: Optional[Simulation] = None
    address: Optional[tuple] = None  #: (host, port) once started
    #: What its folder records as the source of its rows (see :mod:`.storage.identity`).
    identity: Optional[Identity] = None

    @property
    def name(self) -> str:
        """The device's name."""
        return self.config.name


class Bridge:
    """Everything one bridge runs.

    Construction locks the data directory, moves the files of a
    single-device layout into the first device's folder, claims every
    device's folder (:func:`~.storage.identity.claim`) and opens its store
    (:class:`~.storage.datadir.DataDirError`, an OSError with a one-line
    message, when the directory is in use or not writable, or a folder holds
    another device's rows);
    :meth:`start` connects and starts polling.
    """

    def __init__(self, config: BridgeConfig):
        self.config = config
        self.bus = SampleBus()
        self.fatal: Optional[str] = None
        self.failed: Optional[asyncio.Event] = None
        self._lock = DataDirLock(config.data_dir)
        try:
            adopt_legacy(config.data_dir, config.devices[0].name)
            self.devices: dict[str, Device] = {}
            claimed = {device.name: claim(
                device_dir(config.data_dir, device.name), _identity_of(device), config.adopt)
                for device in config.devices}
            for index, device in enumerate(config.devices):
                columns = schema.columns_for(device.fields) if device.fields else []
                store = Store(device_dir(config.data_dir, device.name), columns,
                              device.capacity(config.memory_s), device.poll_period)
                poller = Poller(device.name, self.bus, device.poll_period, device.fields)
                simulation = None
                if device.simulated:
                    firmware = "2025" if device.firmware == "auto" else device.firmware
                    simulation = Simulation(config.speed, firmware, index)
                self.devices[device.name] = Device(device, poller, store, config.memory_s,
                                                   simulation, identity=claimed[device.name])
            self.sinks = [InfluxSink(s, spool_dir(config.data_dir, s)) for s in config.influx]
            # An alarm clears once its condition has been gone for three poll periods.
            self.alarms = AlarmBook(self._lock.data_dir, clear_s=3 * max(
                d.poll_period for d in config.devices))
            self.monitor = AlarmMonitor(self.bus, self.devices, config.alarms, self.alarms)
            self.notifier = Notifier(config.notify) if config.notify else None
            if self.notifier is not None:
                self.alarms.listen(self.notifier.on_alarm)
            self.summaries = None if config.summary_at is None else Summaries(
                self._lock.data_dir, self.devices, check_at(config.summary_at),
                config.summary_period_s, alarms_from(self.alarms),
                self.notifier.send if self.notifier is not None else None)
        except BaseException:
            self._lock.release()
            raise
        self._acquisition = AcquisitionThread(on_ended=self._on_ended)
        self._consumers: list[ConsumerThread] = []
        self.consume("store", self._store_batch, lossless=True)
        for sink in self.sinks:
            # Lossy, so a stalled spool never holds up a poll; the bound is
            # hours of samples, and a loss would be counted under its name.
            self.consume(sink.name, sink.accept, maxlen=LOSSLESS_MAXLEN)
        if config.artiq_master is not None:  # reads the status snapshots, not the bus
            self.sinks.append(ArtiqMasterSink(config.artiq_master, self))

    def consume(self, name: str, handle: Callable[[list], None], maxlen: int = 10_000,
                lossless: bool = False) -> ConsumerThread:
        """Run ``handle(batch)`` on a thread of its own for the samples of
        every device (see :class:`~.acquisition.bus.SampleBus`); it is started
        with the bridge (at once if already started) and stopped after the
        pollers, once it has handled every sample."""
        consumer = ConsumerThread(self.bus.subscribe(name, maxlen, lossless), handle)
        self._consumers.append(consumer)
        if self.failed is not None:
            consumer.start()
        return consumer

    def _store_batch(self, batch: list) -> None:
        for sample in batch:
            stored = False
            device = self.devices[sample.device]
            try:
                stored = device.store.append(
                    sample.ts, sample.columns, sample.values, durable=sample.ack is not None)
                self._record_identity(device)
            except Exception:  # a bug must not stop the log of every device
                logger.exception("%s: could not store the row at ts %d", sample.device,
                                 sample.ts)
            if sample.ack is not None:
                sample.ack.set_result(stored)

    def _record_identity(self, device: Device) -> None:
        poller, recorded = device.poller, device.identity
        if (poller.firmware or recorded.firmware) != recorded.firmware or \
                (poller.hwrev or recorded.hwrev) != recorded.hwrev:
            device.identity = update(device_dir(self.config.data_dir, device.name), recorded,
                                     poller.firmware, poller.hwrev)

    @property
    def simulation(self) -> bool:
        """True when the devices are the built-in simulation."""
        return self.config.simulation

    async def start(self) -> None:
        """Start the consumers, the simulators (in simulation) and polling."""
        self.failed = asyncio.Event()
        for consumer in self._consumers:
            consumer.start()
        for sink in self.sinks:
            sink.start()
        if self.notifier is not None:
            self.notifier.start()
        self.monitor.start()
        if self.summaries is not None:
            self.summaries.start()
        jobs = []
        for device in self.devices.values():
            if device.simulation is not None:
                device.address = await device.simulation.start()
            else:
                device.address = protocol.parse_address(device.config.address)
            host, port = device.address
            config = device.config
            driver = Thermostat(host, port, timeout=config.reply_timeout,
                                firmware=config.firmware, backoff_max=config.backoff_max)
            jobs.append((device.poller, driver))
            logger.info("%s: polling Thermostat %s:%d every %g s", device.name, host, port,
                        config.poll_period)
        self._acquisition.start(jobs)
        # Daemon thread: cache files are replaced atomically, so exiting mid-build is safe.
        threading.Thread(target=self._build_caches, name="history-caches", daemon=True).start()

    def _on_ended(self, poller: Poller) -> None:
        # Only a bug ends a poll loop (a faulty device is polled on): stop serving.
        if self.fatal is None:
            self.fatal = "{}: its poll loop ended".format(poller.name)
        if self.failed is not None:
            self.failed.set()

    def _build_caches(self) -> None:
        # One child process parses the CSV files: the poll loop keeps the GIL
        # and this process's heap stays small.
        for device in list(self.devices.values()):
            built = device.store.history.build_caches(workers=1)
            if built:
                logger.info("%s: built history caches for %d CSV files", device.name, built)

    async def stop(self) -> None:
        """Stop polling, store what was polled, close the device connections,
        the simulators and the data directory."""
        await self._acquisition.stop()
        for consumer in self._consumers:
            await asyncio.to_thread(consumer.stop)
        for sink in self.sinks:
            await asyncio.to_thread(sink.stop)
        await asyncio.to_thread(self.monitor.stop)
        if self.summaries is not None:
            await asyncio.to_thread(self.summaries.stop)
        if self.notifier is not None:
            await asyncio.to_thread(self.notifier.stop)
        for device in self.devices.values():
            device.store.close()
            if device.simulation is not None:
                await device.simulation.stop()
        self.alarms.close()
        self._lock.release()


def _identity_of(device: DeviceConfig) -> Identity:
    """The identity a device's folder records, as far as the configuration knows it."""
    address = None if device.simulated else "{}:{}".format(
        *protocol.parse_address(device.address))
    return Identity(simulated=device.simulated, address=address,
                    firmware=None if device.firmware == "auto" else device.firmware)
