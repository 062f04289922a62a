"""argparse ``type=`` converters shared by the command lines
(``thermostat_ctrl``, ``aqctl_thermostat``, ``thermostat_sim``,
``thermostat_bridge``): each turns a bad value into argparse's one-line usage
error naming the argument; :func:`fail` is the same line for an error found
after parsing."""

import argparse
import math
import re
import sys
from typing import Any, NoReturn

from . import protocol

__all__ = ["fail", "number", "positive", "non_negative", "port", "address", "named_address", "channel",
           "TARGET_NAME"]

#: What a name given with ``NAME=HOST`` may be (an RPC target name: no spaces).
TARGET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def fail(prog: str, message: Any) -> NoReturn:
    """``prog: error: message`` on stderr, exit status 2 (argparse's own for a usage error)."""
    print("{}: error: {}".format(prog, message), file=sys.stderr)
    sys.exit(2)


def number(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: {!r}".format(text)) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("not a finite number: {!r}".format(text))
    return value


def positive(text: str) -> float:
    """A finite number above zero."""
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive, not {!r}".format(text))
    return value


def non_negative(text: str) -> float:
    """A finite number, zero or above."""
    value = number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0, not {!r}".format(text))
    return value


def port(text: str) -> int:
    """A TCP port number, 0 (pick a free one) to 65535."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError("not a port number (0..65535): {!r}".format(text))
    return int(text)


def address(text: str) -> tuple:
    """``HOST[:PORT]`` as (host, port), port 23 by default."""
    try:
        return protocol.parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def named_address(text: str) -> tuple:
    """``[NAME=]HOST[:PORT]`` as (name or None, (host, port)); NAME matches
    :data:`TARGET_NAME`."""
    name, sep, rest = text.rpartition("=")
    if sep and not TARGET_NAME.match(name):
        raise argparse.ArgumentTypeError(
            "name {!r} must be letters, digits, '_', '.' or '-' (at most 64)".format(name))
    return (name if sep else None), address(rest)


def channel(text: str) -> int:
    """Channel 0 or 1."""
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError("channel must be 0 or 1, not {!r}".format(text))
    return int(text)
