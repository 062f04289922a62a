"""Data endpoints: the latest reading, stored rows as JSON or CSV, one-off polls."""

import json
import time
from typing import Annotated, Any, Callable, Optional, Union

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import schema
from ..acquisition.poller import PollError
from ..acquisition.sample import Sample
from ..runtime import Device
from ..status import fresh_sample, stale_after
from ..storage.csvformat import iso_time
from . import render
from .deps import device_of, invalid

router = APIRouter(tags=["data"])

#: Largest ``max_points``; ranges with more rows are always downsampled to it.
MAX_POINTS_CAP = 100_000
#: Latest accepted epoch ms (9999-12-31T23:59:59.999Z).
TS_MAX = 253_402_300_799_999
#: Range of /data.csv without ``from``.
CSV_DEFAULT_MS = 24 * 3600 * 1000

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

_EXAMPLE_CHANNEL = {
    "channel": 0, "time": 3523.442, "interval": 0.12, "adc": 0.8168, "sens": 10000.544,
    "temperature": 24.9987, "pid_engaged": True, "i_set": 0.123, "dac_value": 1.5615,
    "dac_feedback": 1.559, "i_tec": 1.549, "tec_i": 0.1225, "tec_u_meas": 0.24,
    "pid_output": 0.123,
}
_EXAMPLE_ROW = {"time": "2026-11-28T06:05:40.123Z", "ts": 1795759540123,
                "temperature_ch0": 24.9987, "temperature_ch1": None,
                "pid_engaged_ch0": 1, "pid_engaged_ch1": 0}


class Report(BaseModel):
    """The latest reading: both channel objects as the device reported them."""

    ts: int = Field(description="Epoch milliseconds of the reply")
    time: str = Field(description="`ts` as ISO-8601 UTC")
    channels: list[dict[str, Any]] = Field(description="Channel 0 and 1 report objects")

    model_config = {"json_schema_extra": {"examples": [{
        "ts": 1795759540123, "time": "2026-11-28T06:05:40.123Z",
        "channels": [_EXAMPLE_CHANNEL, {**_EXAMPLE_CHANNEL, "channel": 1}]}]}}


Cell = Union[str, int, float, None]


class Problem(BaseModel):
    """Why a request could not be answered."""

    detail: str = Field(examples=["no reading yet"])


FromMs = Annotated[Optional[int], Query(
    alias="from", ge=0, le=TS_MAX, description="First epoch ms (inclusive)",
    examples=[1795759540000])]
ToMs = Annotated[Optional[int], Query(
    ge=0, le=TS_MAX, description="Last epoch ms (inclusive); default now",
    examples=[1795759600000])]
Fields = Annotated[Optional[str], Query(
    description="Comma-separated report fields (default: all recorded)",
    examples=["temperature,tec_i"])]
MaxPoints = Annotated[Optional[int], Query(
    ge=2, le=MAX_POINTS_CAP,
    description="At most this many rows: larger ranges keep each aligned bucket's minimum"
                " and maximum. Default (and cap) {}.".format(MAX_POINTS_CAP))]


def known_fields(device: Device) -> list:
    """Fields with stored columns (current schema and history), in column order."""
    fields = list(device.poller.fields or [])
    for column in device.store.all_columns():
        field = column.rpartition("_ch")[0]
        if field and field not in fields:
            fields.append(field)
    return fields


def _columns(device: Device, fields: Optional[str]) -> Optional[list]:
    if fields is None:
        return None
    names = [f.strip() for f in fields.split(",")]
    if not all(names):
        raise invalid("fields", "fields is empty: name at least one field" if len(names) == 1
                      else "empty name in the field list", fields)
    try:
        schema.check_fields(names, known_fields(device))
    except ValueError as e:
        raise invalid("fields", str(e), fields) from None
    return schema.columns_for(names)


def _range(from_ms: Optional[int], to_ms: Optional[int], default_ms: int) -> tuple:
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise invalid("from", "from ({}) is later than to ({})".format(from_ms, to_ms), from_ms)
    if to_ms is None:
        to_ms = max(int(time.time() * 1000), from_ms or 0)
    if from_ms is None:
        from_ms = max(0, to_ms - default_ms)
    return from_ms, to_ms


