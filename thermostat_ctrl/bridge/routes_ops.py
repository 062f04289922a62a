"""Operations endpoints: landing page, health and Prometheus metrics."""

from typing import Optional

from fastapi import APIRouter, Depends, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from .runtime import Bridge, bridge_of

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    """State of the poller and the CSV log."""

    status: str = Field(description="`ok`, `stale`, `no data` or `failed` (see `error`)",
                        examples=["ok"])
    connected: bool = Field(description="A device connection is open")
    firmware: Optional[str] = Field(description="Firmware dialect, null before detection",
                                    examples=["2025"])
    simulation: bool = Field(description="The device is the built-in simulator")
    poll_period_s: float = Field(examples=[1.0])
    last_poll_ts: Optional[int] = Field(description="Epoch ms of the latest successful poll",
                                        examples=[1795759540123])
    last_poll_time: Optional[str] = Field(examples=["2026-11-28T06:05:40.123Z"])
    sample_age_s: Optional[float] = Field(description="Seconds since the latest successful poll",
                                          examples=[0.4])
    polls_ok: int = Field(examples=[3600])
    polls_failed: int = Field(examples=[2])
    poll_errors: dict[str, int] = Field(description="Failed polls by reason",
                                        examples=[{"timeout": 2}])
    polls_skipped: int = Field(description="Scheduled polls skipped after a late one")
    csv_rows_written: int
    csv_write_errors: int
    rows_refused: int = Field(description="Rows not stored because their timestamp was not"
                                          " after the previous row's (wall clock went back)")
    fields: Optional[list[str]] = Field(description="Recorded report fields",
                                        examples=[["temperature", "tec_i"]])
    last_error: Optional[str] = Field(
        description="Why the latest poll failed; null after a success")
    error: Optional[str] = Field(description="Why polling stopped (e.g. unknown --fields)")


def health_of(bridge: Bridge) -> Health:
    """The bridge's current :class:`Health`."""
    poller, store = bridge.poller, bridge.store
    latest = poller.latest
    if poller.fatal is not None:
        status = "failed"
    elif latest is None:
        status = "no data"
    else:
        status = "ok" if poller.fresh() is not None else "stale"
    return Health(
        status=status, connected=poller.connected, firmware=poller.firmware,
        simulation=bridge.simulation is not None, poll_period_s=poller.period,
        last_poll_ts=None if latest is None else latest.ts,
        last_poll_time=None if latest is None else latest.time,
        sample_age_s=poller.sample_age(), polls_ok=poller.polls_ok,
        polls_failed=poller.polls_failed, poll_errors=dict(poller.failures),
        polls_skipped=poller.skipped, csv_rows_written=store.rows_written,
        csv_write_errors=store.write_errors, rows_refused=store.out_of_order, fields=poller.fields,
        last_error=poller.last_error, error=poller.fatal)


@router.get("/health", response_model=Health,
            responses={503: {"model": Health, "description": "No fresh reading"}})
async def health(bridge: Bridge = Depends(bridge_of)) -> JSONResponse:
    """Poller and CSV state; 200 when the latest poll is fresh (within three
    poll periods), 503 otherwise."""
    state = health_of(bridge)
    return JSONResponse(state.model_dump(), status_code=200 if state.status == "ok" else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"example": (
                "# HELP thermostat_temperature_celsius Thermistor temperature\n"
                "# TYPE thermostat_temperature_celsius gauge\n"
                'thermostat_temperature_celsius{channel="0"} 24.9987\n')}}}})
async def metrics(bridge: Bridge = Depends(bridge_of)) -> Response:
    """Prometheus text exposition of the latest cached reading and the bridge's
    counters; the per-channel values are left out while the reading is stale."""
    return Response(generate_latest(bridge.registry), media_type=CONTENT_TYPE_LATEST)


_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>Thermostat bridge</title></head>
<body><h1>Thermostat bridge</h1><ul>
<li><a href="docs">docs</a>: the API, try it out</li>
<li><a href="report">report</a>: the latest reading</li>
<li><a href="series">series</a>: recent rows as JSON</li>
<li><a href="data.csv">data.csv</a>: the last 24 hours as CSV</li>
<li><a href="health">health</a>: poller and log state</li>
<li><a href="metrics">metrics</a>: Prometheus metrics</li>
</ul></body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def landing() -> str:
    """Links to the endpoints."""
    return _LANDING
