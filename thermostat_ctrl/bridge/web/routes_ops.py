"""Operations endpoints: the devices, health, Prometheus metrics."""

from typing import Optional, Union

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from ..runtime import Bridge, Device
from ..storage.csvformat import iso_time
from .deps import DeviceName, bridge_of, find_device

router = APIRouter(tags=["operations"])


class DeviceHealth(BaseModel):
    """State of one device's poller and CSV log."""

    name: str = Field(examples=["thermostat0"])
    address: Optional[str] = Field(description="HOST:PORT polled, null before start",
                                   examples=["192.168.1.26:23"])
    status: str = Field(description="`ok`, `stale`, `no data` or `failed` (see `error`)",
                        examples=["ok"])
    stale: bool = Field(description="No reading within three poll periods")
    connected: bool = Field(description="A device connection is open")
    firmware: Optional[str] = Field(description="Firmware dialect, null before detection",
                                    examples=["2025"])
    hwrev: Optional[str] = Field(description="Hardware revision, null before it is known",
                                 examples=["v2.2"])
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
    error: Optional[str] = Field(description="Why polling stopped (e.g. unknown fields)")


class Consumer(BaseModel):
    """Counters of one consumer of the sample bus."""

    subscribers: int = Field(description="Subscriptions open now")
    delivered: int = Field(description="Samples handed to the consumer")
    dropped: int = Field(description="Samples lost because the consumer fell behind")
    queued: int = Field(description="Samples waiting for the consumer now")


class SinkHealth(BaseModel):
    """State of one InfluxDB / VictoriaMetrics sink."""

    status: str = Field(description="`ok` (the latest write succeeded), `retrying`, `refused`"
                                    " (the database says the request is wrong) or `stopped`",
                        examples=["ok"])
    points_sent: int = Field(description="Points the database acknowledged")
    batches_sent: int = Field(description="Write requests the database acknowledged")
    retries: int = Field(description="Failed writes that are retried (no answer, 5xx, 429)")
    refused: int = Field(description="Writes refused as wrong (4xx: database, credentials)")
    backlog_points: int = Field(description="Points spooled on disk, not yet acknowledged")
    backlog_bytes: int = Field(description="Bytes of the spooled backlog")
    oldest_unsent_age_s: Optional[float] = Field(
        description="Age of the oldest sample not yet acknowledged; null when none waits")
    dropped_points: int = Field(description="Points lost because the spool was full")
    last_error: Optional[str] = Field(description="The latest failure; null after a success",
                                      examples=['HTTP 404 {"error":"database not found"}'])


class Health(BaseModel):
    """State of every device, of the sample bus and of the sinks."""

    status: str = Field(description="`ok` when every device is fresh, else the first other"
                                    " device status", examples=["ok"])
    devices: list[DeviceHealth]
    consumers: dict[str, Consumer] = Field(description="Sample-bus consumers by name")
    sinks: dict[str, SinkHealth] = Field(
        description="InfluxDB / VictoriaMetrics sinks by write URL (they do not change"
                    " `status`)")


def device_health(device: Device) -> DeviceHealth:
    """One device's current :class:`DeviceHealth`."""
    poller, store = device.poller, device.store
    latest = poller.latest
    if poller.fatal is not None:
        status = "failed"
    elif latest is None:
        status = "no data"
    else:
        status = "ok" if poller.fresh() is not None else "stale"
    address = None if device.address is None else "{}:{}".format(*device.address)
    return DeviceHealth(
        name=device.name, address=address, status=status, stale=status != "ok",
        connected=poller.connected, firmware=poller.firmware, hwrev=poller.hwrev,
        simulation=device.simulation is not None, poll_period_s=poller.period,
        last_poll_ts=None if latest is None else latest.ts,
        last_poll_time=None if latest is None else iso_time(latest.ts),
        sample_age_s=poller.sample_age(), polls_ok=poller.polls_ok,
        polls_failed=poller.polls_failed, poll_errors=dict(poller.failures),
        polls_skipped=poller.skipped, csv_rows_written=store.rows_written,
        csv_write_errors=store.write_errors, rows_refused=store.out_of_order, fields=poller.fields,
        last_error=poller.last_error, error=poller.fatal)


def bridge_health(bridge: Bridge) -> Health:
    """The whole bridge's current :class:`Health`."""
    devices = [device_health(d) for d in bridge.devices.values()]
    status = next((d.status for d in devices if d.status != "ok"), "ok")
    consumers = {name: Consumer(**vars(s)) for name, s in bridge.bus.stats().items()}
    sinks = {}
    for sink in bridge.sinks:
        state = vars(sink.state())
        sinks[state.pop("url")] = SinkHealth(**{k: v for k, v in state.items()
                                               if k in SinkHealth.model_fields})
    return Health(status=status, devices=devices, consumers=consumers, sinks=sinks)


def _answer(state: BaseModel) -> JSONResponse:
    return JSONResponse(state.model_dump(), status_code=200 if state.status == "ok" else 503)


@router.get("/devices", response_model=list[DeviceHealth])
async def devices(bridge: Bridge = Depends(bridge_of)) -> list[DeviceHealth]:
    """Every device with its address, firmware, connection, latest sample
    time, staleness and poll error counts."""
    return [device_health(d) for d in bridge.devices.values()]


@router.get("/health", response_model=Union[Health, DeviceHealth],
            responses={503: {"model": Union[Health, DeviceHealth],
                             "description": "Some device (or the one named) has no fresh"
                                            " reading"}})
async def health(request: Request, device: DeviceName = None) -> JSONResponse:
    """Without `device`: every device and the sample bus; 200 only when every
    device's latest poll is fresh (within three poll periods), 503 otherwise.
    With `device`: that device's state, 200 when it is fresh."""
    if device is None:
        return _answer(bridge_health(request.app.state.bridge))
    return _answer(device_health(find_device(request, device)))


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"example": (
                "# HELP thermostat_temperature_celsius Thermistor temperature\n"
                "# TYPE thermostat_temperature_celsius gauge\n"
                'thermostat_temperature_celsius{channel="0",device="thermostat0"} 24.9987\n')}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of every device's latest cached reading and
    counters (labelled `device`, and `channel` where one applies) and of the
    bridge's own; a device's per-channel values are left out while its
    reading is stale."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
