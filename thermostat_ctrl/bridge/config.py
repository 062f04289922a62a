"""Configuration of the HTTP bridge: its devices and its settings, from the
command line, a TOML file or the environment.

A device is given as ``[NAME=]HOST[:PORT]``.  NAME matches
:data:`DEVICE_NAME` and is unique; a device without a name is
``thermostat0``, ``thermostat1``, ... by position; simulated devices are
``sim0``, ``sim1``, ...

TOML file (``--config bridge.toml``; keys as the long options)::

    data_dir = "/var/lib/thermostat-bridge"
    poll_period = 1.0              # default of every device
    memory_s = 600
    fields = ["temperature", "tec_i"]

    [[device]]
    name = "laser"
    address = "10.0.0.5"
    firmware = "2025"              # per device: firmware, poll_period, fields, timeout

    [[device]]
    name = "cavity"
    address = "10.0.0.6:2323"
    poll_period = 0.1

    notify = ["mailto://smtp.lab.example?to=ops@lab.example", "json://10.0.0.9:8080/hook"]
    [alarms.out_of_band]           # rule settings (see alarms.settings), also per
    band_k = 0.02                  # [[device]] ([device.alarms...]) and channel

    summary_at = "07:00"           # a stability summary (see summary) at 07:00 UTC,
    summary_period_s = 86400       # of the last day, every day (off without summary_at)

    artiq_master = "127.0.0.1:3251"  # live datasets for the ARTIQ dashboard
    influx = ["http://127.0.0.1:8086/write?db=lab"]   # sinks (see sinks.settings)
    influx_spool_mb = 256          # and influx_measurement, influx_batch_points,
                                   # influx_batch_s, influx_token_file, ...

Settings are merged in one place, :func:`load`: the dataclasses' defaults,
then the TOML file, then the environment, then the command line, each
overriding the one before for every device (devices given on one of them
replace those of the ones before).  Everything is checked there, before
anything is bound or written, and an error names where the bad value came
from: the file, the variable or the option, the device and the key.

Environment variables (the only source of the ASGI factory
``thermostat_ctrl.bridge.web.app:app_from_env``, see :func:`from_env`):

==============================  ==============================================
``THERMOSTAT_DEVICES``          ``NAME=HOST[:PORT],...`` (names optional)
``THERMOSTAT_DEVICE``           one ``HOST[:PORT]`` (older form)
``THERMOSTAT_SIMULATION``       ``1``/``true``: one simulated device; ``N``: N
``THERMOSTAT_CONFIG``           a TOML file as above (the variables override it)
``THERMOSTAT_SPEED``            simulated time factor (simulation only, 1)
``THERMOSTAT_DATA_DIR``         CSV log directory (``./thermostat-data``)
``THERMOSTAT_POLL_PERIOD``      seconds between polls (1.0)
``THERMOSTAT_MEMORY_S``         seconds of samples kept in memory (600)
``THERMOSTAT_FIELDS``           comma-separated report fields (all numeric ones)
``THERMOSTAT_FIRMWARE``         ``auto``, ``2023`` or ``2025`` (``auto``)
``THERMOSTAT_TIMEOUT``          seconds allowed per device reply (derived
                                from the poll period when unset)
``THERMOSTAT_TOKEN``            bearer token required by POST endpoints (and
                                by every endpoint with ``PROTECT_READS``)
``THERMOSTAT_BIND``             the address the server binds (``127.0.0.1``);
                                set it to uvicorn's ``--host`` so that a
                                non-loopback bind without a token is refused
``THERMOSTAT_PROTECT_READS``    ``1``: GET endpoints need the token too
``THERMOSTAT_WRITE_TOKEN_FILE`` a file of ``NAME TOKEN`` lines, the tokens
                                that may change devices (see
                                :mod:`.access`); without it the bridge is
                                read-only
``THERMOSTAT_ADOPT``            ``1``: append to device folders that record
                                another device's rows (``--adopt``)
``THERMOSTAT_INFLUX``           InfluxDB / VictoriaMetrics write URLs,
                                comma-separated; their credentials:
                                ``THERMOSTAT_INFLUX_TOKEN(_FILE)``,
                                ``..._USER``, ``..._PASSWORD(_FILE)``
``THERMOSTAT_INFLUX_SPOOL_MB``  bound of each sink's spool (256)
``THERMOSTAT_ARTIQ_MASTER``     ``HOST[:PORT]`` of an ``artiq_master`` (port
                                3251) receiving live datasets
``THERMOSTAT_NOTIFY``           Apprise URLs receiving the alarms,
                                separated by spaces
``THERMOSTAT_SUMMARY_AT``       ``HH:MM`` (UTC) of the stability summary;
                                its period: ``..._SUMMARY_PERIOD_S`` (86400)
==============================  ==============================================
"""

