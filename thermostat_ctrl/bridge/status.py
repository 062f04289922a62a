"""One status snapshot per device and channel: what ``/health``, ``/devices``,
``/metrics``, the stream's status events, the page and the alarms render.

A device's **connection** is ``fresh`` (latest poll within
:data:`STALE_PERIODS` poll periods), ``stale`` (older), ``disconnected``
(older than :data:`DISCONNECTED_PERIODS` periods, or never polled).  Its
``status`` sums it up for ``/health``: ``ok`` (fresh), ``stale``, ``no data``
or ``failed``.

Each channel's **regulation state** (:class:`RegulationTracker`, fed by the
alarm monitor with every sample) is one of :data:`REGULATION_STATES`:

* ``off``: the PID is not engaged (the output is a constant current);
* ``settling``: the target changed (or the PID was engaged) and the channel
  has not yet been within the band for the hold time;
* ``in_band``: |error| within the band (having held it for the hold time);
* ``out_of_band``: settled before, now outside the band;
* ``fault``: no temperature, or a critical alarm of the channel is active.

The band and hold time are the ``out_of_band`` rule's (``band_k``, ``hold_s``).
"""

import math
from typing import TYPE_CHECKING, Optional

from pydantic import BaseModel, Field

from .acquisition.sample import Sample
from .storage.csvformat import iso_time

if TYPE_CHECKING:
    from .runtime import Bridge, Device

__all__ = ["STALE_PERIODS", "DISCONNECTED_PERIODS", "REGULATION_STATES", "CONNECTIONS",
           "RegulationTracker", "ChannelStatus", "DeviceStatus", "fresh_sample",
           "stale_after", "device_status"]

#: A reading older than this many poll periods is stale.
STALE_PERIODS = 3
#: Without a successful poll for this many poll periods a device is disconnected.
DISCONNECTED_PERIODS = 10
REGULATION_STATES = ("off", "settling", "in_band", "out_of_band", "fault")
CONNECTIONS = ("fresh", "stale", "disconnected")
#: Target changes smaller than this (°C) are single-precision noise, not a new target.
TARGET_EPSILON = 1e-4


def stale_after(period: float) -> float:
    """Seconds after which a reading of a device polled every ``period`` is stale."""
    return STALE_PERIODS * period


def fresh_sample(device: "Device") -> Optional[Sample]:
    """The device's latest sample if it is not stale, else None."""
    poller = device.poller
    age = poller.sample_age()
    return poller.latest if age is not None and age <= stale_after(poller.period) else None


class RegulationTracker:
    """The regulation state of one channel, updated sample by sample."""

    def __init__(self) -> None:
        self.state = "off"
        self.since: Optional[float] = None  #: time (s, epoch) the state began
        self.settled = False
        self.settling_since: Optional[float] = None
        self.settled_since: Optional[float] = None
        self._in_band_since: Optional[float] = None
        self._target: Optional[float] = None
        self._engaged = False

    def update(self, t: float, temperature: float, target: float, engaged: bool,
               band_k: float, hold_s: float) -> str:
        """Account for one sample (NaN for a missing value); the new state."""
        if not engaged:
            self.settled, self.settling_since, self._in_band_since = False, None, None
            self.settled_since = None
            state = "off"
        else:
            if not math.isnan(target):
                changed = self._target is not None and abs(target - self._target) > TARGET_EPSILON
                if not self._engaged or changed:
                    self.settled, self.settling_since, self._in_band_since = False, t, None
                    self.settled_since = None
                self._target = target
            if math.isnan(temperature):
                self._in_band_since = None
                state = "fault"
            elif math.isnan(target):
                state = self.state if self.state != "off" else "settling"
            else:
                if abs(temperature - target) <= band_k:
                    if self._in_band_since is None:
                        self._in_band_since = t
                    if t - self._in_band_since >= hold_s and not self.settled:
                        self.settled, self.settling_since, self.settled_since = True, None, t
                else:
                    self._in_band_since = None
                if not self.settled:
                    state = "settling"
                else:
                    state = "in_band" if self._in_band_since is not None else "out_of_band"
        if not math.isnan(target):
            self._target = target
        self._engaged = engaged
        if state != self.state or self.since is None:
            self.state, self.since = state, t
        return state


