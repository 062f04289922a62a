"""Helpers of the sink tests (a helper module, not a test module): real
InfluxDB 1.x and VictoriaMetrics servers on free loopback ports with their
data in a temporary folder, a delaying HTTP proxy, and readers that query
the points back.

* :class:`Influxd`: ``influxd run`` with a generated config (loopback only,
  no reporting, no self-monitoring); ``auth=True`` creates an admin user.
* :class:`VictoriaMetrics`: ``victoria-metrics`` on a free port.
* :class:`DelayProxy`: forwards HTTP requests to a server, each reply held
  back ``delay`` seconds; records every request body it forwards.

Both servers can be stopped (SIGTERM to their own PID) and started again
on the same port and data folder, for outages.
"""

import gzip
import json
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import httpx
import pytest

from harness import free_port, wait_until

INFLUXD = shutil.which("influxd")
VICTORIA = shutil.which("victoria-metrics")
needs_influxd = pytest.mark.skipif(
    INFLUXD is None, reason="influxd is not installed (Debian package influxdb)")
needs_victoria = pytest.mark.skipif(
    VICTORIA is None, reason="victoria-metrics is not installed (Debian package victoria-metrics)")

ADMIN = ("admin", "sinks-kit-password")


class Server:
    """A database process on a free loopback port, restartable."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.root / "server.log"

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return "http://127.0.0.1:{}".format(self.port)

    def argv(self) -> list:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> "Server":
        """Start the process and wait until it answers."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self.proc.poll() is not None or self.ready(), timeout=30,
                       what="{} to answer".format(self.argv()[0]))
        except AssertionError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise AssertionError("{} exited: {}".format(self.argv()[0], self.log.read_text()))
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait for it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _get(self, path: str) -> bool:
        try:
            return httpx.get(self.base + path, timeout=1).status_code < 500
        except httpx.TransportError:
            return False


class Influxd(Server):
    """InfluxDB 1.x; ``auth`` turns authentication on (user :data:`ADMIN`)."""

    def __init__(self, root: Path, auth: bool = False):
        super().__init__(root)
        self.auth = auth
        self.rpc_port = free_port()
        self.config = self.root / "influxdb.conf"
        self.config.write_text("\n".join([
            'reporting-disabled = true',
            'bind-address = "127.0.0.1:{}"'.format(self.rpc_port),
            '[meta]', '  dir = "{}"'.format(self.root / "meta"),
            '[data]', '  dir = "{}"'.format(self.root / "data"),
            '  wal-dir = "{}"'.format(self.root / "wal"), '  query-log-enabled = false',
            '[monitor]', '  store-enabled = false',
            '[http]', '  bind-address = "127.0.0.1:{}"'.format(self.port),
            '  log-enabled = false', '  auth-enabled = {}'.format(str(auth).lower()),
            '[logging]', '  level = "warn"', ""]))
        self._user_made = False

    def argv(self) -> list:
        return [INFLUXD, "run", "-config", str(self.config)]

    def ready(self) -> bool:
        return self._get("/ping")

    def start(self) -> "Influxd":
        super().start()
        if self.auth and not self._user_made:
            self.query("CREATE USER {} WITH PASSWORD '{}' WITH ALL PRIVILEGES".format(*ADMIN),
                       auth=None)
            self._user_made = True
        return self

    def query(self, q: str, db: Optional[str] = None, auth=ADMIN) -> dict:
        """Run InfluxQL ``q`` (epoch ms times); the JSON answer."""
        params = {"q": q, "epoch": "ms"}
        if db is not None:
            params["db"] = db
        r = httpx.post(self.base + "/query", data=params, timeout=30,
                       auth=auth if self.auth else None)
        r.raise_for_status()
        return r.json()

    def create_db(self, name: str) -> None:
        """CREATE DATABASE ``name``."""
        self.query('CREATE DATABASE "{}"'.format(name))

    def points(self, db: str, measurement: str = "thermostat") -> list:
        """Every point of ``measurement``: dicts of tags, fields and ``time``
        (epoch ms), in time order per series."""
        answer = self.query('SELECT * FROM "{}" GROUP BY *'.format(measurement), db=db)
        out = []
        for result in answer["results"]:
            for series in result.get("series", []):
                for row in series["values"]:
                    point = dict(series["tags"])
                    point.update({c: v for c, v in zip(series["columns"], row) if v is not None})
                    out.append(point)
        return out


class VictoriaMetrics(Server):
    """VictoriaMetrics single node (a 100-year retention, so any ts is kept)."""

    def argv(self) -> list:
        return [VICTORIA, "-httpListenAddr", "127.0.0.1:{}".format(self.port),
                "-storageDataPath", str(self.root / "data"), "-retentionPeriod", "100y",
                "-loggerLevel", "ERROR"]

    def ready(self) -> bool:
        return self._get("/health")

    def export(self, match: str = '{__name__=~"thermostat_.*"}') -> list:
        """Every series matching ``match`` as ``{"metric", "values",
        "timestamps"}`` (after making the recent writes searchable)."""
        httpx.get(self.base + "/internal/force_flush", timeout=30)
        r = httpx.post(self.base + "/api/v1/export", data={"match[]": match, "start": "0"},
                       timeout=60)
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]


class DelayProxy:
    """An HTTP proxy on a free loopback port in front of ``upstream`` that
    holds each reply back ``delay`` seconds and records each request's
    (decompressed) body in :attr:`bodies`."""

    def __init__(self, upstream: str, delay: float = 0.0):
        self.upstream = upstream
        self.delay = delay
        self.bodies: list = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-encoding", "content-type",
                                            "authorization")}
                try:
                    r = httpx.post(proxy.upstream + self.path, content=body, headers=headers,
                                   timeout=30)
                    status, content = r.status_code, r.content
                except httpx.TransportError:
                    status, content = 502, b"upstream down"
                if status < 300:
                    data = gzip.decompress(body) if headers.get(
                        "Content-Encoding", headers.get("content-encoding")) == "gzip" else body
                    proxy.bodies.append(data)
                time.sleep(proxy.delay)
                self.send_response(status)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return "http://127.0.0.1:{}".format(self.port)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def wire_order(bodies: list) -> dict:
    """``{(device, channel): [ts, ...]}`` in the order the points crossed the wire."""
    out: dict = {}
    for body in bodies:
        for line in body.decode().splitlines():
            head, _, ts = line.rpartition(" ")
            tags = dict(t.split("=", 1) for t in head.split(" ", 1)[0].split(",")[1:])
            out.setdefault((tags["device"], tags["channel"]), []).append(int(ts))
    return out
