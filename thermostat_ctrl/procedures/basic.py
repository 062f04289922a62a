"""Procedures on one channel, on the asyncio driver: power-up, settling,
thermistor parameters in the unit they are set in, and the sample stream
the longer procedures run on.

Time is counted on the device's own sample clock (the report's ``time``), so
the procedures run K times faster on a simulator at ``--speed K``.
"""

import asyncio
import time
from typing import Any, AsyncIterator, Optional

from .. import protocol
from ..driver import Thermostat

__all__ = ["SAFE_WINDOW", "KELVIN", "ProcedureError", "Aborted", "check_number",
           "check_target", "check_window", "ChannelState", "samples", "power_up", "wait_settled", "get_b_parameter"]

#: Targets outside this range (°C) are refused unless the caller widens it.
SAFE_WINDOW = (-10.0, 80.0)
KELVIN = 273.15


class ProcedureError(RuntimeError):
    """A procedure stopped (the message says why) after restoring the channel."""


class Aborted(ProcedureError):
    """The caller aborted the procedure."""


def check_number(name: str, value: Any, zero_ok: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (≥ 0 with
    ``zero_ok``), else ValueError naming ``name``."""
    protocol.format_number(value, name)  # a finite number, else ValueError naming it
    if value < 0 or (value == 0 and not zero_ok):
        raise ValueError("{} must be {}, not {!r}".format(
            name, "zero or positive" if zero_ok else "positive", value))
    return float(value)


def check_target(target: Any, window: tuple = SAFE_WINDOW, name: str = "target") -> float:
    """``target`` (°C) if it is a number inside ``window`` (low, high), else
    ValueError naming it and the window."""
    protocol.format_number(target, name)
    low, high = window
    if not low <= target <= high:
        raise ValueError("{} {} degC is outside the safe window {}..{} degC; pass a wider"
                         " safe_window if you mean it".format(name, target, low, high))
    return float(target)


def check_window(window: Any) -> tuple:
    """A (low, high) pair of numbers with low < high, else ValueError."""
    try:
        low, high = window
    except (TypeError, ValueError):
        raise ValueError("safe_window must be a pair (low, high), not {!r}".format(window)) \
            from None
    protocol.format_number(low, "safe_window low")
    protocol.format_number(high, "safe_window high")
    if not low < high:
        raise ValueError("safe_window low must be below high, not {!r}".format(window))
    return float(low), float(high)


async def samples(driver: Thermostat, ch: int, max_poll: float = 0.05) -> AsyncIterator[dict]:
    """Yield channel ``ch``'s report each time the device has a new sample.

    Polls at about twice the sample rate as measured against the wall clock
    (so a simulator running K times faster is polled K times as often), at
    most every ``max_poll`` s of wall time when the device clock seems slow.
    A device reboot (its clock going back) restarts the stream's clock.
    """
    last = None
    rate = None  # device seconds per wall second
    origin = None
    while True:
        report = (await driver.report())[ch]
        now = time.monotonic()
        t = report["time"]
        if last is None or t != last:
            if last is not None and t < last:
                origin = None  # rebooted
            if origin is None:
                origin = (t, now)
            elif t > origin[0] and now > origin[1]:
                rate = (t - origin[0]) / (now - origin[1])
            last = t
            yield report
        interval = report.get("interval") or 0.1
        pause = max_poll if rate is None else min(max_poll, 0.5 * interval / rate)
        await asyncio.sleep(pause)


async def power_up(driver: Thermostat, ch: int, target: float, kp: Optional[float] = None,
                   ki: Optional[float] = None, kd: Optional[float] = None,
                   max_i_pos: Optional[float] = None, max_i_neg: Optional[float] = None,
                   max_v: Optional[float] = None, safe_window: tuple = SAFE_WINDOW) -> dict:
    """Regulate channel ``ch`` to ``target`` °C: set the given output limits,
    the target and the PID gains (per sample), then engage the PID.  The
    target goes first: the firmware's PID runs on every sample, engaged or
    not, and new gains against the old target would wind it up.

    Every argument is checked before anything is sent (ValueError naming it).
    Returns the channel's ``{"pid": {...}, "output": {...}}``; ``output``
    limits all 0 (the boot default) mean no current flows, so the result has
    ``"warning"`` then.
    """
    protocol.check_channel(ch)
    check_target(target, check_window(safe_window))
    gains = {"kp": kp, "ki": ki, "kd": kd}
    limits = {"max_i_pos": max_i_pos, "max_i_neg": max_i_neg, "max_v": max_v}
    for name, value in {**gains, **limits}.items():
        if value is not None:
            protocol.format_number(value, name, f32=name in gains)
    for name, value in limits.items():
        if value is not None and value < 0:
            raise ValueError("{} must not be negative, not {!r}".format(name, value))
    if any(v is not None for v in limits.values()):
        await driver.set_output_limits(ch, max_i_pos, max_i_neg, max_v)
    await driver.set_target(ch, target)
    if any(v is not None for v in gains.values()):
        await driver.set_pid_params(ch, kp, ki, kd)
    await driver.engage_pid(ch)
    result = {"pid": (await driver.get_pid())[ch], "output": (await driver.get_output())[ch]}
    if not any(result["output"].get(k) for k in limits):
        result["warning"] = ("channel {}: PID engaged but all output limits are 0, so no current"
                             " flows; give max_i_pos, max_i_neg and max_v".format(ch))
    return result


async def wait_settled(driver: Thermostat, ch: int, tolerance: float = 0.01,
                       settle_s: float = 10, timeout_s: float = 600) -> dict:
    """Wait until channel ``ch``'s temperature has stayed within ``tolerance``
    (K) of its PID target for ``settle_s`` seconds of device time.

    The target is read on every sample, so a target changed meanwhile (by
    this or another client) is followed: the settle time starts again.
    Bounded by ``timeout_s`` of both device and wall-clock time.  Returns
    ``{"temperature", "target", "waited_s"}``.  ValueError when ``settle_s >
    timeout_s`` (it could never succeed); TimeoutError when not settled in
    time; RuntimeError when the PID is not engaged; ConnectionError /
    TimeoutError when the device stops answering.
    """
    protocol.check_channel(ch)
    check_number("tolerance", tolerance)
    check_number("settle_s", settle_s, zero_ok=True)
    check_number("timeout_s", timeout_s)
    if settle_s > timeout_s:
        raise ValueError("settle_s ({}) must not exceed timeout_s ({})".format(
            settle_s, timeout_s))
    wall_deadline = time.monotonic() + timeout_s
    waited = 0.0
    in_band_since: Optional[float] = None
    last_time: Optional[float] = None
    target = temperature = None
    async for rep in samples(driver, ch):
        if not rep["pid_engaged"]:
            raise RuntimeError("channel {}: PID is not engaged; call power_up() or"
                               " engage_pid() first".format(ch))
        now = rep["time"]
        if last_time is not None and now > last_time:
            waited += now - last_time
        last_time = now
        new_target = (await driver.get_pid())[ch]["target"]
        if new_target != target:
            target, in_band_since = new_target, None
        temperature = rep["temperature"]
        if temperature is not None and abs(temperature - target) <= tolerance:
            if in_band_since is None:
                in_band_since = waited
            if waited - in_band_since >= settle_s:
                return {"temperature": temperature, "target": target, "waited_s": waited}
        else:
            in_band_since = None
        if waited >= timeout_s or time.monotonic() >= wall_deadline:
            raise TimeoutError(
                "channel {} not settled within {} s: temperature {} degC, target {} degC,"
                " tolerance {} K; check the PID gains, output limits and target".format(
                    ch, timeout_s, temperature, target, tolerance))


class ChannelState:
    """What a procedure changes on a channel, captured to put back afterwards:
    PID engaged or not, target, gains and output range, constant current."""

    def __init__(self, ch: int, pid: dict, output: dict, report: dict):
        self.ch = ch
        self.engaged = bool(report["pid_engaged"])
        self.target = pid["target"]
        self.params = dict(pid["parameters"])
        self.i_set = output["i_set"]
        self.limits = {k: output[k] for k in protocol.OUTPUT_LIMITS}

    @classmethod
    async def capture(cls, driver: Thermostat, ch: int) -> "ChannelState":
        """Read channel ``ch``'s present state."""
        return cls(ch, (await driver.get_pid())[ch], (await driver.get_output())[ch],
                   (await driver.report())[ch])

    async def restore(self, driver: Thermostat, params: bool = True,
                      retry_s: float = 10.0) -> None:
        """Put the state back (gains and output range too unless ``params`` is
        False), retrying for ``retry_s`` wall seconds while the connection is
        down; the last ConnectionError/TimeoutError is raised after that."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                if params:
                    await driver.set_pid_params(self.ch, **self.params)
                await driver.set_target(self.ch, self.target)
                if self.engaged:
                    await driver.engage_pid(self.ch)
                else:
                    await driver.set_current(self.ch, self.i_set)
                return
            except (ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def get_b_parameter(driver: Thermostat) -> list:
    """Both channels' thermistor parameters ``params`` in the units
    ``set_b_parameter`` takes: ``t0`` in °C (the device shows kelvin; this
    subtracts 273.15), ``r0`` in ohm, ``b`` in K."""
    result = []
    for entry in await driver.get_b_parameter():
        params = dict(entry["params"])
        params["t0"] = params["t0"] - KELVIN
        result.append({**entry, "params": params})
    return result