async def _rendered(request: Request, device: Device, render_table: Callable,
                    from_ms: Optional[int], to_ms: Optional[int], fields: Optional[str],
                    max_points: Optional[int], default_ms: int) -> bytes:
    """Query the store and render the rows: at once when memory holds the
    range (rows rendered once, joined in well under a millisecond), else in a
    worker thread (the store reads files; the event loop keeps serving)."""
    start, end = _range(from_ms, to_ms, default_ms)
    columns = _columns(device, fields)
    recent = request.app.state.recent_rows[device.name]

    def work() -> bytes:
        table = device.store.query(start, end, columns, max_points or MAX_POINTS_CAP)
        return render_table(table.ts, table.columns, table.values, recent)

    oldest = device.store.oldest_ts
    if oldest is not None and start >= oldest:
        return work()
    return await run_in_threadpool(work)


def _report_body(sample: Sample) -> bytes:
    return json.dumps({"ts": sample.ts, "time": iso_time(sample.ts),
                       "channels": sample.report}, separators=(",", ":")).encode()


@router.get("/report", response_model=Report,
            responses={503: {"model": Problem, "description": "No reading, or it is stale"}})
async def report(request: Request, device: Device = Depends(device_of)) -> Response:
    """The latest reading; 503 before the first one or when it is older than
    three poll periods."""
    poller = device.poller
    sample = fresh_sample(device)
    if sample is None:
        if poller.latest is None:
            reason = "no reading yet"
        else:
            reason = "stale: the latest reading is {:.1f} s old (limit {:g} s)".format(
                poller.sample_age(), stale_after(poller.period))
        if poller.last_error:
            reason += "; last error: " + poller.last_error
        raise HTTPException(503, reason)
    # Rendered once per sample, however many clients ask.
    cache = request.app.state.report_bodies
    cached = cache.get(device.name)
    if cached is None or cached[0] is not sample:
        cached = cache[device.name] = (sample, _report_body(sample))
    return Response(cached[1], media_type="application/json")


@router.get("/series", response_model=list[dict[str, Cell]],
            responses={200: {"content": {"application/json": {"example": [_EXAMPLE_ROW]}}}})
async def series(request: Request, device: Device = Depends(device_of),
                 from_ms: FromMs = None, to: ToMs = None, fields: Fields = None,
                 max_points: MaxPoints = None) -> Response:
    """Stored rows between `from` and `to` (default: the memory window) as
    JSON objects keyed by the CSV column names; null for missing values.
    Older ranges are read from the CSV log."""
    if from_ms is None and to is None and device.store.memory_full:
        # Memory holds the window (bar the row it has just dropped): answer
        # from it alone.  After a restart the window reaches back to disk.
        from_ms = device.store.oldest_ts
    body = await _rendered(request, device, render.to_json, from_ms, to, fields, max_points,
                           int(device.memory_s * 1000))
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/data.csv", response_class=Response,
            responses={200: {"content": {CSV_MEDIA_TYPE: {"example": (
                "time,ts,temperature_ch0,temperature_ch1\n"
                "2026-11-28T06:05:40.123Z,1795759540123,24.9987,\n")}}}})
async def data_csv(request: Request, device: Device = Depends(device_of),
                   from_ms: FromMs = None, to: ToMs = None, fields: Fields = None,
                   max_points: MaxPoints = None) -> Response:
    """Stored rows between `from` and `to` (default: the last 24 hours) as
    CSV: header `time,ts,<field>_ch0,...`, integer `ts`, an empty cell for a
    missing value.  Gzipped when the client accepts it."""
    body = await _rendered(request, device, render.to_csv, from_ms, to, fields, max_points,
                           CSV_DEFAULT_MS)
    return Response(body, media_type=CSV_MEDIA_TYPE, headers={"Cache-Control": "no-store"})


@router.post("/save_once", response_model=dict[str, Cell],
             responses={200: {"content": {"application/json": {"example": _EXAMPLE_ROW}}},
                        503: {"model": Problem,
                              "description": "The device did not answer, or the row could"
                                             " not be written"}})
async def save_once(device: Device = Depends(device_of)) -> Response:
    """Poll the device now, store the reading in memory and (synced) in the
    CSV log, and return the new row, exactly as `/series` gives it.  A 200
    answer means the row is on disk: when it could not be written (disk
    full, or the wall clock went back behind the last row) the answer is 503."""
    try:
        sample, stored = await device.poller.poll_once(durable=True)
    except (PollError, ValueError) as e:
        raise HTTPException(503, "poll failed: {}".format(e)) from None
    if not stored:
        raise HTTPException(503, "the reading at {} was not written to the CSV log (see"
                                 " csv_write_errors and rows_refused in /health)".format(
                                     iso_time(sample.ts)))
    return Response(render.row_json(sample.ts, sample.columns, sample.values),
                    media_type="application/json")
