"""RPC facade of the Thermostat driver, served by ``aqctl_thermostat``.

sipyco serves every callable attribute of its target, underscore names
included, so the target is this thin class rather than the driver, wrapped
in :class:`PublicMethods` so that only its public methods are reachable:
nothing reachable over RPC can send raw text to the device or alter the
controller.

Rules kept here because of sipyco (its RPC carries JSON only, and only
public methods of the target):

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
import contextlib
import logging
from typing import Any, Awaitable, Optional, Union

from . import procedures, protocol
from .driver import Thermostat
from .procedures.watch import ChannelWatch
from .protocol import DeviceError, ProtocolError, UnsupportedCommand

logger = logging.getLogger(__name__)

__all__ = ["ThermostatRPC", "PublicMethods"]


class ThermostatRPC:
    """Sinara Thermostat (2-channel TEC controller).

    Channels are 0 and 1. Temperatures in degrees Celsius, currents in A,
    voltages in V. Errors: ValueError for a bad argument, ConnectionError or
    TimeoutError when the device cannot be reached (the controller keeps
    retrying), RuntimeError when the device rejects a command. Every way of
    setting a target refuses one outside the controller's safe window.
    """

    def __init__(self, driver: Thermostat, safe_window: tuple = procedures.SAFE_WINDOW,
                 ping_device: bool = True):
        self._driver = driver
        self._ping_device = ping_device
        self._jobs: dict = {}  # channel -> the procedure running on it
        self._safe_window = procedures.check_window(safe_window)
        self._watches: dict = {}  # channel -> its ChannelWatch

    async def _call(self, awaitable: Awaitable) -> Any:
        """Await a driver call, turning the package's exceptions into builtins."""
        try:
            return await awaitable
        except procedures.ProcedureError as e:
            raise RuntimeError(str(e)) from None
        except UnsupportedCommand as e:
            raise NotImplementedError(str(e)) from None
        except DeviceError as e:
            raise RuntimeError(str(e)) from None
        except ProtocolError as e:
            raise ConnectionError("{}; check that the address is a Thermostat".format(e)) from None

    # -------------------------------------------------------------- status

    async def ping(self) -> bool:
        """True when the device answers a short query, False (never an
        exception) when it does not.  A controller serving several devices
        answers True while it serves (``status()`` tells whether this device
        is connected): the controller manager pings one target and restarts
        the whole controller when that fails, which would cut off the
        devices that are fine."""
        if not self._ping_device:
            return True
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
        """Both channels' thermistor parameters ``params`` in the units
        ``set_b_parameter`` takes: ``t0`` (degC; the device shows kelvin),
        ``r0`` (ohm), ``b`` (K)."""
        return await self._call(procedures.get_b_parameter(self._driver))

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

    async def set_target(self, ch: int, celsius: float,
                         ramp: Optional[float] = None) -> Optional[dict]:
        """Set the PID target temperature in degC (ValueError outside the
        controller's safe window, see :meth:`safe_window`); with ``ramp``
        (K/s) move it there at that rate instead (see :meth:`ramp`, whose
        result it returns)."""
        procedures.check_target(celsius, self._safe_window)
        if ramp is not None:
            return await self.ramp(ch, celsius, ramp)
        await self._call(self._driver.set_target(ch, celsius))
        return None

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

    # ---------------------------------------------------------- procedures

    async def power_up(self, ch: int, target: float, kp: Optional[float] = None,
                       ki: Optional[float] = None, kd: Optional[float] = None,
                       max_i_pos: Optional[float] = None, max_i_neg: Optional[float] = None,
                       max_v: Optional[float] = None, safe_window: Optional[list] = None) -> dict:
        """Regulate channel ``ch`` to ``target`` degC: set the given output
        limits and PID gains, the target, then engage the PID.

        All arguments are checked before anything is sent; a target outside
        ``safe_window`` ([low, high] degC within the controller's window,
        which is the default) is a ValueError.
        Returns the channel's resulting ``{"pid": {...}, "output": {...}}``
        (with ``"warning"`` when the output limits are all 0, the boot
        default, so that no current can flow).
        """
        result = await self._call(procedures.power_up(
            self._driver, ch, target, kp, ki, kd, max_i_pos, max_i_neg, max_v,
            safe_window=self._window(safe_window)))
        if "warning" in result:
            logger.warning("%s", result["warning"])
        return result

    async def wait_settled(self, ch: int, tolerance: float = 0.01, settle_s: float = 10,
                           timeout_s: float = 600) -> dict:
        """Wait until channel ``ch``'s temperature has stayed within
        ``tolerance`` (K) of its PID target for ``settle_s`` seconds.

        Time is counted on the device's own sample clock; a target changed
        meanwhile is followed. Returns ``{"temperature", "target",
        "waited_s"}``. ValueError when ``settle_s > timeout_s``; TimeoutError
        when not settled within ``timeout_s``; RuntimeError when the PID is
        not engaged; ConnectionError/TimeoutError when the device stops
        answering.
        """
        return await self._call(procedures.wait_settled(self._driver, ch, tolerance, settle_s,
                                                        timeout_s))

    async def autotune(self, ch: int, target: float, rule: str = procedures.DEFAULT_RULE,
                       amplitude: Optional[float] = None, hysteresis: Optional[float] = None,
                       window: float = 3.0, timeout_s: float = 1800.0, apply: bool = False,
                       engage: bool = False, save: bool = False,
                       safe_window: Optional[list] = None) -> dict:
        """Relay-autotune channel ``ch``'s PID at ``target`` degC.

        Relay feedback around the operating-point current within the output
        limits as set (0 limits are refused), noise band from the measured
        noise unless ``hysteresis`` (K) is given, relay swing capped at
        ``amplitude`` (A). ``rule``: "designed" (default: chosen on the
        identified model by simulating a target step on the firmware's PID),
        "simc", "ziegler-nichols", "tyreus-luyben", ... Aborts, restoring the
        channel's previous state, when the temperature leaves ``target ±
        window`` K, after ``timeout_s`` device seconds, on an open thermistor,
        a lost connection, no convergence or ``abort(ch)``. ``apply`` writes
        the gains and output range, ``engage`` then engages the PID on the
        target, ``save`` saves to flash. Returns gains (per sample, and
        ``gains_per_second``), ``rules`` (all of them), ``ku``, ``pu``,
        ``model`` (K, T, L), ``noise_k``, ``cycles`` and ``data``.
        """
        with self._job(ch, "autotune") as job:
            return await self._call(procedures.autotune(
                self._driver, ch, target, rule=rule, amplitude=amplitude,
                hysteresis=hysteresis, window=window, timeout_s=timeout_s, apply=apply,
                engage=engage, save=save, safe_window=self._window(safe_window),
                on_progress=job["progress"].update, abort=job["abort"]))

    def autotune_progress(self, ch: int) -> Optional[dict]:
        """Progress of the procedure running on channel ``ch`` (None when none
        runs): ``state``, ``peaks``, ``cycles``, ``amplitude`` (K), ``period``
        (s), ``bias`` (A), ``elapsed_s``, ``remaining_s`` (estimate) and
        ``procedure``; for a ramp ``setpoint`` (the target so far),
        ``target`` and ``rate``."""
        protocol.check_channel(ch)
        job = self._jobs.get(ch)
        return None if job is None else {"procedure": job["name"], **job["progress"]}

    def abort(self, ch: int) -> bool:
        """Stop the procedure running on channel ``ch``, which restores the
        channel's previous state and raises RuntimeError in its caller.
        Returns False when none was running."""
        protocol.check_channel(ch)
        job = self._jobs.get(ch)
        if job is None:
            return False
        job["abort"].set()
        return True

    async def step_response(self, ch: int, delta: float, band: float = 0.01,
                            duration_s: float = 300.0, hold_s: float = 30.0,
                            back: bool = True) -> dict:
        """Step channel ``ch``'s target by ``delta`` K and back (PID engaged).

        Returns ``{"up": ..., "down": ...}`` each with ``rise_time_s``,
        ``overshoot_k``, ``settling_time_s`` (to ``band`` K on a 1 s moving
        mean; None if not within ``duration_s``), ``steady_std_k``,
        ``steady_error_k`` and the ``data``. ``abort(ch)`` stops it; the
        target is put back on every exit.
        """
        with self._job(ch, "step_response") as job:
            return await self._call(procedures.step_response(
                self._driver, ch, delta, band=band, duration_s=duration_s, hold_s=hold_s,
                back=back, safe_window=self._safe_window, abort=job["abort"]))

    def safe_window(self) -> list:
        """The controller's safe target window ``[low, high]`` degC
        (``aqctl_thermostat --safe-window``): targets outside it are refused
        by every method that sets one."""
        return list(self._safe_window)

    async def channel_state(self, ch: int, tolerance: float = 0.01,
                            hold_s: float = 10.0) -> dict:
        """Channel ``ch``'s regulation now, without waiting for it: whether
        it is ``in_band`` (within ``tolerance`` K of the target, PID
        engaged), ``in_band_since`` and ``in_band_s`` (device clock),
        ``settled`` (in band for ``hold_s`` s), and over the last ``hold_s``
        s: ``error_mean``, ``error_std`` (K), ``samples``, ``window_s``;
        also ``temperature``, ``target``, ``error``, ``pid_engaged``,
        ``time`` and ``age_s`` of the latest sample.

        The controller samples the channel in the background from the first
        call until 60 s after the last, so later calls answer at once; the
        first waits for one sample (ConnectionError / TimeoutError when the
        device does not answer).  ValueError for a bad tolerance or a hold_s
        outside 0..3600.
        """
        protocol.check_channel(ch)
        watch = self._watches.get(ch)
        if watch is None:
            watch = self._watches[ch] = ChannelWatch(self._driver, ch)
        return await self._call(watch.state(tolerance, hold_s))

    def _window(self, window: Optional[list]) -> tuple:
        """A call's safe window: the controller's, or one inside it."""
        if window is None:
            return self._safe_window
        low, high = procedures.check_window(window)
        if low < self._safe_window[0] or high > self._safe_window[1]:
            raise ValueError("safe_window {}..{} degC reaches beyond the controller's safe"
                             " window {}..{} degC (aqctl_thermostat --safe-window)".format(
                                 low, high, *self._safe_window))
        return low, high

    async def ramp(self, ch: int, target: float, rate: float,
                   safe_window: Optional[list] = None) -> dict:
        """Move channel ``ch``'s PID target from its present value to
        ``target`` degC at ``rate`` K/s at most, one step per sample of the
        device.

        ``autotune_progress(ch)`` shows ``setpoint`` (the target so far),
        ``remaining_s`` and ``state``; ``abort(ch)`` stops the ramp where it
        is (RuntimeError naming the target it stays at).  A lost connection
        is retried for 30 s; the ramp resumes if the device kept its target,
        and stops with a RuntimeError naming the target the device holds if
        it rebooted or the target was changed meanwhile (ConnectionError
        naming the last target set if it does not come back).  ValueError
        for a rate of 0 or below or a target outside ``safe_window``.
        Returns ``{"start", "target", "rate", "duration_s", "steps"}``.
        """
        with self._job(ch, "ramp") as job:
            return await self._call(procedures.ramp(
                self._driver, ch, target, rate, safe_window=self._window(safe_window),
                on_progress=job["progress"].update, abort=job["abort"]))

    @contextlib.contextmanager
    def _job(self, ch: int, name: str):
        protocol.check_channel(ch)
        running = self._jobs.get(ch)
        if running is not None:
            raise RuntimeError("channel {} is busy: {} is running (abort({}) stops it)".format(
                ch, running["name"], ch))
        job = {"name": name, "abort": asyncio.Event(), "progress": {"state": "starting"}}
        self._jobs[ch] = job
        try:
            yield job
        finally:
            del self._jobs[ch]


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
