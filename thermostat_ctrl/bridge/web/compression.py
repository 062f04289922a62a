"""gzip responses with ISA-L (``isal``): the same gzip that every browser and
Grafana reads, compressed about four times faster than zlib at level 1.

:class:`Gzip` is a pure ASGI middleware: a response whose body comes in one
message, of at least ``minimum_size`` bytes, to a client that accepts gzip,
goes out compressed.  Streamed responses (Server-Sent Events) and responses
that already carry a ``Content-Encoding`` pass through untouched.
"""

from isal import igzip
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: ISA-L level 1: a 330 kB JSON answer in about 1 ms, as small as zlib's level 1.
LEVEL = 1


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope.get("headers") or []:
        if name == b"accept-encoding":
            return any(part.split(b";")[0].strip() == b"gzip" for part in value.split(b","))
    return False


def _streamed(start: Message) -> bool:
    """True for a response sent as it is made (Server-Sent Events)."""
    return any(name == b"content-type" and value.startswith(b"text/event-stream")
               for name, value in start.get("headers") or [])


class Gzip:
    """ASGI middleware compressing whole response bodies with gzip."""

    def __init__(self, app: ASGIApp, minimum_size: int = 1000):
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _accepts_gzip(scope):
            await self.app(scope, receive, send)
            return
        start: list = []

        async def compressing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if _streamed(message):
                    await send(message)  # nothing to wait for: no compression
                else:
                    start.append(message)  # held until the body shows its size
                return
            if not start:
                await send(message)
                return
            head = start.pop()
            headers = head.get("headers") or []
            body = message.get("body", b"")
            encoded = any(name == b"content-encoding" for name, _ in headers)
            if message.get("more_body", False) or encoded or len(body) < self.minimum_size:
                await send(head)
                await send(message)
                return
            body = igzip.compress(body, LEVEL)
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            headers += [(b"content-encoding", b"gzip"), (b"content-length", str(len(body)).encode()),
                        (b"vary", b"Accept-Encoding")]
            await send({**head, "headers": headers})
            await send({**message, "body": body})

        await self.app(scope, receive, compressing_send)
