"""Live updates pushed as Server-Sent Events, fed by the sample bus.

``GET /stream?device=NAME`` sends one ``sample`` event per sample of that
device (``id`` its ``ts``, ``data`` the row exactly as ``/series`` gives it)
and a ``status`` event (:func:`device_state`) every :data:`STATUS_S` seconds
(every poll period when that is shorter).  A client that reconnects with
``Last-Event-ID`` (or opens the stream with ``after=TS``) first gets the rows
after that ``ts`` still in memory, so a live plot has no hole after a blip.

A ``procedure`` event (``data``: per channel the procedure running or last
run, see :mod:`.routes_procedures`) comes with the status when it changed.

``GET /stream/devices`` sends a ``devices`` event with every device's state
and latest row every :data:`STATUS_S` seconds, for an overview of the lab.

Both send an ``alarms`` event (the active alarms, as ``/alarms`` lists them)
when they start and whenever the alarms change.

Each client reads its own lossy, bounded bus queue (:data:`BACKLOG`
samples).  A client that falls that far behind, or whose socket takes more
than :data:`SEND_TIMEOUT_S` to accept an event, is dropped (it may
reconnect with ``Last-Event-ID``): it never holds up the poller, the bus or
another client, and what it holds in memory is bounded.
"""

import asyncio
import json
import logging
import math
import time
from typing import Annotated, AsyncIterator, Callable, Optional

from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.concurrency import run_in_threadpool

from ...aio import timeout
from ..acquisition.bus import SampleBus
from ..runtime import Bridge, Device
from . import render
from .deps import bridge_of, device_of
from .routes_data import TS_MAX
from ..status import device_status

logger = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

#: Samples queued per client before it is dropped as too slow.
BACKLOG = 100
#: Longest time one event may take to be accepted by a client's socket.
SEND_TIMEOUT_S = 5.0
#: Seconds between status events (at most; the poll period when shorter).
STATUS_S = 1.0
#: Longest wait for the store to hold the samples polled before a replay.
CATCH_UP_S = 1.0
#: Milliseconds a browser waits before it reconnects a dropped stream.
RETRY_MS = 1000

EVENT_STREAM = "text/event-stream"

_SAMPLE_EXAMPLE = ("retry: 1000\r\n\r\nid: 1795759540123\r\nevent: sample\r\ndata: "
                   '{"time":"2026-11-28T06:05:40.123Z","ts":1795759540123,'
                   '"temperature_ch0":24.9987,"temperature_ch1":25.0012}\r\n\r\n'
                   'event: status\r\ndata: {"name":"thermostat0","status":"ok",...}\r\n\r\n')

LastEventId = Annotated[Optional[int], Header(
    alias="Last-Event-ID", ge=0, le=TS_MAX,
    description="Sent by a reconnecting EventSource: the `ts` of the last sample it got")]
After = Annotated[Optional[int], Query(
    ge=0, le=TS_MAX, description="Start with the rows after this epoch ms still in memory"
                                 " (as `Last-Event-ID` does; the header wins)",
    examples=[1795759540000])]


