"""RPC facade of the Thermostat driver, served by ``aqctl_thermostat``.

sipyco serves every callable attribute of its target, underscore names
included, so the target is this thin class rather than the driver, wrapped
in :class:`PublicMethods` so that only its public methods are reachable:
nothing reachable over RPC can send raw text to the device or alter the
controller.

Rules kept here because of sipyco (see ``artiq-sipyco.md`` §2, §4):

* return values are plain JSON types (dict, list, str, float, int, bool,
  None);
* errors are builtin exception classes, which sipyco re-raises on the client
  unchanged: ValueError (bad argument), ConnectionError / TimeoutError
  (device I/O), RuntimeError (error reply from the device),
  NotImplementedError (command missing in the device's firmware dialect);
* annotations are plain classes or ``typing`` forms: no ``-> None``, no
  ``X | None`` and no ``from __future__ import annotations`` in this module,
  because ``get_rpc_method_list`` (and ``sipyco_rpctool list-methods``)
  fails on them.

This module does not import sipyco.
"""

import asyncio
import logging
import time
from typing import Any, Awaitable, Optional, Union

from . import protocol
from .driver import Thermostat
from .protocol import DeviceError, ProtocolError, UnsupportedCommand

logger = logging.getLogger(__name__)

__all__ = ["ThermostatRPC", "PublicMethods"]


