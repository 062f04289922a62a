"""Helpers of the sink tests (a helper module, not a test module): the
real InfluxDB 1.x and VictoriaMetrics servers of ``scripts/servers.py``
(:class:`Influxd`, :class:`VictoriaMetrics`, shared with the benchmarks;
pytest.ini puts ``scripts`` on the path), markers that skip without them,
and a delaying HTTP proxy.

* :class:`DelayProxy`: forwards HTTP requests to a server, each reply held
  back ``delay`` seconds; records every request body it forwards.
"""

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from servers import ADMIN, INFLUXD, VICTORIA, Influxd, VictoriaMetrics  # noqa: F401 (re-exported)

needs_influxd = pytest.mark.skipif(
    INFLUXD is None, reason="influxd is not installed (Debian package influxdb)")
needs_victoria = pytest.mark.skipif(
    VICTORIA is None, reason="victoria-metrics is not installed (Debian package victoria-metrics)")


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
