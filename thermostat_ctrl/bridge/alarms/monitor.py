"""The alarm monitor: a consumer of the sample bus that keeps each channel's
recent samples, its regulation state, and evaluates the rules.

Every sample updates its channels' :class:`~..status.RegulationTracker`;
the channel rules of the devices with new samples are evaluated at most
every :data:`EVALUATE_S`; at least every :data:`TICK_S` the device rules (offline,
flapping) are evaluated too, since a device that stopped answering sends no
samples.  All of it runs on the monitor's own thread, never in the poll
path.  The verdicts go to the :class:`~.book.AlarmBook`.
"""

import logging
import math
import threading
import time
from typing import Callable, Mapping, Optional

import numpy as np

from ..acquisition.bus import SampleBus
from ..status import RegulationTracker
from . import settings as rule_settings
from .book import AlarmBook
from .rules import ChannelWindow, DeviceWindow

logger = logging.getLogger(__name__)

__all__ = ["AlarmMonitor", "TICK_S", "ChannelHistory"]

#: Longest time between two evaluations of the device rules.
TICK_S = 0.5
#: Shortest time between two evaluations of a device's channel rules: at a fast
#: poll rate the rules see several new samples at once (each still in its window).
EVALUATE_S = 0.2
#: Quantities kept per channel, in :class:`ChannelWindow` order after ``t``.
QUANTITIES = ("temperature", "target", "engaged", "i_set", "tec_i", "pid_output",
              "device_time")
_REPORT_KEYS = {"temperature": "temperature", "engaged": "pid_engaged", "i_set": "i_set",
                "tec_i": "tec_i", "pid_output": "pid_output", "device_time": "time"}
#: Most samples a channel's history holds, whatever the rules ask for.
MAX_ROWS = 200_000


