"""The live view: ``GET /`` and the page's static files under ``/static``.

The page (``static/index.html``, ``live.js``, ``live.css``) and the vendored
uPlot (``static/uplot/``, its license and version beside it) are package
data: nothing is loaded from another origin and nothing needs a network.
The page only reads (``/devices``, ``/series``, ``/data.csv``, ``/stream``).
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

#: The page's files.
STATIC_DIR = Path(__file__).parent / "static"
#: Where they are served.
STATIC_PATH = "/static"

router = APIRouter(tags=["live view"])


def static_files() -> StaticFiles:
    """The ASGI app serving :data:`STATIC_DIR` (mount it at :data:`STATIC_PATH`)."""
    return StaticFiles(directory=STATIC_DIR)


@router.get("/", response_class=FileResponse, include_in_schema=False)
async def live_view() -> FileResponse:
    """The live view of every device."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
