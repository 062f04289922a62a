"""The Thermostat's TCP line protocol, without any I/O.

Builds validated command lines for both firmware dialects and parses reply
lines.  A :class:`Command` carries its wire bytes and how many reply lines the
device sends for it, so a transport never has to know the grammar.

Dialects:

* ``"2023"``: ``pwm`` and ``s-h``; output limits shown as ``{"value", "max"}``
  objects; ``report mode`` exists.
* ``"2025"``: ``output`` and ``b-p``; flat numbers; ``polarity`` exists.

Everything that reaches the wire is checked first: channel 0 or 1, finite
numbers written in plain decimal (the device rejects exponents), printable
ASCII words without spaces, at most 64 bytes per line (the device's line
buffer silently truncates longer lines).
"""

import ipaddress
import json
import logging
import math
import re
from decimal import Decimal
from typing import Any, NamedTuple, Optional, Union

import numpy as np

logger = logging.getLogger(__name__)

FIRMWARES = ("2023", "2025")
DEFAULT_PORT = 23
LINE_BUFFER = 64
CHANNELS = (0, 1)

# First words the device understands; nothing else is ever sent.
VOCABULARY = frozenset({
    "report", "output", "pwm", "center", "pid", "b-p", "s-h", "postfilter",
    "load", "save", "ipv4", "fan", "fcurve", "hwrev", "reset",
})

OUTPUT_LIMITS = ("max_i_pos", "max_i_neg", "max_v")
PID_PARAMS = ("target", "kp", "ki", "kd", "output_min", "output_max")
B_PARAMS = ("t0", "r0", "b")
POLARITIES = ("normal", "reversed")
#: Keys of each channel's object of a ``report``, in order (both firmwares).
REPORT_KEYS = ("channel", "time", "interval", "adc", "sens", "temperature", "pid_engaged",
               "i_set", "dac_value", "dac_feedback", "i_tec", "tec_i", "tec_u_meas",
               "pid_output")
#: Report keys of older firmware only (``vref`` until August 2023).
HISTORIC_REPORT_KEYS = ("vref",)

# Largest magnitudes each firmware accepts without clamping them silently.
CURRENT_MAX = {"2023": 3.0, "2025": 2.0}
LIMIT_MAX = {
    "2023": {"max_i_pos": 3.0, "max_i_neg": 3.0, "max_v": 5.0},
    "2025": {"max_i_pos": 2.0, "max_i_neg": 2.0, "max_v": 4.3},
}
POSTFILTER_RATES = {
    "2023": (16.67, 20.0, 21.25, 27.0),
    "2025": (16.667, 20.0, 25.0, 27.27),
}

INVALID_INPUT = '{ "error": "invalid input" }'
_DOUBLE_BRACE = re.compile(r'^\{\{"error": "(?P<text>[^"]*)"\}\}$')
_WORD = re.compile(r"^[!-~]+$")  # printable ASCII, no space


class ThermostatError(Exception):
    """Base class of the errors this package raises about the device."""


class DeviceError(ThermostatError, RuntimeError):
    """The device answered with an error reply; ``text`` is its message."""

    def __init__(self, text: str, command: str = ""):
        self.text = text
        self.command = command
        where = " to {!r}".format(command) if command else ""
        super().__init__("device replied error{}: {}".format(where, text))


class FlashConfigNotFound(DeviceError):
    """``load`` of a channel whose configuration was never saved."""


class ProtocolError(ThermostatError, ConnectionError):
    """A line from the device that is not a valid reply (garbage, desync)."""


class UnsupportedCommand(ThermostatError, NotImplementedError):
    """The connected firmware dialect lacks the command."""


class Command(NamedTuple):
    """One request: the bytes to send and the number of reply lines."""

    line: bytes
    replies: int = 1

    @property
    def text(self) -> str:
        """The command without its line terminator, for messages."""
        return self.line.decode("ascii").rstrip("\n")


# ---------------------------------------------------------------- validation

def check_firmware(firmware: str) -> str:
    """Return ``firmware`` if it is a known dialect name, else ValueError."""
    if firmware not in FIRMWARES:
        raise ValueError("firmware must be one of {}, not {!r}".format(
            ", ".join(FIRMWARES), firmware))
    return firmware


def parse_address(address: str, default_port: int = DEFAULT_PORT) -> tuple:
    """Split ``HOST[:PORT]`` (``[v6addr]:PORT`` for IPv6) into (host, port);
    ``default_port`` (23) when omitted.  ValueError for a malformed address."""
    host, port = address, default_port
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("bad device address {!r}".format(address))
        port_text = rest[1:] if rest else None
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    else:
        port_text = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError("bad port in device address {!r}".format(address))
        port = int(port_text)
    if not host:
        raise ValueError("no host in device address {!r}".format(address))
    return host, port


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.1``, ``::1``,
    ``[::1]``); False for anything else (``0.0.0.0``, ``::``, other names)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_channel(ch: Any) -> int:
    """Return ``ch`` if it is channel 0 or 1, else ValueError."""
    if isinstance(ch, bool) or not isinstance(ch, (int, np.integer)) or ch not in CHANNELS:
        raise ValueError("channel must be 0 or 1, not {!r}".format(ch))
    return int(ch)