class ThermostatRPC:
    """Sinara Thermostat (2-channel TEC controller).

    Channels are 0 and 1. Temperatures in degrees Celsius, currents in A,
    voltages in V. Errors: ValueError for a bad argument, ConnectionError or
    TimeoutError when the device cannot be reached (the controller keeps
    retrying), RuntimeError when the device rejects a command.
    """

    def __init__(self, driver: Thermostat, poll_interval: float = 0.2):
        self._driver = driver
        self._poll_interval = poll_interval

    async def _call(self, awaitable: Awaitable) -> Any:
        """Await a driver call, turning the package's exceptions into builtins."""
        try:
            return await awaitable
        except UnsupportedCommand as e:
            raise NotImplementedError(str(e)) from None
        except DeviceError as e:
            raise RuntimeError(str(e)) from None
        except ProtocolError as e:
            raise ConnectionError("{}; check that the address is a Thermostat".format(e)) from None

    # -------------------------------------------------------------- status

    async def ping(self) -> bool:
        """True when the device answers a short query, False (never an
        exception) when it does not."""
        try:
            await self._driver.get_hwrev()
        except Exception as e:
            logger.debug("ping failed: %s", e)
            return False
        return True

    def status(self) -> dict:
        """Connection state without talking to the device: ``connected``,
        ``host``, ``port`` and ``firmware`` (None before the first connection)."""
        d = self._driver
        return {"connected": d.connected, "host": d.host, "port": d.port,
                "firmware": d.firmware}

    async def firmware(self) -> dict:
        """Firmware dialect (``"2023"`` or ``"2025"``) and hardware revision:
        ``{"firmware": ..., "hwrev": {...}}``."""
        hwrev = await self._call(self._driver.get_hwrev())
        return {"firmware": self._driver.firmware, "hwrev": hwrev}

    # ------------------------------------------------------------- getters

    async def report(self) -> list:
        """Both channels' reports, channel 0 first: ``temperature`` (degC or
        None without thermistor), ``pid_engaged``, ``i_set``, ``tec_i`` (A),
        ``tec_u_meas`` (V), ``time`` (s since boot of the last sample), ..."""
        return await self._call(self._driver.report())

    async def get_temperature(self, ch: int) -> Optional[float]:
        """Temperature of channel ``ch`` in degC (None without thermistor)."""
        protocol.check_channel(ch)
        return (await self.report())[ch]["temperature"]

    async def get_output(self) -> list:
        """Both channels' output settings: ``i_set``, ``max_i_pos``,
        ``max_i_neg`` (A), ``max_v`` (V), ``center`` (and ``polarity`` on
        firmware 2025)."""
        return await self._call(self._driver.get_output())

    async def get_pid(self) -> list:
        """Both channels' PID settings: ``target`` (degC) and ``parameters``
        (``kp``, ``ki``, ``kd``, ``output_min``, ``output_max``)."""
        return await self._call(self._driver.get_pid())

    async def get_b_parameter(self) -> list:
        """Both channels' thermistor parameters ``params``: ``t0`` (K),
        ``r0`` (ohm), ``b`` (K)."""
        return await self._call(self._driver.get_b_parameter())

    async def get_postfilter(self) -> list:
        """Both channels' postfilter ``rate`` in Hz (None when off)."""
        return await self._call(self._driver.get_postfilter())

    async def get_fan(self) -> Optional[dict]:
        """Fan state, or None on boards without a fan."""
        return await self._call(self._driver.get_fan())

    async def get_hwrev(self) -> dict:
        """Hardware revision and fan capability."""
        return await self._call(self._driver.get_hwrev())

    async def get_ipv4(self) -> dict:
        """Network settings of the device: ``addr`` ("a.b.c.d/len") and, if
        set, ``gateway``."""
        return await self._call(self._driver.get_ipv4())

    # ------------------------------------------------------------- setters

    async def set_current(self, ch: int, amps: float):
        """Drive a fixed TEC current (A; positive cools). Disengages the PID."""
        await self._call(self._driver.set_current(ch, amps))

    async def set_output_limits(self, ch: int, max_i_pos: Optional[float] = None,
                                max_i_neg: Optional[float] = None,
                                max_v: Optional[float] = None):
        """Set the given output limits: currents in A (positive magnitudes),
        voltage in V. All are 0 at boot without saved configuration, so no
        current flows until they are set."""
        await self._call(self._driver.set_output_limits(ch, max_i_pos, max_i_neg, max_v))

    async def set_pid_params(self, ch: int, kp: Optional[float] = None,
                             ki: Optional[float] = None, kd: Optional[float] = None,
                             output_min: Optional[float] = None,
                             output_max: Optional[float] = None):
        """Set the given PID gains (per sample) and output range (A)."""
        await self._call(self._driver.set_pid_params(ch, kp, ki, kd, output_min, output_max))

    async def set_target(self, ch: int, celsius: float):
        """Set the PID target temperature in degC."""
        await self._call(self._driver.set_target(ch, celsius))

    async def engage_pid(self, ch: int):
        """Hand channel ``ch``'s output to the PID loop."""
        await self._call(self._driver.engage_pid(ch))

    async def set_b_parameter(self, ch: int, t0: Optional[float] = None,
                              r0: Optional[float] = None, b: Optional[float] = None):
        """Set the given thermistor parameters: t0 (degC), r0 (ohm), b (K)."""
        await self._call(self._driver.set_b_parameter(ch, t0, r0, b))

    async def set_postfilter(self, ch: int, rate_hz: Optional[float]):
        """Set the ADC postfilter rate in Hz (one the firmware supports:
        16.667, 20, 25, 27.27 on 2025; 16.67, 20, 21.25, 27 on 2023), or None
        for off."""
        await self._call(self._driver.set_postfilter(ch, rate_hz))

    async def set_center(self, ch: int, center: Union[str, float]):
        """Set the output's zero-current centre: ``"vref"`` or a voltage."""
        await self._call(self._driver.set_center(ch, center))

    async def set_polarity(self, ch: int, polarity: str):
        """Set the output polarity ``"normal"`` or ``"reversed"`` (firmware
        2025 only; NotImplementedError on 2023)."""
        await self._call(self._driver.set_polarity(ch, polarity))

    async def set_fan(self, power: Union[None, str, int] = "auto"):
        """Set the fan power 1..100 (%), or ``"auto"``/None to follow the fan
        curve."""
        await self._call(self._driver.set_fan(power))

    async def set_fcurve(self, a: float, b: float, c: float):
        """Set the automatic fan curve a*x**2 + b*x + c (x = max |tec_i| / 2 A)."""
        await self._call(self._driver.set_fcurve(a, b, c))

    async def save_config(self, ch: Optional[int] = None):
        """Save channel ``ch``'s configuration to flash, or both channels'
        when ``ch`` is None. It is loaded automatically at boot."""
        await self._call(self._driver.save_config(ch))

    async def load_config(self, ch: Optional[int] = None):
        """Load channel ``ch``'s configuration (both when None) from flash.
        RuntimeError when none was saved."""
        await self._call(self._driver.load_config(ch))

    async def reset(self):
        """Reboot the device. It is off the network for a few seconds; the
        next command reconnects (ConnectionError until it is back)."""
        await self._call(self._driver.reset())

    # ---------------------------------------------------- experiment helpers

    async def power_up(self, ch: int, target: float, kp: Optional[float] = None,
                       ki: Optional[float] = None, kd: Optional[float] = None,
                       max_i_pos: Optional[float] = None, max_i_neg: Optional[float] = None,
                       max_v: Optional[float] = None) -> dict:
        """Regulate channel ``ch`` to ``target`` degC: set the given output
        limits and PID gains, the target, then engage the PID.

        All arguments are checked before anything is sent. Returns the
        channel's resulting ``{"pid": {...}, "output": {...}}``; if the output
        limits are all 0 (boot default) no current can flow, which is logged
        as a warning.
        """
        protocol.check_channel(ch)
        protocol.format_number(target, "target")
        gains = {"kp": kp, "ki": ki, "kd": kd}
        limits = {"max_i_pos": max_i_pos, "max_i_neg": max_i_neg, "max_v": max_v}
        for name, value in {**gains, **limits}.items():
            if value is not None:
                protocol.format_number(value, name, f32=name in gains)
        for name, value in limits.items():
            if value is not None and value < 0:
                raise ValueError("{} must not be negative, not {!r}".format(name, value))
        d = self._driver
        if any(v is not None for v in limits.values()):
            await self._call(d.set_output_limits(ch, max_i_pos, max_i_neg, max_v))
        if any(v is not None for v in gains.values()):
            await self._call(d.set_pid_params(ch, kp, ki, kd))
        await self._call(d.set_target(ch, target))
        await self._call(d.engage_pid(ch))
        result = {"pid": (await self.get_pid())[ch], "output": (await self.get_output())[ch]}
        if not any(result["output"].get(k) for k in limits):
            logger.warning("channel %d: PID engaged but all output limits are 0, so no current"
                           " flows; give max_i_pos, max_i_neg and max_v", ch)
        return result

    async def wait_settled(self, ch: int, tolerance: float = 0.01, settle_s: float = 10,
                           timeout_s: float = 600) -> dict:
        """Wait until channel ``ch``'s temperature has stayed within
        ``tolerance`` (K) of its PID target for ``settle_s`` seconds.

        Time is counted on the device's own sample clock (the report's
        ``time``), checked a few times per second, and bounded by
        ``timeout_s`` of both device and wall-clock time. Returns
        ``{"temperature", "target", "waited_s"}``. Raises TimeoutError when
        not settled within ``timeout_s``, RuntimeError when the PID is not
        engaged, ConnectionError/TimeoutError when the device stops answering.
        """
        protocol.check_channel(ch)
        _check_number("tolerance", tolerance, zero_ok=False)
        _check_number("settle_s", settle_s, zero_ok=True)
        _check_number("timeout_s", timeout_s, zero_ok=False)
        target = (await self.get_pid())[ch]["target"]
        wall_deadline = time.monotonic() + timeout_s
        waited = 0.0
        in_band_since: Optional[float] = None
        last_time: Optional[float] = None
        while True:
            rep = (await self.report())[ch]
            if not rep["pid_engaged"]:
                raise RuntimeError("channel {}: PID is not engaged; call power_up() or"
                                   " engage_pid() first".format(ch))
            now = rep["time"]
            if last_time is not None:
                if now >= last_time:
                    waited += now - last_time
                else:  # the device rebooted: its clock restarted
                    in_band_since = None
            last_time = now
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
            await asyncio.sleep(self._poll_interval)


