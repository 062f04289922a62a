"""Database servers on free loopback ports with their data in a given
folder (a helper module of the benchmarks and the sink tests): a real
InfluxDB 1.x and VictoriaMetrics.

* :class:`Influxd`: ``influxd run`` with a generated config (loopback only,
  no reporting, no self-monitoring); ``auth=True`` creates an admin user.
* :class:`VictoriaMetrics`: ``victoria-metrics`` on a free port.

Both can be stopped (SIGTERM to their own PID) and started again on the
same port and data folder, for outages.  :data:`INFLUXD` and
:data:`VICTORIA` are the executables found on ``PATH`` (None when missing).
"""

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Optional

import httpx

from benchkit import free_port, wait_until

INFLUXD = shutil.which("influxd")
VICTORIA = shutil.which("victoria-metrics")
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
            wait_until(lambda: self.proc.poll() is not None or self.ready(), 30,
                       "an answer of " + self.argv()[0])
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError("{} exited: {}".format(self.argv()[0], self.log.read_text()))
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