def format_number(value: Any, name: str, f32: bool = False) -> str:
    """Write ``value`` in the plain decimal form the device parses.

    The shortest decimal that round-trips the float is written without an
    exponent (``1e-05`` becomes ``0.00001``).  ``f32`` marks parameters the
    firmware stores as single precision: a non-zero value that would become
    0 or overflow there is refused.  ValueError names ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError("{} must be a number, not {!r}".format(name, value))
    try:
        x = float(value)
    except OverflowError:  # an int beyond any float
        raise ValueError("{} is far too large ({} bits)".format(
            name, int(value).bit_length())) from None
    if not math.isfinite(x):
        raise ValueError("{} must be finite, not {!r}".format(name, value))
    if f32:
        with np.errstate(over="ignore", under="ignore"):
            stored = np.float32(x)
        if not np.isfinite(stored) or (x != 0 and stored == 0):
            raise ValueError("{} = {!r} cannot be stored by the device (single precision)"
                             .format(name, value))
    if x == 0:
        return "0"
    text = format(Decimal(repr(x)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _line(*words: str, replies: int = 1) -> Command:
    if words[0] not in VOCABULARY:
        raise ValueError("unknown command word {!r}".format(words[0]))
    for word in words:
        if not _WORD.match(word):
            raise ValueError("command word {!r} is not printable ASCII without spaces"
                             .format(word))
    text = " ".join(words)
    if len(text) > LINE_BUFFER:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError("command {!r} is {} bytes, longer than the device's {}-byte line"
                         " buffer; use fewer digits".format(shown, len(text), LINE_BUFFER))
    return Command((text + "\n").encode("ascii"), replies)


def _choice(value: Any, choices: tuple, name: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError("{} must be one of {}, not {!r}".format(
            name, ", ".join(repr(c) for c in choices), value))
    return value


def _dialect_word(firmware: str, word2023: str, word2025: str) -> str:
    return word2023 if check_firmware(firmware) == "2023" else word2025


def _require(firmware: str, needed: str, what: str) -> None:
    if check_firmware(firmware) != needed:
        raise UnsupportedCommand("{} needs firmware {} (the device speaks {})".format(
            what, needed, firmware))


# ----------------------------------------------------------------- commands

def show(topic: str, firmware: str) -> Command:
    """Show command for ``topic``: report, output, pid, b_parameter, postfilter,
    fan, hwrev or ipv4 (``output``/``b_parameter`` map to the dialect's word)."""
    words = {
        "report": "report", "pid": "pid", "postfilter": "postfilter", "fan": "fan",
        "hwrev": "hwrev", "ipv4": "ipv4",
        "output": _dialect_word(firmware, "pwm", "output"),
        "b_parameter": _dialect_word(firmware, "s-h", "b-p"),
    }
    return _line(words[_choice(topic, tuple(words), "topic")])


def set_current(firmware: str, ch: int, amps: float) -> Command:
    """Fixed TEC current (disengages the PID); positive current cools."""
    limit = CURRENT_MAX[check_firmware(firmware)]
    value = format_number(amps, "amps")
    if abs(float(amps)) > limit:
        raise ValueError("amps must be within +-{} A on firmware {}, not {!r}".format(
            limit, firmware, amps))
    return _line(_dialect_word(firmware, "pwm", "output"), str(check_channel(ch)), "i_set", value)


def set_output_limit(firmware: str, ch: int, limit: str, value: float) -> Command:
    """One of the MAX1968 limits ``max_i_pos``, ``max_i_neg`` (A) or ``max_v`` (V)."""
    _choice(limit, OUTPUT_LIMITS, "limit")
    top = LIMIT_MAX[check_firmware(firmware)][limit]
    text = format_number(value, limit)
    if not 0 <= float(value) <= top:
        raise ValueError("{} must be within 0..{} on firmware {}, not {!r}".format(
            limit, top, firmware, value))
    return _line(_dialect_word(firmware, "pwm", "output"), str(check_channel(ch)), limit, text)


def engage_pid(firmware: str, ch: int) -> Command:
    """Hand the channel's current setpoint to the PID loop."""
    return _line(_dialect_word(firmware, "pwm", "output"), str(check_channel(ch)), "pid")


def set_polarity(firmware: str, ch: int, polarity: str) -> Command:
    """Output polarity ``normal`` or ``reversed`` (firmware 2025)."""
    _require(firmware, "2025", "polarity")
    return _line("output", str(check_channel(ch)), "polarity",
                 _choice(polarity, POLARITIES, "polarity"))


def set_center(ch: int, center: Union[str, float]) -> Command:
    """Zero-current centre of the output: ``"vref"`` or a voltage."""
    value = "vref" if center == "vref" else format_number(center, "center", f32=True)
    return _line("center", str(check_channel(ch)), value)


def set_pid_param(ch: int, param: str, value: float) -> Command:
    """One PID parameter: target (degC), kp, ki, kd, output_min, output_max (A)."""
    _choice(param, PID_PARAMS, "PID parameter")
    return _line("pid", str(check_channel(ch)), param,
                 format_number(value, param, f32=(param != "target")))


def set_b_param(firmware: str, ch: int, param: str, value: float) -> Command:
    """One thermistor parameter: t0 (degC), r0 (ohm) or b (K)."""
    _choice(param, B_PARAMS, "thermistor parameter")
    text = format_number(value, param)
    if param != "t0" and float(value) <= 0:
        raise ValueError("{} must be positive, not {!r}".format(param, value))
    return _line(_dialect_word(firmware, "s-h", "b-p"), str(check_channel(ch)), param, text)


def set_postfilter(firmware: str, ch: int, rate_hz: Optional[float]) -> Command:
    """Postfilter rate in Hz (one the firmware supports) or None for off."""
    ch_word = str(check_channel(ch))
    if rate_hz is None:
        return _line("postfilter", ch_word, "off")
    text = format_number(rate_hz, "rate_hz", f32=True)
    rates = POSTFILTER_RATES[check_firmware(firmware)]
    if not any(abs(float(rate_hz) - r) < 0.01 for r in rates):
        raise ValueError("rate_hz must be one of {} on firmware {} (or None for off), not {!r}"
                         .format(", ".join(str(r) for r in rates), firmware, rate_hz))
    return _line("postfilter", ch_word, "rate", text)


def set_fan(power: Union[None, str, int]) -> Command:
    """Fan power 1..100 %, or None / ``"auto"`` to follow the fan curve."""
    if power is None or power == "auto":
        return _line("fan", "auto")
    if isinstance(power, bool) or not isinstance(power, (int, np.integer)) or not 1 <= power <= 100:
        raise ValueError("fan power must be an integer 1..100 or 'auto', not {!r}".format(power))
    return _line("fan", str(int(power)))


def set_fcurve(a: float, b: float, c: float) -> Command:
    """Fan curve a*x**2 + b*x + c of the load x = max |tec_i| / 2 A."""
    return _line("fcurve", format_number(a, "a", f32=True), format_number(b, "b", f32=True),
                 format_number(c, "c", f32=True))


def save(ch: Optional[int] = None) -> Command:
    """Save one channel's configuration to flash, or both (two reply lines)."""
    return _line("save", replies=2) if ch is None else _line("save", str(check_channel(ch)))


def load(ch: Optional[int] = None) -> Command:
    """Load one channel's configuration from flash, or both (two reply lines)."""
    return _line("load", replies=2) if ch is None else _line("load", str(check_channel(ch)))


def reset() -> Command:
    """Reboot the device; it sends no reply and aborts every connection."""
    return _line("reset", replies=0)


# ------------------------------------------------------------------ replies

def _reject_constant(name: str) -> float:
    raise ValueError(name)


def parse_reply(line: Union[bytes, str], command: str = "") -> Any:
    """Parse one reply line into plain Python values (None for null).

    Raises :class:`DeviceError` for an error reply (:class:`FlashConfigNotFound`
    for ``load`` without saved configuration) and :class:`ProtocolError` for a
    line that is no reply at all.  A warning reply is logged and returned.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("non-ASCII reply line {!r}".format(line.rstrip(b"\r\n"))) from None
    text = line.rstrip("\r\n")
    match = _DOUBLE_BRACE.match(text)
    if match:
        message = match.group("text")
        if message == "flash config not found":
            raise FlashConfigNotFound(
                "no configuration saved in flash; save_config() first", command)
        raise DeviceError(message, command)
    try:
        reply = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        raise ProtocolError("not a valid reply line: {!r}".format(text)) from None
    if isinstance(reply, dict):
        if "error" in reply:
            raise DeviceError(str(reply["error"]), command)
        if "warning" in reply:
            logger.warning("device warning%s: %s",
                           " to {!r}".format(command) if command else "", reply["warning"])
    return reply


def channel_list(reply: Any, command: str = "") -> list:
    """Check a show reply is two channel objects and return them sorted."""
    if (not isinstance(reply, list) or len(reply) != 2
            or not all(isinstance(o, dict) and o.get("channel") in CHANNELS for o in reply)):
        raise ProtocolError("expected two channel objects in reply to {!r}, got {!r}"
                            .format(command, reply))
    return sorted(reply, key=lambda o: o["channel"])


def flatten_output(summary: dict) -> dict:
    """Turn firmware 2023's ``{"value": v, "max": m}`` entries into plain ``v``."""
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v)
            for k, v in summary.items()}


def is_invalid_input(line: Union[bytes, str]) -> bool:
    """True for the device's generic parse-error reply."""
    if isinstance(line, bytes):
        line = line.decode("ascii", "replace")
    return line.rstrip("\r\n") == INVALID_INPUT
