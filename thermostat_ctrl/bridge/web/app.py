"""The bridge's FastAPI application.

``create_app(config)`` builds the app for the configured devices (or the
simulation); its lifespan starts and stops the bridge.  Every request passes
:class:`~.security.Guard` first (size limits, the bearer token); every
response gets the :mod:`.csp` policy.  ``/`` is the live view; ``/docs`` and
``/redoc`` are served with their assets from a package (fastapi-offline), so
they work without internet (ReDoc by :mod:`.docs`, without its makers' logo).
``app_from_env`` is the ASGI factory for ``uvicorn --factory
thermostat_ctrl.bridge.web.app:app_from_env``, configured by the
``THERMOSTAT_*`` environment variables documented in :mod:`..config`.
"""

import contextlib
import os
from typing import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from .. import config as bridge_config
from ..access import Throttle, WriteTokens
from ..audit import AuditLog
from ..config import BridgeConfig
from ..control import Control
from ..runtime import Bridge, tune_process
from . import (docs, metrics, render, routes_alarms, routes_audit, routes_data, routes_live,
               routes_ops, routes_procedures, routes_snapshot, routes_stability, routes_write,
               stream)
from .compression import Gzip
from .csp import ContentSecurityPolicy
from .deps import known_parameters
from .security import Guard

#: Where changes need a write token (:mod:`.writer`) rather than ``--token``.
WRITE_PREFIXES = ("/devices/", "/access")
#: POSTs that only read (a body to compare), checked as reads.
READ_POSTS = ("/snapshots/diff",)
#: The API documentation pages (their policy allows their inline scripts).
DOCS_PATHS = ("/docs", "/redoc", "/docs/oauth2-redirect")


def create_app(config: BridgeConfig, process_settings: bool = False) -> FastAPI:
    """The bridge application for ``config``; the bridge is ``app.state.bridge``.

    ``process_settings``: apply :func:`~..runtime.tune_process` once the
    bridge has started (entry points only).
    """
    bridge = Bridge(config)
    # Each device's new rows are rendered once, ahead of the queries that ask for them.
    recent = {name: render.RecentRows(device.store.capacity)
              for name, device in bridge.devices.items()}

    def render_new(batch: list) -> None:
        for sample in batch:
            recent[sample.device].add(sample.ts, sample.columns, sample.values)

    bridge.consume("render", render_new)
    audit = AuditLog(config.data_dir)
    control = Control(bridge, audit)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await bridge.start()
        if process_settings:
            tune_process()
        try:
            yield
        finally:
            await control.stop()
            await bridge.stop()
            audit.close()

    names = ", ".join(device.name for device in config.devices)
    app = FastAPIOffline(
        title="Thermostat bridge",
        summary="Sinara Thermostat readings for Grafana (Infinity, CSV/JSON) and Prometheus.",
        description=(
            "Polls {} Thermostat(s) ({}), keeps the last {} s of each in memory and logs"
            " every reading to daily CSV files. Times are epoch milliseconds (`ts`) and"
            " ISO-8601 UTC (`time`); columns are `<field>_ch0`, `<field>_ch1`. With several"
            " devices, name one with `device=`. The *control* endpoints change a device"
            " (each needs a write token, `Authorization: Bearer`, from `--write-token-file`;"
            " this bridge has {}) and answer with the value read back; every change is in"
            " `/audit`.".format(len(config.devices), names, config.memory_s,
                                "{} write token(s)".format(len(config.write_tokens))
                                if config.write_tokens else "none: it is read-only")),
        version="2",
        lifespan=lifespan,
        dependencies=[Depends(known_parameters)],
        redoc_url=None,
    )
    docs.add_redoc(app)
    app.state.bridge = bridge
    app.state.registry = metrics.registry_for(bridge)
    app.state.report_bodies = {}
    app.state.recent_rows = recent
    app.state.audit = audit
    app.state.control = control
    app.state.write_tokens = WriteTokens(config.write_tokens)
    app.state.write_throttle = Throttle()
    app.add_middleware(Gzip, minimum_size=1000)
    # Limits and the token are checked before anything else runs.
    app.add_middleware(Guard, token=config.token, protect_reads=config.protect_reads,
                       write_prefixes=WRITE_PREFIXES, read_posts=READ_POSTS)
    # Outermost, so that Guard's own answers carry the policy too.
    app.add_middleware(ContentSecurityPolicy, docs_paths=DOCS_PATHS)
    app.include_router(routes_live.router)
    app.include_router(routes_data.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_alarms.router)
    app.include_router(routes_stability.router)
    app.include_router(stream.router)
    app.include_router(routes_write.router)
    app.include_router(routes_procedures.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_snapshot.router)
    app.mount(routes_live.STATIC_PATH, routes_live.static_files(), name="static")
    return app


def app_from_env() -> FastAPI:
    """ASGI factory: :func:`create_app` configured from ``THERMOSTAT_*`` variables."""
    return create_app(bridge_config.from_env(os.environ), process_settings=True)