class ChannelStatus(BaseModel):
    """One channel's state."""

    channel: int = Field(examples=[0])
    state: Optional[str] = Field(description="`off`, `settling`, `in_band`, `out_of_band` or"
                                             " `fault`; null before the first sample",
                                 examples=["in_band"])
    since_ts: Optional[int] = Field(description="Epoch ms since which the state holds",
                                    examples=[1795759540123])
    pid_engaged: Optional[bool] = Field(description="The PID drives the output")
    temperature: Optional[float] = Field(description="°C; null without a reading",
                                         examples=[25.0012])
    target: Optional[float] = Field(description="PID target (°C); null while the PID is off",
                                    examples=[25.0])
    error: Optional[float] = Field(description="temperature - target (K); null while the PID"
                                               " is off", examples=[0.0012])
    current: Optional[float] = Field(description="TEC current setpoint (A): the constant"
                                                 " current while the PID is off",
                                     examples=[0.31])
    band_k: float = Field(description="Half-width of the band (K)", examples=[0.05])
    alarms: list[str] = Field(description="Rules of this channel's active alarms",
                              examples=[["out_of_band"]])


class DeviceStatus(BaseModel):
    """State of one device: its connection, poller, CSV log and channels."""

    name: str = Field(examples=["thermostat0"])
    address: Optional[str] = Field(description="HOST:PORT polled, null before start",
                                   examples=["192.168.1.26:23"])
    status: str = Field(description="`ok`, `stale`, `no data` or `failed` (see `error`)",
                        examples=["ok"])
    connection: str = Field(description="`fresh` (latest poll within {} poll periods),"
                                        " `stale`, or `disconnected` (no poll for {} periods,"
                                        " or none yet)".format(STALE_PERIODS,
                                                               DISCONNECTED_PERIODS),
                            examples=["fresh"])
    stale: bool = Field(description="No reading within {} poll periods".format(STALE_PERIODS))
    connected: bool = Field(description="A device connection is open")
    firmware: Optional[str] = Field(description="Firmware dialect, null before detection",
                                    examples=["2025"])
    hwrev: Optional[str] = Field(description="Hardware revision, null before it is known",
                                 examples=["v2.2"])
    simulation: bool = Field(description="The device is the built-in simulator")
    poll_period_s: float = Field(examples=[1.0])
    stale_after_s: float = Field(description="Age of a reading beyond which it is stale")
    disconnected_after_s: float = Field(description="Age beyond which the device counts as"
                                                    " disconnected")
    last_poll_ts: Optional[int] = Field(description="Epoch ms of the latest successful poll",
                                        examples=[1795759540123])
    last_poll_time: Optional[str] = Field(examples=["2026-11-28T06:05:40.123Z"])
    sample_age_s: Optional[float] = Field(description="Seconds since the latest successful"
                                                      " poll", examples=[0.4])
    polls_ok: int = Field(description="Successful polls", examples=[3600])
    polls_failed: int = Field(description="Failed polls, all reasons", examples=[2])
    poll_errors: dict[str, int] = Field(description="Failed polls by reason",
                                        examples=[{"timeout": 2}])
    polls_skipped: int = Field(description="Scheduled polls skipped because an earlier one"
                                           " ran late")
    csv_rows_written: int = Field(description="Rows written to the CSV log")
    csv_write_errors: int = Field(description="Failed writes to the CSV log")
    rows_refused: int = Field(description="Rows not stored because their timestamp was not"
                                          " after the previous row's (wall clock went back)")
    fields: Optional[list[str]] = Field(description="Recorded report fields",
                                        examples=[["temperature", "tec_i"]])
    last_error: Optional[str] = Field(
        description="Why the latest poll failed; null after a success")
    csv_rows_caught_up: int = Field(description="Rows written late: held in memory while the"
                                                " CSV log failed, written once it took writes"
                                                " again")
    csv_rows_lost: int = Field(description="Rows never written to the CSV log: memory no"
                                           " longer held them when it took writes again")
    error: Optional[str] = Field(description="Why the device's rows are not recorded: a"
                                             " configured field missing from its report, or"
                                             " the CSV log failing (e.g. disk full); null"
                                             " while they are")
    channels: list[ChannelStatus] = Field(description="Each channel's state")
    alarms: int = Field(description="Active alarms of the device and its channels")