class ChannelHistory:
    """A fixed-size ring of one device's recent samples: the time and, per
    channel, :data:`QUANTITIES`; :meth:`rows` is always one contiguous view
    (every row is written twice, ``capacity`` apart)."""

    def __init__(self, capacity: int, channels: int = 2):
        self.capacity = capacity
        self._data = np.full((2 * capacity, 1 + channels * len(QUANTITIES)), math.nan)
        self._next = 0
        self._count = 0

    def append(self, row: np.ndarray) -> None:
        """Add one row (``t`` then the quantities of each channel)."""
        i = self._next
        self._data[i] = row
        self._data[i + self.capacity] = row
        self._next = (i + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def rows(self) -> np.ndarray:
        """Every row held, oldest first (a view)."""
        end = self._next + self.capacity
        return self._data[end - self._count:end]

    def window(self, ch: int, tracker: RegulationTracker,
               limits: Optional[dict]) -> ChannelWindow:
        """The :class:`ChannelWindow` of channel ``ch``."""
        rows = self.rows()
        base = 1 + ch * len(QUANTITIES)
        columns = [rows[:, base + j] for j in range(len(QUANTITIES))]
        limits = limits or {}
        return ChannelWindow(rows[:, 0], *columns,
                             max_i_pos=_number(limits.get("max_i_pos")),
                             max_i_neg=_number(limits.get("max_i_neg")),
                             settled=tracker.settled, settling_since=tracker.settling_since,
                             settled_since=tracker.settled_since)


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class _Watched:
    """What the monitor keeps of one device."""

    def __init__(self, device, bridge_rules: Mapping):
        self.device = device
        overrides = device.config.alarms or {}
        self.device_rules = [c for c in rule_settings.resolve(bridge_rules, overrides)
                             if c.enabled]
        all_channel = [rule_settings.resolve(bridge_rules, overrides, ch) for ch in (0, 1)]
        self.channel_rules = [[c for c in rules if c.enabled] for rules in all_channel]
        # The band of the regulation state is the out_of_band rule's, enabled or not.
        self.bands = [next((c.params["band_k"], c.params["hold_s"]) for c in rules
                           if c.name == "out_of_band") for rules in all_channel]
        period = device.config.poll_period
        seconds = max([c.rule.window_s(c.params) for rules in
                       (self.device_rules, *self.channel_rules) for c in rules] + [60.0])
        self.history = ChannelHistory(min(MAX_ROWS, math.ceil(seconds / period) + 4))
        self.trackers = [RegulationTracker(), RegulationTracker()]
        self.row = np.empty(1 + 2 * len(QUANTITIES))

    def add(self, sample) -> None:
        row = self.row
        row.fill(math.nan)
        t = sample.ts / 1000
        row[0] = t
        targets = _targets(sample, self.device.poller.targets)
        for position, channel in enumerate(sample.report[:2]):
            ch = channel.get("channel", position)
            if ch not in (0, 1):
                continue
            base = 1 + ch * len(QUANTITIES)
            for j, quantity in enumerate(QUANTITIES):
                value = targets[ch] if quantity == "target" else \
                    channel.get(_REPORT_KEYS[quantity])
                if isinstance(value, (bool, int, float)):
                    row[base + j] = float(value)
            band, hold = self.bands[ch]
            self.trackers[ch].update(t, row[base], row[base + 1], bool(row[base + 2] == 1.0),
                                     band, hold)
        self.history.append(row)


def _targets(sample, polled: Optional[list]) -> list:
    """Each channel's target at the sample: its row's ``target`` column when
    recorded, else the poller's latest reading."""
    targets = [math.nan, math.nan]
    for ch in (0, 1):
        name = "target_ch{}".format(ch)
        if name in sample.columns:
            targets[ch] = float(sample.values[sample.columns.index(name)])
        elif polled is not None and ch < len(polled) and isinstance(polled[ch], (int, float)):
            targets[ch] = float(polled[ch])
    return targets


class AlarmMonitor:
    """Evaluates the rules of every device of a bridge on its own thread.

    :param devices: the bridge's devices by name (their ``config.alarms``
        hold the per-device and per-channel overrides).
    :param bridge_rules: the bridge-wide rule settings (see :mod:`.settings`).
    """

    def __init__(self, bus: SampleBus, devices: Mapping, bridge_rules: Mapping,
                 book: AlarmBook, clock: Callable[[], float] = time.time):
        self.book = book
        self._clock = clock
        self._watched = {name: _Watched(device, bridge_rules) for name, device in devices.items()}
        self._subscription = bus.subscribe("alarms", maxlen=100_000)
        self._thread = threading.Thread(target=self._run, daemon=True, name="alarms")
        self._started: Optional[float] = None
        self._pending: dict = {}  # devices with samples not yet evaluated
        self.evaluations = 0  #: rule evaluations so far

    # ------------------------------------------------------------- reading

    def tracker(self, device: str, ch: int) -> RegulationTracker:
        """Channel ``ch`` of ``device``'s regulation state."""
        return self._watched[device].trackers[ch]

    def band_k(self, device: str, ch: int) -> float:
        """The band (K) of channel ``ch`` of ``device``."""
        return self._watched[device].bands[ch][0]

    # ------------------------------------------------------------- running

    def start(self) -> None:
        """Start the monitor's thread."""
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop after the samples already queued."""
        self._subscription.close()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        next_tick = next_evaluation = time.monotonic()
        while True:
            due = min(next_tick, next_evaluation) if self._pending else next_tick
            batch = self._subscription.get(max(0.0, due - time.monotonic()))
            if batch is None:
                self.evaluate()
                return
            try:
                self.add(batch)
                if self._pending and time.monotonic() >= next_evaluation:
                    self.evaluate()
                    next_evaluation = time.monotonic() + EVALUATE_S
                if time.monotonic() >= next_tick:
                    self.tick()
                    next_tick = time.monotonic() + TICK_S
            except Exception:  # a bug in a rule must not stop the watch of every device
                logger.exception("alarm evaluation failed")

    def handle(self, batch: list) -> None:
        """:meth:`add` a batch of samples and :meth:`evaluate` at once."""
        self.add(batch)
        self.evaluate()

    def add(self, batch: list) -> None:
        """Account for a batch of samples (the regulation states follow each)."""
        for sample in batch:
            watched = self._watched.get(sample.device)
            if watched is not None:
                watched.add(sample)
                self._pending[sample.device] = watched

    def evaluate(self) -> None:
        """Evaluate the channel rules of the devices with new samples."""
        touched, self._pending = self._pending, {}
        now = self._clock()
        active_keys = self._active_keys()
        for name, watched in touched.items():
            limits = watched.device.poller.limits
            for ch in (0, 1):
                w = watched.history.window(ch, watched.trackers[ch],
                                           limits[ch] if limits and ch < len(limits) else None)
                for config in watched.channel_rules[ch]:
                    active = (name, ch, config.name) in active_keys
                    verdict = config.rule.check(w, config.params, active)
                    self.book.observe(name, ch, config.name, config.severity, verdict, now)
                    self.evaluations += 1

    def tick(self) -> None:
        """Evaluate the device rules of every device."""
        now = self._clock()
        active_keys = self._active_keys()
        for name, watched in self._watched.items():
            poller = watched.device.poller
            age = poller.sample_age()
            if age is None and self._started is not None:
                age = time.monotonic() - self._started  # never answered since the start
            w = DeviceWindow(watched.history.rows()[:, 0], poller.period, age, now)
            for config in watched.device_rules:
                active = (name, None, config.name) in active_keys
                self.book.observe(name, None, config.name, config.severity,
                                  config.rule.check(w, config.params, active), now)
                self.evaluations += 1

    def _active_keys(self) -> set:
        return {a.key for a in self.book.active()}
