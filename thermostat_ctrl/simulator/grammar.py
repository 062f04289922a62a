"""Device-side command-line parser, pure functions.

:func:`parse` takes one request line (terminator removed, already truncated to
the 64-byte line buffer) and returns a command tuple, or ``None`` for any input
the firmware answers with ``{ "error": "invalid input" }``.

Command tuples (``ch`` is 0/1, ``value`` a float):

* ``("report",)``, ``("report_mode",)``, ``("report_mode", bool)`` (FW-2023)
* ``("output",)``, ``("output", ch, "pid")``, ``("output", ch, "polarity", reversed)``
  (FW-2025), ``("output", ch, lim, value)`` with lim in ``i_set max_i_pos max_i_neg max_v``
  (``pwm`` on FW-2023 maps to the same tuples)
* ``("center", ch, None | value)``
* ``("pid",)``, ``("pid", ch, param, value)``
* ``("therm",)``, ``("therm", ch, "t0" | "b" | "r0", value)`` (``s-h`` / ``b-p``)
* ``("postfilter",)``, ``("postfilter", ch, None | value)`` (None = off)
* ``("load", None | ch)``, ``("save", None | ch)``
* ``("ipv4",)``, ``("ipv4", (a, b, c, d), prefix_len, None | (a, b, c, d))``
* ``("fan",)``, ``("fan", "auto")``, ``("fan", n)``
* ``("fcurve", None)`` (default) or ``("fcurve", (a, b, c))``
* ``("quit",)``, ``("reset",)``, ``("dfu",)``, ``("hwrev",)``

Whitespace rules reproduce the firmware's asymmetry: tokens are separated by
one or more spaces (not tabs) and trailing spaces/tabs are accepted only after
the rules marked ``[END]`` of the firmware's grammar.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

__all__ = ["parse", "parse_float", "FIRMWARES"]

FIRMWARES = ("2023", "2025")

Command = tuple
_U32_MAX = 0xFFFFFFFF

_SP = " +"
_END = "[ \t]*"
_CH = "([01])"
_F = "(-*[0-9.]+)"
_U = "([0-9]+)"
_ADDR = r"([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)"


class _Invalid(Exception):
    pass


def parse_float(text: str) -> float:
    """Parse a firmware float token ``-*[0-9.]+`` (several '-' count as one sign)."""
    digits = text.lstrip("-")
    if not digits or digits.strip("0123456789."):
        raise _Invalid(text)
    value = float(digits)  # ValueError for "." and "1.2.3", like Rust's parser
    return -value if len(digits) != len(text) else value


def _u32(text: str) -> int:
    value = int(text)
    if value > _U32_MAX:
        raise _Invalid(text)
    return value


def _addr(groups: tuple[str, ...]) -> tuple[int, int, int, int]:
    a, b, c, d = (_u32(g) % 256 for g in groups)
    return (a, b, c, d)


def _fan_level(text: str) -> int:
    # An integer too large for u32 becomes 0 (then clamped to 1 by the device).
    value = int(text)
    return 0 if value > _U32_MAX else value


def _rules(fw: str) -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], Command]]]:
    out = "output" if fw == "2025" else "pwm"
    therm = "b-p" if fw == "2025" else "s-h"
    lim = "(i_set|max_i_pos|max_i_neg|max_v)"
    raw: list[tuple[str, Callable[[re.Match[str]], Command]]] = [
        ("report" + _END, lambda m: ("report",)),
        (out + _END, lambda m: ("output",)),
        (f"{out}{_SP}{_CH}{_SP}pid{_END}", lambda m: ("output", int(m[1]), "pid")),
        (f"{out}{_SP}{_CH}{_SP}{lim}{_SP}{_F}{_END}",
         lambda m: ("output", int(m[1]), m[2], parse_float(m[3]))),
        (f"center{_SP}{_CH}{_SP}vref{_END}", lambda m: ("center", int(m[1]), None)),
        (f"center{_SP}{_CH}{_SP}{_F}{_END}",
         lambda m: ("center", int(m[1]), parse_float(m[2]))),
        ("pid" + _END, lambda m: ("pid",)),
        (f"pid{_SP}{_CH}{_SP}(target|kp|ki|kd|output_min|output_max){_SP}{_F}",
         lambda m: ("pid", int(m[1]), m[2], parse_float(m[3]))),
        (therm + _END, lambda m: ("therm",)),
        (f"{therm}{_SP}{_CH}{_SP}(t0|b|r0){_SP}{_F}",
         lambda m: ("therm", int(m[1]), m[2], parse_float(m[3]))),
        ("postfilter" + _END, lambda m: ("postfilter",)),
        (f"postfilter{_SP}{_CH}{_SP}off", lambda m: ("postfilter", int(m[1]), None)),
        (f"postfilter{_SP}{_CH}{_SP}rate{_SP}{_F}",
         lambda m: ("postfilter", int(m[1]), parse_float(m[2]))),
        ("load" + _END, lambda m: ("load", None)),
        (f"load{_SP}{_CH}{_END}", lambda m: ("load", int(m[1]))),
        ("save" + _END, lambda m: ("save", None)),
        (f"save{_SP}{_CH}{_END}", lambda m: ("save", int(m[1]))),
        ("ipv4" + _END, lambda m: ("ipv4",)),
        (f"ipv4{_SP}{_ADDR}/{_U}{_END}",
         lambda m: ("ipv4", _addr(m.groups()[0:4]), _u32(m[5]) % 256, None)),
        (f"ipv4{_SP}{_ADDR}/{_U}{_SP}{_ADDR}",
         lambda m: ("ipv4", _addr(m.groups()[0:4]), _u32(m[5]) % 256, _addr(m.groups()[5:9]))),
        ("fan" + _END, lambda m: ("fan",)),
        (f"fan{_SP}auto", lambda m: ("fan", "auto")),
        (f"fan{_SP}{_U}", lambda m: ("fan", _fan_level(m[1]))),
        (f"fcurve{_SP}default", lambda m: ("fcurve", None)),
        (f"fcurve{_SP}{_F}{_SP}{_F}{_SP}{_F}",
         lambda m: ("fcurve", (parse_float(m[1]), parse_float(m[2]), parse_float(m[3])))),
        ("quit", lambda m: ("quit",)),
        ("reset", lambda m: ("reset",)),
        ("dfu", lambda m: ("dfu",)),
        ("hwrev", lambda m: ("hwrev",)),
    ]
    if fw == "2025":
        raw.append((f"{out}{_SP}{_CH}{_SP}polarity{_SP}(normal|reversed){_END}",
                    lambda m: ("output", int(m[1]), "polarity", m[2] == "reversed")))
    else:
        raw.append((f"report{_SP}mode{_END}", lambda m: ("report_mode",)))
        raw.append((f"report{_SP}mode{_SP}(on|off)", lambda m: ("report_mode", m[1] == "on")))
    return [(re.compile(pattern), build) for pattern, build in raw]


_RULES = {fw: _rules(fw) for fw in FIRMWARES}


def parse(line: bytes, firmware: str = "2025") -> Optional[Command]:
    """Parse one request line for ``firmware`` ("2023" or "2025"); ``None`` if invalid."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return None
    for pattern, build in _RULES[firmware]:
        match = pattern.fullmatch(text)
        if match is not None:
            try:
                return build(match)
            except (_Invalid, ValueError):
                return None
    return None
