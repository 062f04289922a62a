"""Operations endpoints: the devices, health, Prometheus metrics."""

from typing import Optional, Union

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from ..audit import AuditLog
from ..runtime import Bridge
from ..storage.linelog import MAX_HELD, LineLog
from ..status import DeviceStatus, device_status
from .deps import DeviceName, bridge_of, find_device

router = APIRouter(tags=["operations"])


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
    dropped_points: int = Field(description="Points lost: the spool was full, or more were"
                                            " held in memory than a spool segment holds")
    held_points: int = Field(0, description="Points the spool's disk refused (full), held in"
                                            " memory and written first once it takes writes")
    caught_up_points: int = Field(0, description="Points written to the spool late, once its"
                                                 " disk took writes again")
    spool_error: Optional[str] = Field(None, description="Why the spool cannot be written now"
                                                         " (makes `/health` `failed`); null"
                                                         " while it can")
    last_error: Optional[str] = Field(description="The latest failure; null after a success",
                                      examples=['HTTP 404 {"error":"database not found"}'])


class NotifierHealth(BaseModel):
    """Counters of one notification receiver."""

    url: str = Field(description="The Apprise URL, secrets masked",
                     examples=["json://127.0.0.1:8080/hook"])
    sent: int = Field(description="Messages delivered")
    failed: int = Field(description="Messages given up after every retry")
    retries: int = Field(description="Failed deliveries that were retried")
    pending: int = Field(description="Messages waiting (for a retry, among them)")
    suppressed: int = Field(description="Raises (and their clears) not sent: the rate limit")
    dropped: int = Field(description="Messages lost because too many were waiting")
    last_error: Optional[str] = Field(description="The latest failure; null after a success")


class LogHealth(BaseModel):
    """State of the alarm log or of the audit trail (a file of the data directory)."""

    status: str = Field(description="`ok`, or `failed` while it cannot be written (see"
                                    " `error`)", examples=["ok"])
    error: Optional[str] = Field(description="Why the latest write failed; null after a"
                                             " success",
                                 examples=["audit trail write failed: No space left on device"])
    write_errors: int = Field(description="Failed writes")
    held: int = Field(description="Entries not yet written, held in memory (and served) until"
                                  " the file takes writes again; at most {}".format(MAX_HELD))
    caught_up: int = Field(description="Entries written late, once the file took writes again")
    lost: int = Field(description="Entries never written: more than {} were held (each is in"
                                  " the bridge's own log)".format(MAX_HELD))


class Health(BaseModel):
    """State of every device, of the sample bus, of the logs and of the sinks."""

    status: str = Field(description="`failed` while the alarm log, the audit trail or a"
                                    " sink's spool cannot be written, else `ok` when every"
                                    " device is fresh, else the first other device status",
                        examples=["ok"])
    devices: list[DeviceStatus]
    consumers: dict[str, Consumer] = Field(description="Sample-bus consumers by name")
    sinks: dict[str, SinkHealth] = Field(
        description="InfluxDB / VictoriaMetrics sinks by write URL and the ARTIQ master sink"
                    " (artiq://HOST:PORT; points are datasets set) (they change `status`"
                    " only while a spool cannot be written)")
    notifiers: list[NotifierHealth] = Field(
        description="Alarm notification receivers (they do not change `status`)")
    alarms: int = Field(description="Active alarms (see `/alarms`)")
    logs: dict[str, LogHealth] = Field(description="`alarms`: the alarm log, `audit`: the"
                                                   " audit trail")


def log_health(log: LineLog) -> LogHealth:
    """The current :class:`LogHealth` of ``log``."""
    return LogHealth(status="ok" if log.failing is None else "failed", error=log.failing,
                     write_errors=log.write_errors, held=log.held, caught_up=log.caught_up,
                     lost=log.lost)


def bridge_health(bridge: Bridge, audit: Optional[AuditLog] = None) -> Health:
    """The whole bridge's current :class:`Health` (with its ``audit`` trail's)."""
    devices = [device_status(bridge, d) for d in bridge.devices.values()]
    files = {"alarms": bridge.alarms.log, "audit": None if audit is None else audit.file}
    logs = {name: log_health(log) for name, log in files.items() if log is not None}
    consumers = {name: Consumer(**vars(s)) for name, s in bridge.bus.stats().items()}
    sinks = {}
    for sink in bridge.sinks:
        state = vars(sink.state())
        sinks[state.pop("url")] = SinkHealth(**{k: v for k, v in state.items()
                                               if k in SinkHealth.model_fields})
    writing = all(log.status == "ok" for log in logs.values()) and not any(
        s.spool_error for s in sinks.values())
    status = next((d.status for d in devices if d.status != "ok"), "ok") if writing else "failed"
    notifiers = [] if bridge.notifier is None else [
        NotifierHealth(**vars(state)) for state in bridge.notifier.states()]
    return Health(status=status, devices=devices, consumers=consumers, sinks=sinks,
                  notifiers=notifiers, alarms=len(bridge.alarms.active()), logs=logs)


def _answer(state: BaseModel) -> JSONResponse:
    return JSONResponse(state.model_dump(), status_code=200 if state.status == "ok" else 503)


@router.get("/devices", response_model=list[DeviceStatus])
async def devices(bridge: Bridge = Depends(bridge_of)) -> list[DeviceStatus]:
    """Every device with its address, firmware, connection, latest sample
    time, staleness and poll error counts."""
    return [device_status(bridge, d) for d in bridge.devices.values()]


@router.get("/health", response_model=Union[Health, DeviceStatus],
            responses={503: {"model": Union[Health, DeviceStatus],
                             "description": "Some device (or the one named) has no fresh"
                                            " reading, or a log cannot be written"}})
async def health(request: Request, device: DeviceName = None) -> JSONResponse:
    """Without `device`: every device, the sample bus and the logs; 200 only
    when every device's latest poll is fresh (within three poll periods) and
    the alarm log, the audit trail and the sinks' spools take writes, 503
    otherwise.  With
    `device`: that device's state, 200 when it is fresh."""
    if device is None:
        return _answer(bridge_health(request.app.state.bridge, request.app.state.audit))
    bridge = request.app.state.bridge
    return _answer(device_status(bridge, find_device(request, device)))


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
