"""Configuration of the HTTP bridge, from the command line or the environment.

Environment variables read by :meth:`BridgeConfig.from_env` (used by the ASGI
factory ``thermostat_ctrl.bridge.app:app_from_env``):

============================  ==============================================
``THERMOSTAT_DEVICE``         device address ``HOST[:PORT]`` (port 23)
``THERMOSTAT_SIMULATION``     ``1``/``true``/``yes``: use the built-in simulator
``THERMOSTAT_SPEED``          simulated time factor (simulation only, 1)
``THERMOSTAT_DATA_DIR``       CSV log directory (``./thermostat-data``)
``THERMOSTAT_POLL_PERIOD``    seconds between polls (1.0)
``THERMOSTAT_MEMORY_S``       seconds of samples kept in memory (600)
``THERMOSTAT_FIELDS``         comma-separated report fields (all numeric ones)
``THERMOSTAT_FIRMWARE``       ``auto``, ``2023`` or ``2025`` (``auto``)
``THERMOSTAT_TIMEOUT``        seconds allowed per device reply (derived
                              from the poll period when unset)
``THERMOSTAT_TOKEN``          bearer token required by POST endpoints (and
                              by every endpoint with ``PROTECT_READS``)
``THERMOSTAT_BIND``           the address the server binds (``127.0.0.1``);
                              set it to uvicorn's ``--host`` so that a
                              non-loopback bind without a token is refused
``THERMOSTAT_PROTECT_READS``  ``1``: GET endpoints need the token too
============================  ==============================================

Exactly one of ``THERMOSTAT_DEVICE`` and ``THERMOSTAT_SIMULATION`` must be set.
"""

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from .. import protocol

ENV_PREFIX = "THERMOSTAT_"
#: Default reply timeout as a fraction of the poll period.
TIMEOUT_FRACTION = 0.8
#: Shortest accepted bearer token.
TOKEN_MIN = 16
_TOKEN = re.compile(r"^[!-~]+$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class ExposureError(ValueError):
    """The configuration would expose the bridge unprotected (a non-loopback
    bind without a token)."""


@dataclass(frozen=True)
class BridgeConfig:
    """Validated settings of one bridge process (ValueError on bad values)."""

    device: Optional[str] = None
    simulation: bool = False
    speed: float = 1.0
    data_dir: str = "./thermostat-data"
    poll_period: float = 1.0
    memory_s: float = 600.0
    fields: Optional[tuple] = None
    firmware: str = "auto"
    timeout: Optional[float] = None
    bind: str = "127.0.0.1"
    token: Optional[str] = None
    protect_reads: bool = False

    def __post_init__(self):
        if (self.device is None) == (not self.simulation):
            raise ValueError("give exactly one of a device address and simulation")
        if self.device is not None:
            protocol.parse_address(self.device)
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError("speed must be a positive number, not {!r}".format(self.speed))
        if self.speed != 1.0 and not self.simulation:
            raise ValueError("speed only applies to the simulation")
        if not (math.isfinite(self.poll_period) and self.poll_period > 0):
            raise ValueError("poll period must be a positive number of seconds, not {!r}"
                             .format(self.poll_period))
        if not (math.isfinite(self.memory_s) and self.memory_s >= self.poll_period):
            raise ValueError("memory must be at least one poll period ({} s), not {!r}"
                             .format(self.poll_period, self.memory_s))
        if self.firmware != "auto":
            protocol.check_firmware(self.firmware)
        if self.fields is not None and not self.fields:
            raise ValueError("fields must name at least one report field")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError("timeout must be a positive number of seconds, not {!r}"
                             .format(self.timeout))
        if self.token is not None:
            check_token(self.token)
        if self.protect_reads and self.token is None:
            raise ExposureError("protecting reads needs a token (--token or {}TOKEN)"
                                .format(ENV_PREFIX))
        if not is_loopback(self.bind) and self.token is None:
            raise ExposureError(
                "refusing to serve on {} (beyond loopback) without a token: set {}TOKEN"
                " (or --token), at least {} characters".format(
                    self.bind or "all interfaces", ENV_PREFIX, TOKEN_MIN))

    @property
    def capacity(self) -> int:
        """Rows kept in memory: ``memory_s / poll_period``."""
        return max(1, math.ceil(self.memory_s / self.poll_period - 1e-9))

    @property
    def reply_timeout(self) -> float:
        """Seconds allowed per device reply: the configured timeout, else
        :data:`TIMEOUT_FRACTION` of a poll period clamped to 0.05..5 s, so that
        a poll given up on never makes the loop skip the next instant and
        polling resumes within two periods of the device's recovery."""
        if self.timeout is not None:
            return self.timeout
        return min(5.0, max(0.05, TIMEOUT_FRACTION * self.poll_period))

    @property
    def backoff_max(self) -> float:
        """Longest wait between reconnection attempts: half a poll period (at
        most 1 s), so every scheduled poll while the device is away tries once."""
        return min(1.0, self.poll_period / 2)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "BridgeConfig":
        """Build the configuration from ``THERMOSTAT_*`` variables (see the module doc)."""
        def get(name: str) -> Optional[str]:
            value = environ.get(ENV_PREFIX + name)
            return None if value is None or not value.strip() else value.strip()

        def number(name: str, default: float) -> float:
            text = get(name)
            if text is None:
                return default
            try:
                return float(text)
            except ValueError:
                raise ValueError("{}{} must be a number, not {!r}".format(
                    ENV_PREFIX, name, text)) from None

        simulation = (get("SIMULATION") or "").lower()
        if simulation not in _TRUE + _FALSE:
            raise ValueError("{}SIMULATION must be 1 or 0, not {!r}".format(ENV_PREFIX, simulation))
        timeout = get("TIMEOUT")
        protect = (get("PROTECT_READS") or "").lower()
        if protect not in _TRUE + _FALSE:
            raise ValueError("{}PROTECT_READS must be 1 or 0, not {!r}".format(
                ENV_PREFIX, protect))
        return cls(
            device=get("DEVICE"),
            simulation=simulation in _TRUE,
            speed=number("SPEED", 1.0),
            data_dir=get("DATA_DIR") or cls.data_dir,
            poll_period=number("POLL_PERIOD", cls.poll_period),
            memory_s=number("MEMORY_S", cls.memory_s),
            fields=parse_fields(get("FIELDS")),
            firmware=get("FIRMWARE") or "auto",
            timeout=None if timeout is None else number("TIMEOUT", 0.0),
            bind=get("BIND") or cls.bind,
            token=get("TOKEN"),
            protect_reads=protect in _TRUE,
        )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; False for anything else
    (``0.0.0.0``, ``::``, other names and addresses)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(token: str) -> str:
    """Return ``token`` if it is usable as a bearer token, else ExposureError."""
    if len(token) < TOKEN_MIN or not _TOKEN.match(token):
        raise ExposureError("the token must be at least {} printable ASCII characters"
                            " without spaces".format(TOKEN_MIN))
    return token


def parse_fields(text: Optional[str]) -> Optional[tuple]:
    """Split a comma-separated field list; None for no list."""
    if text is None:
        return None
    fields = tuple(f.strip() for f in text.split(","))
    if not all(fields):
        raise ValueError("empty name in field list {!r}".format(text))
    return fields
