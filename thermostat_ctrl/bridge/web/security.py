"""Request limits and bearer-token access control for the bridge's HTTP API.

:class:`Guard` is a pure ASGI middleware placed outside every route:

* a query string longer than :data:`MAX_QUERY` bytes or a path longer than
  :data:`MAX_PATH` bytes gets 414; headers of more than :data:`MAX_HEADERS`
  bytes in all get 431 (uvicorn's fast parser, httptools, sets no limit of
  its own); a request body larger than
  :data:`MAX_BODY` bytes gets 413 (by its ``Content-Length``, or counted
  while it is read when it is chunked);
* with a token configured, every request other than GET/HEAD (and, with
  ``protect_reads``, every request) needs ``Authorization: Bearer <token>``,
  compared in constant time; otherwise 401 with ``WWW-Authenticate: Bearer``.
  A GET/HEAD may also give the token as the password of HTTP Basic
  authentication (any user name), which is how a browser gives it to the
  live view, its data and its stream: a 401 to a read also offers Basic, so
  the browser asks for it, and tells a person in words how to give it.
  Basic is never accepted for a change, so no other site can make a
  browser that has the token change anything.
* a change (not GET/HEAD) under one of ``write_prefixes`` is left to the
  route's own check of the write tokens (:mod:`.writer`): the token above
  is the read token, a write token is another;
* a POST to one of ``read_posts`` (a computation that changes nothing, with
  a body) is checked as a read.

It adds no CORS headers: browsers on other origins cannot read the API.
"""

import base64
import binascii
import hmac
import json
from typing import Optional

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_QUERY = 2048
MAX_PATH = 1024
MAX_BODY = 4096
MAX_HEADERS = 16384
#: Methods that never change anything; open unless reads are protected.
READ_METHODS = frozenset({"GET", "HEAD"})
#: The 401 body for a browser (``Accept: text/html``) that asked to read.
READ_DENIED_HTML = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Thermostat bridge: token needed</title></head>
<body><h1>This bridge needs its token</h1>
<p>Reading from this Thermostat bridge needs the token it was started with
(<code>--token</code> or <code>THERMOSTAT_TOKEN</code>, with <code>--protect-reads</code>).</p>
<p>In a browser: reload this page and, when it asks to sign in, enter any user name and the
token as the password.</p>
<p>From a program: send <code>Authorization: Bearer &lt;token&gt;</code>, e.g.
<code>curl -H "Authorization: Bearer $THERMOSTAT_TOKEN" URL</code>.</p>
</body></html>
"""


class Guard:
    """ASGI middleware enforcing the request limits and the token.

    :param app: the wrapped application.
    :param token: the bearer token, or None for no access control.
    :param protect_reads: require the token for GET/HEAD too.
    :param write_prefixes: paths whose changes need a write token instead.
    :param read_posts: paths whose POSTs only read.
    """

    def __init__(self, app: ASGIApp, token: Optional[str] = None, protect_reads: bool = False,
                 write_prefixes: tuple = (), read_posts: tuple = ()):
        self.app = app
        self._token = None if token is None else token.encode()
        self.protect_reads = protect_reads
        self.write_prefixes = tuple(write_prefixes)
        self.read_posts = frozenset(read_posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > MAX_QUERY:
            await _reply(send, 414, "query string longer than {} bytes".format(MAX_QUERY))
            return
        if len(scope.get("raw_path") or scope["path"].encode()) > MAX_PATH:
            await _reply(send, 414, "path longer than {} bytes".format(MAX_PATH))
            return
        if sum(len(name) + len(value) for name, value in scope.get("headers") or ()) \
                > MAX_HEADERS:
            await _reply(send, 431, "request headers longer than {} bytes".format(MAX_HEADERS))
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await _reply(send, 413, "request body larger than {} bytes".format(MAX_BODY))
            return
        method = scope["method"]
        if method == "POST" and scope["path"] in self.read_posts:
            method = "GET"
        writing = method not in READ_METHODS and scope["path"].startswith(self.write_prefixes)
        if not writing and not self._authorised(method, headers.get(b"authorization")):
            if method not in READ_METHODS:
                await _reply(send, 401, "this endpoint needs 'Authorization: Bearer <token>'",
                             [(b"www-authenticate", b"Bearer")])
            else:
                await _deny_read(send, b"text/html" in headers.get(b"accept", b""))
            return
        if length is None and scope["method"] not in READ_METHODS:
            body = await _read_body(receive)
            if body is None:
                await _reply(send, 413, "request body larger than {} bytes".format(MAX_BODY))
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorised(self, method: str, authorization: Optional[bytes]) -> bool:
        if self._token is None or (method in READ_METHODS and not self.protect_reads):
            return True
        scheme, _, given = (authorization or b"").partition(b" ")
        scheme = scheme.lower()
        if scheme == b"basic" and method in READ_METHODS:
            given = _basic_password(given)
        elif scheme != b"bearer":
            return False
        # compare_digest takes the same time whatever the matching prefix.
        return hmac.compare_digest(given.strip(), self._token)


def _basic_password(credentials: bytes) -> bytes:
    """The password of HTTP Basic ``credentials`` (b"" when malformed)."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
    return decoded.partition(b":")[2]


async def _deny_read(send: Send, html: bool) -> None:
    """401 to a read: offers Bearer and Basic; in words for a browser."""
    challenges = [(b"www-authenticate", b"Bearer"),
                  (b"www-authenticate", b'Basic realm="thermostat bridge", charset="UTF-8"')]
    if not html:
        await _reply(send, 401, "reading needs the token: 'Authorization: Bearer <token>', or"
                                " HTTP Basic with the token as password", challenges)
        return
    headers = [(b"content-type", b"text/html; charset=utf-8"),
               (b"content-length", str(len(READ_DENIED_HTML)).encode()), *challenges]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": READ_DENIED_HTML})


async def _read_body(receive: Receive) -> Optional[bytes]:
    """The whole request body, or None as soon as it exceeds :data:`MAX_BODY`."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then defers to ``receive``."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _reply(send: Send, status: int, detail: str, extra: Optional[list] = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
