"""Settings of the InfluxDB / VictoriaMetrics sinks: the write URLs, the
credentials and the batching, validated (ValueError naming the option).

A sink's URL is the database's full write endpoint:

* InfluxDB 1.x style ``http://HOST:8086/write?db=lab`` (optionally ``&rp=``);
  VictoriaMetrics takes it too (``db`` becomes a label) and needs no ``db``;
* InfluxDB 2.x style ``http://HOST:8086/api/v2/write?org=lab&bucket=thermostat``.

The bridge adds ``precision=ms``.  Credentials never come from the URL (nor
from any option of the command line, which every user can read in the
process list); they come from the environment or from files:

==================================  ==========================================
``THERMOSTAT_INFLUX_TOKEN``         API token (``Authorization: Token ...``;
                                    InfluxDB 2.x, or 1.8+ with a token)
``THERMOSTAT_INFLUX_TOKEN_FILE``    a file holding the token
``THERMOSTAT_INFLUX_USER``          user name for InfluxDB 1.x (HTTP basic)
``THERMOSTAT_INFLUX_PASSWORD``      its password
``THERMOSTAT_INFLUX_PASSWORD_FILE`` a file holding the password
==================================  ==========================================

and, in the TOML file, ``influx_token_file``, ``influx_user`` and
``influx_password_file``.  They apply to every sink of the bridge.
"""

import hashlib
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .lineproto import check_measurement

__all__ = ["InfluxSettings", "sinks_from", "credentials_from_env", "spool_dir", "OPTIONS",
           "SPOOL_DIR"]

#: Folder of the sinks' spools inside the data directory.
SPOOL_DIR = ".spool"
#: Option names (``influx_<name>`` in the TOML file and for :func:`sinks_from`).
OPTIONS = ("measurement", "spool_mb", "batch_points", "batch_s", "timeout_s", "backoff_max_s",
           "token", "token_file", "user", "password", "password_file")

_ENV = {"token": "TOKEN", "token_file": "TOKEN_FILE", "user": "USER", "password": "PASSWORD",
        "password_file": "PASSWORD_FILE"}
_RESERVED_PARAMS = {"u": "user", "p": "password", "precision": "precision"}


def _positive(name: str, value: Any, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and value > 0
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        raise ValueError("influx {} must be a positive {}, not {!r}".format(
            name, "integer" if integer else "number", value))


@dataclass(frozen=True)
class InfluxSettings:
    """One sink: where to write and how (ValueError on bad values)."""

    url: str
    measurement: str = "thermostat"
    spool_mb: float = 256.0       #: bound of the spool on disk, MiB
    batch_points: int = 5000      #: a batch is sent once this many points wait...
    batch_s: float = 1.0          #: ...or once the oldest has waited this long
    timeout_s: float = 10.0       #: per write request
    backoff_max_s: float = 30.0   #: longest wait between retries (and after a refusal)
    token: Optional[str] = field(default=None, repr=False)
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)

    def __post_init__(self):
        check_measurement(self.measurement)
        _positive("spool_mb", self.spool_mb)
        if self.spool_mb < 1:
            raise ValueError("influx spool_mb must be at least 1, not {!r}".format(self.spool_mb))
        _positive("batch_points", self.batch_points, integer=True)
        for name in ("batch_s", "timeout_s", "backoff_max_s"):
            _positive(name, getattr(self, name))
        if self.token is not None and (self.user is not None or self.password is not None):
            raise ValueError("give the InfluxDB token or a user and password, not both")
        if (self.user is None) != (self.password is None):
            raise ValueError("an InfluxDB user needs a password and a password a user")
        self._check_url()

    def _check_url(self) -> None:
        what = "influx URL {!r}".format(self.url)
        if not isinstance(self.url, str):
            raise ValueError("influx URL must be a string, not {!r}".format(self.url))
        try:
            parts = urllib.parse.urlsplit(self.url)
            port = parts.port
        except ValueError as e:
            raise ValueError("{}: {}".format(what, e)) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("{}: must be http://HOST[:PORT]/write?db=... or"
                             " http://HOST[:PORT]/api/v2/write?org=...&bucket=...".format(what))
        if parts.username is not None or parts.password is not None:
            # Not echoed: the URL holds a secret.
            raise ValueError("influx URL: credentials do not belong in the URL; set THERMOSTAT_"
                             "INFLUX_USER and THERMOSTAT_INFLUX_PASSWORD(_FILE), or THERMOSTAT_"
                             "INFLUX_TOKEN(_FILE)")
        if not parts.path.endswith("/write"):
            raise ValueError("{}: the path must be the write endpoint, /write (InfluxDB 1.x,"
                             " VictoriaMetrics) or /api/v2/write (InfluxDB 2.x)".format(what))
        params = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        for param, name in _RESERVED_PARAMS.items():
            if param in params:
                raise ValueError("{}: drop {}=: {}".format(
                    what, param, "the bridge sends precision=ms" if param == "precision" else
                    "the {} comes from THERMOSTAT_INFLUX_{} or a file".format(name, _ENV[name])))
        if self.v2 and not params.get("bucket", [""])[0]:
            raise ValueError("{}: /api/v2/write needs bucket=".format(what))
        if port == 0:
            raise ValueError("{}: port 0".format(what))

    @property
    def v2(self) -> bool:
        """True for the InfluxDB 2.x endpoint (``/api/v2/write``)."""
        return urllib.parse.urlsplit(self.url).path.endswith("/api/v2/write")

    @property
    def write_url(self) -> str:
        """The URL requests go to: :attr:`url` with ``precision=ms``."""
        parts = urllib.parse.urlsplit(self.url)
        query = parts.query + ("&" if parts.query else "") + "precision=ms"
        return urllib.parse.urlunsplit(parts._replace(query=query))

    def headers(self) -> dict[str, str]:
        """The authentication header, if any."""
        if self.token is not None:
            return {"Authorization": "Token " + self.token}
        return {}

    def auth(self) -> Optional[tuple[str, str]]:
        """HTTP basic credentials (InfluxDB 1.x), if any."""
        return None if self.user is None else (self.user, self.password or "")