class PublicMethods:
    """What ``aqctl_thermostat`` serves: only the public methods of a facade.

    sipyco calls ``getattr(target, name)`` for any name a client sends, so
    serving the facade itself would let a client call ``__init__``,
    ``__setattr__`` or ``_call`` and break the controller.  Through this
    wrapper every name starting with ``_`` is an AttributeError (sent back to
    the client), and method listing shows the facade's public methods.
    """

    __slots__ = ("_facade",)

    def __init__(self, facade: ThermostatRPC):
        object.__setattr__(self, "_facade", facade)

    def __getattribute__(self, name: str) -> Any:
        facade = object.__getattribute__(self, "_facade")
        if name == "__doc__":
            return type(facade).__doc__
        if name.startswith("_"):
            raise AttributeError("{!r} is not an RPC method of the Thermostat controller"
                                 .format(name))
        return getattr(facade, name)

    def __setattr__(self, name: str, value: Any):
        raise AttributeError("the RPC target is read-only")

    def __delattr__(self, name: str):
        raise AttributeError("the RPC target is read-only")

    def __dir__(self) -> list:
        facade = object.__getattribute__(self, "_facade")
        return [name for name in dir(facade) if not name.startswith("_")]


def _check_number(name: str, value: Any, zero_ok: bool):
    protocol.format_number(value, name)  # a finite number, else ValueError naming it
    if value < 0 or (value == 0 and not zero_ok):
        raise ValueError("{} must be {}, not {!r}".format(
            name, "zero or positive" if zero_ok else "positive", value))
