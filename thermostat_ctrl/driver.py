"""Asyncio client for the Sinara Thermostat.

One persistent TCP connection, one request/reply exchange at a time (an
:class:`asyncio.Lock`), a timeout on every connect and read, and automatic
reconnection with capped exponential backoff.  When an exchange fails in any
way (timeout, reset, a cut or garbled line, cancellation) the connection is
dropped, so a late reply can never be handed to the next command.

The firmware dialect is detected on each connect (``output`` answered means
2025, ``invalid input`` means 2023) unless it is given.  Method names and
return shapes are the same for both dialects.
"""

import asyncio
import logging
import time
from typing import Any, Callable, Optional, Union

from . import protocol
from .aio import timeout as _timeout
from .protocol import Command, DeviceError, ProtocolError

logger = logging.getLogger(__name__)

__all__ = ["Thermostat", "DeviceError", "ProtocolError"]


class Thermostat:
    """Asyncio driver for one Thermostat.

    :param host: device address.
    :param port: TCP port (23 on the device).
    :param timeout: seconds allowed for connecting and for each reply line.
    :param firmware: ``"auto"`` (detect on connect), ``"2023"`` or ``"2025"``.
    :param backoff_max: longest wait, in seconds, between reconnection
        attempts after failures (the wait starts at 0.1 s and doubles).

    I/O failures raise :class:`ConnectionError` (including
    :class:`ProtocolError`) or :class:`TimeoutError`; an error reply raises
    :class:`DeviceError` (a :class:`RuntimeError`); bad arguments raise
    :class:`ValueError` before anything is sent.
    """

    BACKOFF_START = 0.1

    def __init__(self, host: str, port: int = 23, *, timeout: float = 5.0,
                 firmware: str = "auto", backoff_max: float = 1.0):
        if firmware != "auto":
            protocol.check_firmware(firmware)
        if not timeout > 0:
            raise ValueError("timeout must be positive, not {!r}".format(timeout))
        self.host = host
        self.port = port
        self.timeout = timeout
        self.backoff_max = backoff_max
        self._firmware_setting = firmware
        self._firmware: Optional[str] = None if firmware == "auto" else firmware
        self._lock = asyncio.Lock()
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._backoff = 0.0
        self._next_attempt = 0.0
        self._last_error = ""

    # ------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        """True while a connection to the device is open."""
        return self._writer is not None

    @property
    def firmware(self) -> Optional[str]:
        """The dialect in use (``"2023"``/``"2025"``), None before detection."""
        return self._firmware

    async def connect(self) -> None:
        """Connect now (otherwise the first command connects).

        Raises ConnectionError or TimeoutError when the device cannot be
        reached; later commands keep retrying with backoff.
        """
        async with self._lock:
            await self._ensure_connected(force=True)

    async def close(self) -> None:
        """Close the connection; a later command connects again."""
        async with self._lock:
            self._drop()

    async def __aenter__(self) -> "Thermostat":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None

    def _failed(self, error: str, began: float) -> None:
        """Record a failed connection attempt that began at ``began``
        (monotonic): the next may begin one backoff interval after it, so a
        slow failure (a timeout) does not add the backoff on top."""
        self._drop()
        self._last_error = error
        self._backoff = min(self.backoff_max, max(self.BACKOFF_START, 2 * self._backoff))
        self._next_attempt = began + self._backoff

    async def _ensure_connected(self, force: bool = False) -> None:
        if self._writer is not None and self._reader is not None and (
                self._writer.is_closing() or self._reader.at_eof()
                or self._reader.exception() is not None):
            # The device closed the idle connection (reset, dropped): nothing
            # was sent on it, so connect again at once instead of failing.
            self._drop()
        if self._writer is not None:
            return
        wait = self._next_attempt - time.monotonic()
        if wait > 0 and not force:
            raise ConnectionError(
                "Thermostat {}:{} unreachable ({}); next attempt in {:.1f} s".format(
                    self.host, self.port, self._last_error, wait))
        began = time.monotonic()
        try:
            async with _timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, limit=8192)
            if self._firmware_setting == "auto":
                self._firmware = await self._detect_firmware()
        except (OSError, asyncio.TimeoutError, ProtocolError, ValueError) as e:
            self._failed(_describe(e), began)
            raise _io_error(e, "connecting to Thermostat {}:{}".format(
                self.host, self.port)) from e
        except BaseException:
            self._drop()
            raise
        self._backoff = 0.0
        logger.info("connected to Thermostat %s:%s (firmware %s)",
                    self.host, self.port, self._firmware)

    async def _detect_firmware(self) -> str:
        line = await self._send_and_read(protocol.show("output", "2025"), 1)
        if protocol.is_invalid_input(line[0]):
            return "2023"
        protocol.channel_list(protocol.parse_reply(line[0], "output"), "output")
        return "2025"

    async def _send_and_read(self, command: Command, replies: int) -> list:
        assert self._writer is not None and self._reader is not None
        self._writer.write(command.line)
        async with _timeout(self.timeout):
            await self._writer.drain()
        lines = []
        for _ in range(replies):
            async with _timeout(self.timeout):
                line = await self._reader.readline()
            if not line.endswith(b"\n"):
                # A lost connection (device reset, no free socket, a line cut
                # short), not a garbled reply: a ConnectionError, not a ProtocolError.
                raise ConnectionResetError("connection closed by the device during the reply"
                                           " to {!r} (got {!r})".format(command.text, line))
            lines.append(line)
        return lines

    async def _exchange(self, command: Command) -> list:
        """Send one command and return its parsed reply lines.

        All reply lines are read before any error reply is raised, so the
        connection stays in step; any I/O doubt drops the connection.
        """
        async with self._lock:
            await self._ensure_connected()
            try:
                lines = await self._send_and_read(command, command.replies)
                replies = [_parse_all(line, command.text) for line in lines]
            except (OSError, asyncio.TimeoutError, ProtocolError, ValueError) as e:
                self._drop()
                self._last_error = _describe(e)
                raise _io_error(e, "waiting for the reply to {!r}".format(command.text)) from e
            except BaseException:
                self._drop()  # cancelled mid-exchange: the reply may still come
                raise
        for reply in replies:
            if isinstance(reply, DeviceError):
                raise reply
        return replies

    async def _query(self, command: Command) -> Any:
        return (await self._exchange(command))[0]

    async def _dialect(self) -> str:
        if self._firmware is None:
            async with self._lock:
                await self._ensure_connected()
        assert self._firmware is not None
        return self._firmware

    async def _show_channels(self, topic: str) -> list:
        command = protocol.show(topic, await self._dialect())
        return protocol.channel_list(await self._query(command), command.text)

    async def _set_each(self, build: Callable[[str, float], Command], values: dict) -> None:
        """Send ``build(name, value)`` for every given value; all are validated first."""
        commands = [build(k, v) for k, v in values.items() if v is not None]
        if not commands:
            raise ValueError("give at least one of " + ", ".join(values))
        for command in commands:
            await self._exchange(command)

    # ------------------------------------------------------------- getters

    async def report(self) -> list:
        """Both channels' report objects (temperature, currents, PID state), ch0 first."""
        return await self._show_channels("report")

    async def get_output(self) -> list:
        """Both channels' output settings (``i_set``, limits, centre; ``polarity``
        on firmware 2025), flat numbers on either firmware."""
        return [protocol.flatten_output(o) for o in await self._show_channels("output")]

    async def get_pid(self) -> list:
        """Both channels' PID settings: ``parameters`` (gains, output range) and ``target``."""
        return await self._show_channels("pid")

    async def get_b_parameter(self) -> list:
        """Both channels' thermistor parameters ``params``: ``t0`` (K), ``r0`` (ohm), ``b`` (K)."""
        return await self._show_channels("b_parameter")

    async def get_postfilter(self) -> list:
        """Both channels' postfilter ``rate`` in Hz (None when off)."""
        return await self._show_channels("postfilter")

    async def get_fan(self) -> Optional[dict]:
        """Fan state, or None on boards without a fan."""
        return await self._query(protocol.show("fan", await self._dialect()))

    async def get_hwrev(self) -> dict:
        """Hardware revision and fan settings."""
        return await self._query(protocol.show("hwrev", await self._dialect()))

    async def get_ipv4(self) -> dict:
        """Network settings: ``addr`` ("a.b.c.d/len") and, if set, ``gateway``."""
        return await self._query(protocol.show("ipv4", await self._dialect()))

    # ------------------------------------------------------------- setters

    async def set_current(self, ch: int, amps: float) -> None:
        """Drive a fixed TEC current (A; positive cools); disengages the PID."""
        await self._exchange(protocol.set_current(await self._dialect(), ch, amps))

    async def set_output_limits(self, ch: int, max_i_pos: Optional[float] = None,
                                max_i_neg: Optional[float] = None,
                                max_v: Optional[float] = None) -> None:
        """Set the given output limits: currents in A (positive magnitudes), voltage in V.

        All limits are 0 at boot without saved configuration, so no current
        flows until they are set.
        """
        firmware = await self._dialect()
        await self._set_each(lambda k, v: protocol.set_output_limit(firmware, ch, k, v),
                             {"max_i_pos": max_i_pos, "max_i_neg": max_i_neg, "max_v": max_v})

    async def set_pid_params(self, ch: int, kp: Optional[float] = None,
                             ki: Optional[float] = None, kd: Optional[float] = None,
                             output_min: Optional[float] = None,
                             output_max: Optional[float] = None) -> None:
        """Set the given PID gains (per sample) and output range (A)."""
        if output_min is not None and output_max is not None and output_min > output_max:
            raise ValueError("output_min ({}) must not exceed output_max ({})".format(
                output_min, output_max))
        await self._set_each(lambda k, v: protocol.set_pid_param(ch, k, v),
                             {"kp": kp, "ki": ki, "kd": kd, "output_min": output_min,
                              "output_max": output_max})

    async def set_target(self, ch: int, celsius: float) -> None:
        """Set the PID target temperature in degrees Celsius."""
        await self._exchange(protocol.set_pid_param(ch, "target", celsius))

    async def engage_pid(self, ch: int) -> None:
        """Hand the channel's output to the PID loop."""
        await self._exchange(protocol.engage_pid(await self._dialect(), ch))

    async def set_b_parameter(self, ch: int, t0: Optional[float] = None,
                              r0: Optional[float] = None, b: Optional[float] = None) -> None:
        """Set the given thermistor parameters: t0 (degC), r0 (ohm), b (K)."""
        firmware = await self._dialect()
        await self._set_each(lambda k, v: protocol.set_b_param(firmware, ch, k, v),
                             {"t0": t0, "r0": r0, "b": b})

    async def set_postfilter(self, ch: int, rate_hz: Optional[float]) -> None:
        """Set the ADC postfilter rate in Hz (a supported rate), or None for off."""
        await self._exchange(protocol.set_postfilter(await self._dialect(), ch, rate_hz))

    async def set_center(self, ch: int, center: Union[str, float]) -> None:
        """Set the output's zero-current centre: ``"vref"`` or a voltage."""
        await self._exchange(protocol.set_center(ch, center))

    async def set_polarity(self, ch: int, polarity: str) -> None:
        """Set the output polarity ``"normal"`` or ``"reversed"`` (firmware 2025)."""
        await self._exchange(protocol.set_polarity(await self._dialect(), ch, polarity))

    async def set_fan(self, power: Union[None, str, int] = "auto") -> None:
        """Set the fan power 1..100 %, or ``"auto"``/None to follow the fan curve."""
        await self._exchange(protocol.set_fan(power))

    async def set_fcurve(self, a: float, b: float, c: float) -> None:
        """Set the automatic fan curve a*x**2 + b*x + c (x = max |tec_i| / 2 A)."""
        await self._exchange(protocol.set_fcurve(a, b, c))

    async def save_config(self, ch: Optional[int] = None) -> None:
        """Save one channel's configuration to flash, or both when ``ch`` is None."""
        await self._exchange(protocol.save(ch))

    async def load_config(self, ch: Optional[int] = None) -> None:
        """Load configuration from flash (FlashConfigNotFound if never saved)."""
        await self._exchange(protocol.load(ch))

    async def reset(self) -> None:
        """Reboot the device.  It is off the network for a few seconds; the next
        command reconnects."""
        async with self._lock:
            await self._ensure_connected()
            try:
                self._writer.write(protocol.reset().line)
                async with _timeout(self.timeout):
                    await self._writer.drain()
            except (OSError, asyncio.TimeoutError) as e:
                raise _io_error(e, "sending reset") from e
            finally:
                self._drop()


def _parse_all(line: bytes, command: str) -> Any:
    """Parse a reply, returning a DeviceError instead of raising it."""
    try:
        return protocol.parse_reply(line, command)
    except DeviceError as e:
        return e


def _describe(e: BaseException) -> str:
    return "{}: {}".format(type(e).__name__, e) if str(e) else type(e).__name__


def _io_error(e: BaseException, doing: str) -> Exception:
    """Map a low-level failure to ConnectionError or TimeoutError with context."""
    if isinstance(e, asyncio.TimeoutError):
        return TimeoutError("Thermostat did not answer in time while {}; the connection was"
                            " reset and the next command reconnects".format(doing))
    if isinstance(e, ProtocolError):
        return ProtocolError("{} while {}; the connection was reset".format(e, doing))
    return ConnectionError("Thermostat connection failed while {} ({}); the next command"
                           " reconnects".format(doing, _describe(e)))
