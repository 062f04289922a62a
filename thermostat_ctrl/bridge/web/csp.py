"""The Content-Security-Policy of every response: nothing from another origin.

:class:`ContentSecurityPolicy` is a pure ASGI middleware that adds the
header (and ``X-Content-Type-Options: nosniff``) to every HTTP response.
The live view and the data get :data:`STRICT`: scripts, styles, images and
connections from this origin only, no inline code.  The API documentation
pages (Swagger UI, ReDoc) start from an inline script and ReDoc runs a
worker from a ``blob:`` URL, so those paths get :data:`DOCS`, which still
allows no other origin.
"""

from typing import Iterable

from .security import ASGIApp, Message, Receive, Scope, Send

_COMMON = ("default-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self';"
           " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
STRICT = _COMMON + "; script-src 'self'; style-src 'self'"
DOCS = (_COMMON + "; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
        " worker-src 'self' blob:")


class ContentSecurityPolicy:
    """ASGI middleware: :data:`STRICT` on every response, :data:`DOCS` on
    ``docs_paths``."""

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str]):
        self.app = app
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = (DOCS if scope["path"] in self.docs_paths else STRICT).encode()

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"content-security-policy", policy),
                                      (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_policy)
