"""Who is writing: the FastAPI dependency every write endpoint needs.

A write is accepted only with ``Authorization: Bearer TOKEN`` naming one of
the bridge's write tokens (:mod:`..access`); the header, never a cookie or
HTTP Basic, so a page of another site cannot make a browser write (CSRF):
it cannot set that header without a CORS preflight, which the bridge does
not grant.  A request that says it comes from another origin (``Origin``,
``Sec-Fetch-Site``) is refused even with a token.

* no write token configured: 403, the bridge is read-only;
* another origin: 403;
* no token: 401 with ``WWW-Authenticate: Bearer``;
* a token that is none of them: 403, counted against the client's address;
  after :attr:`~..access.Throttle.limit` such failures in a minute, 429 with
  ``Retry-After`` until the minute has passed.

Tokens are never logged: a refused one is logged by the client's address.
"""

import logging
import math
from dataclasses import dataclass
from typing import Optional

from fastapi import HTTPException, Request

from ..access import Throttle, WriteTokens

logger = logging.getLogger(__name__)

__all__ = ["Writer", "writer", "READ_ONLY", "write_state"]

READ_ONLY = ("this bridge is read-only: it was started without write tokens"
             " (--write-token-file)")
#: ``Sec-Fetch-Site`` values of a request from this origin (or typed by a person).
_SAME_SITE = {"same-origin", "none"}


@dataclass(frozen=True)
class Writer:
    """An authorised writer: the token's name and the client's address."""

    name: str
    client: Optional[str]


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _foreign(request: Request) -> Optional[str]:
    """Why the request comes from another origin, None when it does not."""
    origin = request.headers.get("origin")
    own = "{}://{}".format(request.url.scheme, request.headers.get("host", ""))
    if origin is not None and origin != own:
        return "a page of {} may not write to this bridge ({})".format(origin, own)
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in _SAME_SITE:
        return "a {} request may not write to this bridge".format(site)
    return None


def write_state(request: Request) -> tuple:
    """``(tokens, throttle)`` of the app serving ``request``."""
    return request.app.state.write_tokens, request.app.state.write_throttle


async def writer(request: Request) -> Writer:
    """The :class:`Writer` of a write request, or the HTTP error above."""
    tokens: WriteTokens
    throttle: Throttle
    tokens, throttle = write_state(request)
    if not tokens.configured:
        raise HTTPException(403, READ_ONLY)
    foreign = _foreign(request)
    if foreign is not None:
        raise HTTPException(403, foreign)
    client = _client(request)
    wait = throttle.blocked(client)
    if wait > 0:
        raise HTTPException(429, "too many bad write tokens from {}; try again in {} s".format(
            client, math.ceil(wait)), headers={"Retry-After": str(math.ceil(wait))})
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "writing needs a write token: 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    name = tokens.name_of(token.strip().encode())
    if name is None:
        throttle.failed(client)
        logger.warning("refused a write with an unknown token from %s", client)
        raise HTTPException(403, "this write token is not one of this bridge's")
    return Writer(name, client)