def _secret_file(path: Any, what: str) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError("{} must be a file name".format(what))
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as e:
        raise ValueError("{}: cannot read {}: {}".format(what, path, e.strerror or e)) from None
    except UnicodeDecodeError:
        raise ValueError("{}: {} is not text".format(what, path)) from None
    if not value:
        raise ValueError("{}: {} is empty".format(what, path))
    return value


def credentials_from_env(environ: Mapping[str, str], prefix: str) -> dict:
    """``influx_token`` / ``influx_token_file`` / ... settings from the
    ``<prefix>INFLUX_*`` variables that are set."""
    found = {}
    for option, suffix in _ENV.items():
        value = (environ.get(prefix + "INFLUX_" + suffix) or "").strip()
        if value:
            found["influx_" + option] = value
    return found


def sinks_from(urls: Any, options: Mapping[str, Any]) -> tuple:
    """An :class:`InfluxSettings` per URL, with ``options`` (names of
    :data:`OPTIONS`; ``token_file`` and ``password_file`` are read here) for
    each; ValueError naming the bad one."""
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, (list, tuple)) or not all(isinstance(u, str) for u in urls):
        raise ValueError("influx must be a write URL or a list of them")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError("unknown influx option(s) {}; known: {}".format(
            ", ".join(unknown), ", ".join(OPTIONS)))
    values = {k: v for k, v in options.items() if v is not None}
    for name in ("token", "password"):
        path = values.pop(name + "_file", None)
        if path is not None:
            if name in values:
                raise ValueError("give the influx {0} or a {0} file, not both".format(name))
            values[name] = _secret_file(path, "influx {} file".format(name))
    if not urls:
        settings = sorted(set(values) - {"token", "user", "password"})
        if settings:
            raise ValueError("influx option(s) {} given without an influx URL".format(
                ", ".join(settings)))
        return ()
    if len(set(urls)) != len(urls):
        raise ValueError("influx URL given more than once")
    return tuple(InfluxSettings(url, **values) for url in urls)


def spool_dir(data_dir: str, settings: InfluxSettings) -> str:
    """The spool folder of a sink: ``<data-dir>/.spool/<host-port-path>-<hash>``,
    one per URL."""
    parts = urllib.parse.urlsplit(settings.url)
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", "{}-{}{}".format(
        parts.hostname, parts.port or "", parts.path)).strip("-")[:48]
    digest = hashlib.sha256(settings.url.encode()).hexdigest()[:10]
    return os.path.join(os.path.abspath(data_dir), SPOOL_DIR, "{}-{}".format(slug, digest))

