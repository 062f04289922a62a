"""The ReDoc page, with nothing loaded from another origin.

fastapi-offline serves the Swagger UI and ReDoc files from the package, but
ReDoc's bundle also shows its makers' logo, fetched from their CDN, at the
foot of its menu.  The :mod:`.csp` policy refuses it, an error in the
browser's console.  :func:`add_redoc` serves ``/redoc`` with that bundle
from :data:`REDOC_JS_PATH`, the logo replaced by an empty image (a ``data:``
URL, which the policy allows), and the favicon fastapi-offline serves.
"""

from functools import lru_cache
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

#: Where fastapi-offline serves its files (its default ``static_url``).
OFFLINE_DOCS_PATH = "/static-offline-docs"
#: Where the ReDoc bundle without the foreign logo is served.
REDOC_JS_PATH = "/docs/redoc.standalone.js"
#: The logo ReDoc's bundle would fetch, and what it shows instead.
FOREIGN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
NO_LOGO = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@lru_cache(maxsize=1)
def redoc_js() -> bytes:
    """fastapi-offline's ReDoc bundle, its logo replaced by :data:`NO_LOGO`."""
    bundle = resources.files("fastapi_offline").joinpath("static", "redoc.standalone.js")
    return bundle.read_bytes().replace(FOREIGN_LOGO, NO_LOGO)


def add_redoc(app: FastAPI, path: str = "/redoc") -> None:
    """Serve ReDoc at ``path`` (create ``app`` with ``redoc_url=None``)."""

    @app.get(REDOC_JS_PATH, include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(redoc_js(), media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})

    @app.get(path, include_in_schema=False)
    async def redoc_html(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + app.openapi_url,
                              title=app.title + " - ReDoc",
                              redoc_js_url=root + REDOC_JS_PATH,
                              redoc_favicon_url=root + OFFLINE_DOCS_PATH + "/favicon.png",
                              with_google_fonts=False)
