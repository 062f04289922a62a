"""Real notification receivers on loopback for the alarm tests (a helper
module): an HTTP server taking JSON webhooks and an SMTP server (aiosmtpd)."""

import email
import email.policy
import http.server
import json
import threading
from typing import Optional

from aiosmtpd.controller import Controller

from harness import free_port


class WebhookReceiver:
    """An HTTP server on loopback recording the JSON body of every POST."""

    def __init__(self, port: Optional[int] = None):
        self.port = port or free_port()
        self.bodies: list = []
        received = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The Apprise URL of this receiver."""
        return "json://127.0.0.1:{}/hook".format(self.port)

    def titles(self) -> list:
        return [body["title"] for body in self.bodies]

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class MailReceiver:
    """An SMTP server on loopback keeping every message it receives."""

    def __init__(self):
        self.port = free_port()
        self.messages: list = []
        received = self.messages

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                received.append(email.message_from_bytes(envelope.content,
                                                         policy=email.policy.default))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        """The Apprise URL sending to this server."""
        return ("mailto://127.0.0.1:{}?from=bridge@lab.example&to=ops@lab.example"
                "&secure=no".format(self.port))

    def subjects(self) -> list:
        return [str(m["subject"]) for m in self.messages]

    def __enter__(self) -> "MailReceiver":
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()