def _finite(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def device_state(bridge: Bridge, device: Device) -> dict:
    """One device's state for the live view: its status snapshot (as in
    ``/devices``) plus the PID targets, the output limits, the latest row
    (None before the first sample) and the seconds of samples kept in memory."""
    poller = device.poller
    state = device_status(bridge, device).model_dump()
    latest = poller.latest
    state.update(
        targets=poller.targets, limits=poller.limits, gains=poller.gains,
        latest=None if latest is None else dict(
            ts=latest.ts, **{c: _finite(v) for c, v in zip(latest.columns,
                                                             latest.values.tolist())}),
        memory_s=device.memory_s)
    return state


def _status_event(bridge: Bridge, device: Device) -> ServerSentEvent:
    return ServerSentEvent(json.dumps(device_state(bridge, device), separators=(",", ":")),
                           event="status")


def alarms_event(bridge: Bridge, device: Optional[str] = None) -> ServerSentEvent:
    """An ``alarms`` event: the active alarms (of ``device``) as ``/alarms`` gives them."""
    alarms = [a.public() for a in bridge.alarms.active(device=device)]
    return ServerSentEvent(json.dumps(alarms, separators=(",", ":")), event="alarms")


def _sample_event(ts: int, columns, values) -> ServerSentEvent:
    return ServerSentEvent(render.row_json(ts, columns, values).decode(), event="sample",
                           id=str(ts))


async def _stored_up_to_latest(device: Device) -> None:
    """Wait (at most :data:`CATCH_UP_S`) until the store holds every sample
    polled so far, so that a replay from it leaves nothing out."""
    latest = device.poller.latest
    if latest is None:
        return
    deadline = time.monotonic() + CATCH_UP_S
    while time.monotonic() < deadline:
        row = device.store.latest()
        if row is not None and row[0] >= latest.ts:
            return
        await asyncio.sleep(0.01)


def _missed(device: Device, after: int) -> list:
    """Events for the rows after ``after`` still in the memory window."""
    newest = device.poller.latest
    if newest is None:
        return []
    start = max(after + 1, newest.ts - int(device.memory_s * 1000))
    table = device.store.query(start, TS_MAX)
    return [_sample_event(int(ts), table.columns, row)
            for ts, row in zip(table.ts.tolist(), table.values)]


def _procedure_events(control, device: Device) -> Callable[[], Optional[ServerSentEvent]]:
    """A function giving a ``procedure`` event when the device's procedures
    changed since it last gave one (None otherwise)."""
    last = None

    def changed() -> Optional[ServerSentEvent]:
        nonlocal last
        jobs = {ch: job.summary() for ch in (0, 1)
                if (job := control.job(device, ch)) is not None}
        data = json.dumps(jobs, separators=(",", ":"))
        if data == last:
            return None
        last = data
        return ServerSentEvent(data, event="procedure")

    return changed


async def _device_events(bridge: Bridge, device: Device, after: Optional[int],
                         control=None) -> AsyncIterator[ServerSentEvent]:
    bus: SampleBus = bridge.bus
    loop = asyncio.get_running_loop()
    every = min(STATUS_S, device.poller.period)
    # Subscribed before the replay is read: a sample is in one or both, never in neither.
    subscription = bus.subscribe("stream", BACKLOG, device=device.name)
    try:
        yield ServerSentEvent(retry=RETRY_MS)
        last = after
        if after is not None:
            await _stored_up_to_latest(device)
            for event in await run_in_threadpool(_missed, device, after):
                last = int(event.id)
                yield event
        procedure = _procedure_events(control, device) if control is not None else None
        yield _status_event(bridge, device)
        alarms_seen = bridge.alarms.version
        yield alarms_event(bridge, device.name)
        next_status = loop.time() + every
        while True:
            try:
                async with timeout(max(0.0, next_status - loop.time())):
                    batch = await subscription.next()
            except asyncio.TimeoutError:
                batch = []
            if batch is None:
                return
            if len(batch) >= subscription.maxlen:
                logger.info("%s: dropping a stream client %d samples behind", device.name,
                            len(batch))
                return
            for sample in batch:
                if last is None or sample.ts > last:
                    last = sample.ts
                    yield _sample_event(sample.ts, sample.columns, sample.values)
            if bridge.alarms.version != alarms_seen:
                alarms_seen = bridge.alarms.version
                yield alarms_event(bridge, device.name)
            if loop.time() >= next_status:
                yield _status_event(bridge, device)
                event = procedure() if procedure is not None else None
                if event is not None:
                    yield event
                next_status = max(next_status + every, loop.time())
    finally:
        subscription.close()
        subscription.get(0)  # what it still held is freed (and no longer counted as queued)


class _EventStream(EventSourceResponse):
    """An event stream that drops a client whose socket stopped taking events."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            logger.warning("dropped a stream client (%s) that stopped reading for %g s",
                           scope.get("client"), SEND_TIMEOUT_S)


def _response(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return _EventStream(events, send_timeout=SEND_TIMEOUT_S, ping=15)


@router.get("/stream", response_class=EventSourceResponse,
            responses={200: {"content": {EVENT_STREAM: {"example": _SAMPLE_EXAMPLE}},
                             "description": "An endless event stream"}})
async def stream(request: Request, device: Device = Depends(device_of),
                 last_event_id: LastEventId = None, after: After = None
                 ) -> EventSourceResponse:
    """Server-Sent Events of one device: a `sample` event per sample (`id`
    its `ts`, `data` the row as `/series` gives it) and a `status` event
    every second (the `/devices` entry with `targets`, `limits`, `latest`,
    `stale_after_s`, `disconnected_after_s`).  With `Last-Event-ID` (or
    `after`) the rows after it still in memory come first.  A client that
    falls 100 samples behind, or stops reading for 5 s, is dropped (it may
    reconnect)."""
    since = last_event_id if last_event_id is not None else after
    return _response(_device_events(request.app.state.bridge, device, since,
                                    getattr(request.app.state, "control", None)))


async def _lab_events(bridge: Bridge) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(retry=RETRY_MS)
    alarms_seen = None
    while True:
        if bridge.alarms.version != alarms_seen:
            alarms_seen = bridge.alarms.version
            yield alarms_event(bridge)
        states = [device_state(bridge, d) for d in bridge.devices.values()]
        yield ServerSentEvent(json.dumps(states, separators=(",", ":")), event="devices")
        await asyncio.sleep(STATUS_S)


@router.get("/stream/devices", response_class=EventSourceResponse,
            responses={200: {"content": {EVENT_STREAM: {"example": (
                'event: devices\r\ndata: [{"name":"thermostat0","status":"ok",...}]\r\n\r\n')}},
                "description": "An endless event stream"}})
async def stream_devices(bridge: Bridge = Depends(bridge_of)) -> EventSourceResponse:
    """Server-Sent Events for an overview of the lab: every second a
    `devices` event, the list of every device's state as in the `status`
    events of `/stream`."""
    return _response(_lab_events(bridge))