def _connection(age: Optional[float], period: float) -> str:
    if age is None or age > DISCONNECTED_PERIODS * period:
        return "disconnected"
    return "fresh" if age <= stale_after(period) else "stale"


def _value(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _channels(bridge: "Bridge", device: "Device", latest: Optional[Sample]) -> list:
    monitor = bridge.monitor
    active = bridge.alarms.active(device=device.name)
    critical = {a.channel for a in active if a.severity == "critical" and a.channel is not None}
    report = latest.report if latest is not None else []
    targets = device.poller.targets or []
    channels = []
    for ch in range(2):
        tracker = monitor.tracker(device.name, ch)
        reading = next((c for c in report if c.get("channel") == ch), {})
        engaged = reading.get("pid_engaged") if reading else None
        temperature = _value(reading.get("temperature"))
        target = _value(targets[ch]) if ch < len(targets) and engaged else None
        state = tracker.state if tracker.since is not None else None
        if ch in critical or (engaged and latest is not None and temperature is None):
            state = "fault"
        channels.append(ChannelStatus(
            channel=ch, state=state,
            since_ts=None if tracker.since is None else int(tracker.since * 1000),
            pid_engaged=engaged if isinstance(engaged, bool) else None,
            temperature=temperature, target=target,
            error=None if target is None or temperature is None else temperature - target,
            current=_value(reading.get("i_set")), band_k=monitor.band_k(device.name, ch),
            alarms=sorted(a.rule for a in active if a.channel == ch)))
    return channels


def device_status(bridge: "Bridge", device: "Device") -> DeviceStatus:
    """The current :class:`DeviceStatus` of one of ``bridge``'s devices."""
    poller, store = device.poller, device.store
    latest = poller.latest
    age = poller.sample_age()
    connection = _connection(age, poller.period)
    error = poller.fault or store.log_error
    if error is not None:
        status = "failed"
    elif latest is None:
        status = "no data"
    else:
        status = "ok" if connection == "fresh" else "stale"
    address = None if device.address is None else "{}:{}".format(*device.address)
    return DeviceStatus(
        name=device.name, address=address, status=status, connection=connection,
        stale=status != "ok", connected=poller.connected, firmware=poller.firmware,
        hwrev=poller.hwrev, simulation=device.simulation is not None,
        poll_period_s=poller.period, stale_after_s=stale_after(poller.period),
        disconnected_after_s=DISCONNECTED_PERIODS * poller.period,
        last_poll_ts=None if latest is None else latest.ts,
        last_poll_time=None if latest is None else iso_time(latest.ts),
        sample_age_s=age, polls_ok=poller.polls_ok, polls_failed=poller.polls_failed,
        poll_errors=dict(poller.failures), polls_skipped=poller.skipped,
        csv_rows_written=store.rows_written, csv_write_errors=store.write_errors,
        rows_refused=store.out_of_order, fields=poller.fields, last_error=poller.last_error,
        csv_rows_caught_up=store.rows_caught_up, csv_rows_lost=store.rows_lost,
        error=error, channels=_channels(bridge, device, latest),
        alarms=len(bridge.alarms.active(device=device.name)))