import contextlib
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from .. import protocol
from . import access
from . import schema
from .alarms import settings as alarm_settings
from .alarms.notify import check_urls
from .sinks import settings as sink_settings
from .sinks.artiq_master import parse_master
from .summary import check_at

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "THERMOSTAT_"
#: Default reply timeout as a fraction of the poll period.
TIMEOUT_FRACTION = 0.8
#: Shortest accepted bearer token.
TOKEN_MIN = 16
#: What a device name may be.
DEVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: The name of the ``i``-th device given without one.
DEFAULT_NAME = "thermostat{}"
#: The name of the ``i``-th simulated device: never a real device's default, so
#: by default a simulation's rows go to folders of their own.
SIMULATED_NAME = "sim{}"
#: Most simulated devices one bridge runs.
MAX_SIMULATED = 32
#: The data directory unless one is given.
DATA_DIR = "./thermostat-data"

_TOKEN = re.compile(r"^[!-~]+$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
#: Settings of the bridge that are the defaults of every device.
_DEVICE_DEFAULTS = ("poll_period", "fields", "firmware", "timeout")
_DEVICE_KEYS = {"name", "address", "firmware", "poll_period", "fields", "timeout", "alarms"}
_TOP_KEYS = {"device", "simulation", "speed", "data_dir", "poll_period", "memory_s", "fields",
             "firmware", "timeout", "bind", "port", "protect_reads", "influx", "notify", "alarms",
             "artiq_master", "summary_at", "summary_period_s", "write_token_file",
             *("influx_" + option for option in sink_settings.OPTIONS)}


class SettingError(ValueError):
    """A bad value of the setting ``key``; :func:`load` says where it came from."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@contextlib.contextmanager
def _setting(key: str) -> Iterator[None]:
    """Turn a ValueError of the checks inside into a :class:`SettingError` of ``key``."""
    try:
        yield
    except SettingError:
        raise
    except ValueError as e:
        raise SettingError(key, str(e)) from None


class ExposureError(ValueError):
    """The configuration would expose the bridge unprotected (a non-loopback
    bind without a token)."""


@dataclass(frozen=True)
class DeviceConfig:
    """One polled device (ValueError on bad values, naming the device).

    ``address`` is ``HOST[:PORT]``, or None for a simulated device.
    """

    name: str
    address: Optional[str] = None
    firmware: str = "auto"
    poll_period: float = 1.0
    fields: Optional[tuple] = None
    timeout: Optional[float] = None
    #: Rule settings of this device and its channels (see :mod:`.alarms.settings`).
    alarms: dict = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not DEVICE_NAME.match(self.name):
            raise SettingError("name", "device name {!r} must match {} (lower-case letters,"
                               " digits, '_' and '-', at most 32)".format(
                                   self.name, DEVICE_NAME.pattern))
        try:
            with _setting("address"):
                if self.address is not None:
                    protocol.parse_address(self.address)
            with _setting("firmware"):
                if self.firmware != "auto":
                    protocol.check_firmware(self.firmware)
            with _setting("poll_period"):
                _check_period(self.poll_period)
            with _setting("fields"):
                if self.fields is not None:
                    object.__setattr__(self, "fields", check_fields(self.fields))
            with _setting("timeout"):
                if self.timeout is not None and not (_finite(self.timeout) and self.timeout > 0):
                    raise ValueError("timeout must be a positive number of seconds, not {!r}"
                                     .format(self.timeout))
        except SettingError as e:
            raise SettingError(e.key, "device {}: {}".format(self.name, e)) from None

    @property
    def simulated(self) -> bool:
        """True for a device of the built-in simulation."""
        return self.address is None

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

    def capacity(self, memory_s: float) -> int:
        """Rows kept in memory for ``memory_s`` seconds."""
        return max(1, math.ceil(memory_s / self.poll_period - 1e-9))


@dataclass(frozen=True)
class BridgeConfig:
    """Validated settings of one bridge process (ValueError on bad values)."""

    devices: tuple
    speed: float = 1.0
    data_dir: str = DATA_DIR
    memory_s: float = 600.0
    bind: str = "127.0.0.1"
    token: Optional[str] = None
    protect_reads: bool = False
    #: Append to device folders that record another device's rows (see
    #: :mod:`.storage.identity`); from the command line or the environment only.
    adopt: bool = False
    port: int = 8000  #: HTTP port of the ``thermostat_bridge`` command (0: a free one)
    influx: tuple = ()  #: the sinks' :class:`~.sinks.settings.InfluxSettings`
    #: ``(name, token)`` pairs that may change devices; none: read-only
    write_tokens: tuple = ()
    notify: tuple = ()  #: Apprise URLs receiving the alarms
    artiq_master: Optional[str] = None  #: ``HOST[:PORT]`` of the ARTIQ master sink
    #: Bridge-wide rule settings (see :mod:`.alarms.settings`).
    alarms: dict = field(default_factory=dict, hash=False, compare=False)
    summary_at: Optional[str] = None  #: ``HH:MM`` (UTC) of the stability summary; None: off
    summary_period_s: float = 86400.0  #: the range of each summary and the time between them

    def __post_init__(self):
        if not self.devices:
            raise ValueError("give at least one device (-d) or --simulation")
        names = [d.name for d in self.devices]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError("device name {} given more than once".format(", ".join(repeated)))
        if any(d.simulated for d in self.devices) and not all(d.simulated for d in self.devices):
            raise ValueError("simulated and real devices cannot be mixed")
        with _setting("speed"):
            if not (_finite(self.speed) and self.speed > 0):
                raise ValueError("speed must be a positive number, not {!r}".format(self.speed))
            if self.speed != 1.0 and not self.simulation:
                raise ValueError("speed only applies to the simulation")
        with _setting("data_dir"):
            if not isinstance(self.data_dir, str) or not self.data_dir:
                raise ValueError("data_dir must be a directory path, not {!r}"
                                 .format(self.data_dir))
        longest = max(d.poll_period for d in self.devices)
        with _setting("memory_s"):
            if not (_finite(self.memory_s) and self.memory_s >= longest):
                raise ValueError("memory must be at least one poll period ({} s), not {!r}"
                                 .format(longest, self.memory_s))
        with _setting("port"):
            if isinstance(self.port, bool) or not isinstance(self.port, int) \
                    or not 0 <= self.port < 65536:
                raise ValueError("port must be 0..65535, not {!r}".format(self.port))
        with _setting("bind"):
            if not isinstance(self.bind, str):
                raise ValueError("bind must be an address, not {!r}".format(self.bind))
        if self.token is not None:
            check_token(self.token)
        if self.token is not None and any(t == self.token for _, t in self.write_tokens):
            raise ValueError("a write token must differ from the read token (--token)")
        with _setting("notify"):
            object.__setattr__(self, "notify", check_urls(self.notify))
        with _setting("artiq_master"):
            if self.artiq_master is not None:
                if not isinstance(self.artiq_master, str):
                    raise ValueError("artiq_master must be HOST[:PORT], not {!r}".format(
                        self.artiq_master))
                parse_master(self.artiq_master)
        with _setting("summary_at"):
            if self.summary_at is not None:
                check_at(self.summary_at)
        with _setting("summary_period_s"):
            if not (_finite(self.summary_period_s) and self.summary_period_s >= 1):
                raise ValueError("summary_period_s must be at least 1 s, not {!r}".format(
                    self.summary_period_s))
        if self.protect_reads and self.token is None:
            raise ExposureError("protecting reads needs a token (--token or {}TOKEN)"
                                .format(ENV_PREFIX))
        if not protocol.is_loopback(self.bind) and self.token is None:
            raise ExposureError(
                "refusing to serve on {} (beyond loopback) without a token: set {}TOKEN"
                " (or --token), at least {} characters".format(
                    self.bind or "all interfaces", ENV_PREFIX, TOKEN_MIN))

    @property
    def simulation(self) -> bool:
        """True when the devices are the built-in simulation."""
        return self.devices[0].simulated

    def device(self, name: str) -> DeviceConfig:
        """The device called ``name`` (KeyError if none)."""
        for device in self.devices:
            if device.name == name:
                return device
        raise KeyError(name)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_period(value: Any) -> None:
    if not (_finite(value) and value > 0):
        raise ValueError("poll period must be a positive number of seconds, not {!r}"
                         .format(value))


def parse_device(spec: str, position: int) -> tuple[str, str]:
    """``(name, address)`` of a ``[NAME=]HOST[:PORT]`` entry at ``position``
    (0-based) of the device list; ValueError naming the entry."""
    name, sep, address = spec.strip().rpartition("=")
    if not sep:
        name = DEFAULT_NAME.format(position)
    try:
        protocol.parse_address(address)
    except ValueError as e:
        raise ValueError("device {!r}: {}".format(spec, e)) from None
    return name, address


def build(devices: Sequence[str] = (), simulation: Optional[int] = None,
          file_devices: Sequence[dict] = (), **settings: Any) -> BridgeConfig:
    """A :class:`BridgeConfig` from device entries and settings; what is not
    given keeps the dataclasses' defaults.

    ``devices`` are ``[NAME=]HOST[:PORT]`` entries; ``simulation`` is a number
    of simulated devices (``true`` in a file: one); ``file_devices`` are the
    ``[[device]]`` tables of a TOML file (used when neither of the other two
    is given), whose own keys override the settings ``poll_period``,
    ``fields``, ``firmware`` and ``timeout`` of every device.  The other
    ``settings`` are :class:`BridgeConfig` fields, with ``write_token_file``
    (read into ``write_tokens``), ``influx`` (write
    URLs) and ``influx_<option>`` for :func:`~.sinks.settings.sinks_from`.
    """
    defaults = {key: settings.pop(key) for key in _DEVICE_DEFAULTS if key in settings}
    influx = {key[len("influx_"):]: settings.pop(key) for key in list(settings)
              if key.startswith("influx_")}
    with _setting("influx"):
        settings["influx"] = sink_settings.sinks_from(settings.pop("influx", ()), influx)
    token_file = settings.pop("write_token_file", None)
    if token_file is not None:
        settings["write_tokens"] = access.read_token_file(token_file, check_token)
    if simulation is True:
        simulation = 1
    if devices and simulation is not None:
        raise ValueError("give devices or a simulation, not both")
    if simulation is not None and simulation is not False:
        if not isinstance(simulation, int) or not 1 <= simulation <= MAX_SIMULATED:
            raise ValueError("simulation needs 1 to {} devices, not {}".format(
                MAX_SIMULATED, simulation))
        entries = [DeviceConfig(SIMULATED_NAME.format(i), None, **defaults)
                   for i in range(simulation)]
    elif devices:
        entries = [DeviceConfig(*parse_device(spec, i), **defaults)
                   for i, spec in enumerate(devices)]
    else:
        entries = [_file_device(table, i, defaults) for i, table in enumerate(file_devices)]
    return BridgeConfig(devices=tuple(entries), **settings)


def _file_device(table: Any, position: int, defaults: dict) -> DeviceConfig:
    """The device of a ``[[device]]`` table; its errors are of the key ``device``."""
    where = "[[device]] {}".format(position + 1)
    try:
        return _table_device(table, position, where, defaults)
    except ValueError as e:
        message = str(e) if str(e).startswith(where) else "{}: {}".format(where, e)
        raise SettingError("device", message) from None


def _table_device(table: Any, position: int, where: str, defaults: dict) -> DeviceConfig:
    if not isinstance(table, dict):
        raise ValueError("{}: must be a table".format(where))
    unknown = sorted(set(table) - _DEVICE_KEYS)
    if unknown:
        raise ValueError("{}: unknown key(s) {}; known: {}".format(
            where, ", ".join(unknown), ", ".join(sorted(_DEVICE_KEYS))))
    if "address" not in table:
        raise ValueError("{}: needs an address".format(where))
    name = table.get("name", DEFAULT_NAME.format(position))
    address = table["address"]
    if not isinstance(address, str):
        raise ValueError("{}: address must be a string".format(where))
    try:
        protocol.parse_address(address)
    except ValueError as e:
        raise ValueError("{} ({}): {}".format(where, name, e)) from None
    options = dict(defaults)
    if "alarms" in table:
        options["alarms"] = table["alarms"]  # checked by read_toml, which knows the file
    for key in ("firmware", "poll_period", "timeout"):
        if key in table:
            options[key] = table[key]
    if "fields" in table:
        options["fields"] = fields_of(table["fields"], "{} ({}) fields".format(where, name))
    return DeviceConfig(name, address, **options)


def read_toml(path: str) -> dict:
    """The settings of a TOML configuration file (see the module doc);
    ValueError with one line naming the file and the problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ValueError("cannot read {}: {}".format(path, e.strerror or e)) from None
    except UnicodeDecodeError as e:
        raise ValueError("{}: not UTF-8 text (byte {} at offset {})".format(
            path, hex(e.object[e.start]), e.start)) from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError("{}: {}".format(path, e)) from None
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ValueError("{}: unknown key(s) {}; known: {}".format(
            path, ", ".join(unknown), ", ".join(sorted(_TOP_KEYS))))
    if "fields" in data:
        data["fields"] = fields_of(data["fields"], "{}: fields".format(path))
    if "alarms" in data:
        data["alarms"] = alarm_settings.check(data["alarms"], "{}: alarms".format(path))
    if "notify" in data and not (isinstance(data["notify"], list)
                                 and all(isinstance(u, str) for u in data["notify"])):
        raise ValueError("{}: notify must be a list of Apprise URLs".format(path))
    devices = data.pop("device", [])
    if not isinstance(devices, list):
        raise ValueError("{}: device must be an array of tables ([[device]])".format(path))
    for position, table in enumerate(devices):
        if isinstance(table, dict) and "alarms" in table:
            alarm_settings.check(table["alarms"], "{}: [[device]] {} ({}) alarms".format(
                path, position + 1, table.get("name", DEFAULT_NAME.format(position))),
                channels=True)
    data["file_devices"] = devices
    return data


def fields_of(value: Any, what: str) -> tuple:
    """A field list from TOML: an array of names or a comma-separated string."""
    if isinstance(value, str):
        return parse_fields(value)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ValueError("{} must be a list of report field names".format(what))


def env_settings(environ: Mapping[str, str]) -> dict:
    """The settings the ``THERMOSTAT_*`` variables of ``environ`` give (see the
    module doc), with ``config`` for ``THERMOSTAT_CONFIG``."""
    def get(name: str) -> Optional[str]:
        value = environ.get(ENV_PREFIX + name)
        return None if value is None or not value.strip() else value.strip()

    def number(name: str) -> Optional[float]:
        text = get(name)
        if text is None:
            return None
        try:
            return float(text)
        except ValueError:
            raise ValueError("{}{} must be a number, not {!r}".format(
                ENV_PREFIX, name, text)) from None

    def flag(name: str) -> Optional[bool]:
        text = (get(name) or "").lower()
        if text not in _TRUE + _FALSE:
            raise ValueError("{}{} must be 1 or 0, not {!r}".format(ENV_PREFIX, name, text))
        return True if text in _TRUE else None

    settings: dict = {}
    devices = get("DEVICES")
    if devices is not None and get("DEVICE") is not None:
        raise ValueError("set {0}DEVICES or {0}DEVICE, not both".format(ENV_PREFIX))
    if devices is not None:
        settings["devices"] = [d for d in devices.split(",") if d.strip()]
    elif get("DEVICE") is not None:
        settings["devices"] = [get("DEVICE")]
    simulation = (get("SIMULATION") or "").lower()
    if simulation.isdigit() and simulation not in ("0", "1"):
        settings["simulation"] = int(simulation)
    elif flag("SIMULATION"):
        settings["simulation"] = 1
    try:
        fields = parse_fields(get("FIELDS"))
    except ValueError as e:
        raise ValueError("{}FIELDS: {}".format(ENV_PREFIX, e)) from None
    given = {
        "config": get("CONFIG"), "speed": number("SPEED"), "data_dir": get("DATA_DIR"),
        "poll_period": number("POLL_PERIOD"), "memory_s": number("MEMORY_S"),
        "fields": fields, "firmware": get("FIRMWARE"),
        "timeout": number("TIMEOUT"), "bind": get("BIND"), "token": get("TOKEN"),
        "protect_reads": flag("PROTECT_READS"), "adopt": flag("ADOPT"),
        "write_token_file": get("WRITE_TOKEN_FILE"),
        "influx": [u.strip() for u in get("INFLUX").split(",") if u.strip()]
        if get("INFLUX") else None,
        "influx_spool_mb": number("INFLUX_SPOOL_MB"),
        "notify": get("NOTIFY").split() if get("NOTIFY") else None,
        "artiq_master": get("ARTIQ_MASTER"),
        "summary_at": get("SUMMARY_AT"), "summary_period_s": number("SUMMARY_PERIOD_S"),
        **sink_settings.credentials_from_env(environ, ENV_PREFIX),
    }
    settings.update({k: v for k, v in given.items() if v is not None})
    return settings


def load(given: Mapping[str, Any], environ: Mapping[str, str]) -> BridgeConfig:
    """The one merge point of the settings: the defaults, the TOML file
    (``config``), the environment, then ``given`` (the command line's
    options, None where not given), each overriding the ones before; devices
    given by one replace those of the ones before.  ValueError with one line
    naming where a bad value came from (file, variable or option), the
    device and the key."""
    env = env_settings(environ)
    given = {k: v for k, v in given.items() if v is not None}
    path = given.pop("config", env.pop("config", None))
    layers: list[tuple[dict, Callable[[str], str]]] = []
    if path is not None:
        layers.append((read_toml(path), lambda key: path))
    layers.append((env, lambda key: ENV_PREFIX + key.upper()))
    layers.append((given, lambda key: "--" + ("device" if key == "devices" else key)
                   .replace("_", "-")))
    settings: dict = {}
    origins: dict[str, str] = {}
    for layer, origin in layers:
        if {"devices", "simulation"} & set(layer):
            for key in ("devices", "simulation", "file_devices"):
                settings.pop(key, None)
        settings.update(layer)
        origins.update({key: origin(key) for key in layer})
    if "file_devices" in origins:
        origins["device"] = origins["file_devices"]
    try:
        return build(**settings)
    except SettingError as e:
        if e.key not in origins:
            raise
        raise SettingError(e.key, "{}: {}".format(origins[e.key], e)) from None


def from_env(environ: Mapping[str, str]) -> BridgeConfig:
    """The configuration the ``THERMOSTAT_*`` variables give (see the module doc)."""
    return load({}, environ)


def check_token(token: str) -> str:
    """Return ``token`` if it is usable as a bearer token, else ExposureError."""
    if len(token) < TOKEN_MIN or not _TOKEN.match(token):
        raise ExposureError("the token must be at least {} printable ASCII characters"
                            " without spaces".format(TOKEN_MIN))
    return token


def check_fields(fields: Any) -> tuple:
    """``fields`` as a tuple if they are distinct report fields some firmware
    has (see :data:`~.schema.KNOWN_FIELDS`), else ValueError
    naming them."""
    if not isinstance(fields, (list, tuple)) or not all(isinstance(f, str) for f in fields):
        raise ValueError("fields must be a list of report field names, not {!r}".format(fields))
    if not fields:
        raise ValueError("fields must name at least one report field")
    try:
        schema.check_fields(fields, schema.KNOWN_FIELDS)
    except ValueError as e:
        raise ValueError("fields: {}".format(e)) from None
    return tuple(fields)


def parse_fields(text: Optional[str]) -> Optional[tuple]:
    """Split a comma-separated field list; None for no list."""
    if text is None:
        return None
    fields = tuple(f.strip() for f in text.split(","))
    if not all(fields):
        raise ValueError("empty name in field list {!r}".format(text))
    return fields
