"""Settings snapshots over HTTP (see :mod:`..snapshot`): download a device's
whole configuration, compare two snapshots or one with a device now, and
restore one onto a device (a write: it needs a write token; each setting is
an audited write, read back)."""

import time
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import control as control_module
from .. import snapshot
from .deps import find_device
from .routes_write import ERRORS, DevicePath, _problem
from .writer import Writer, writer

router = APIRouter(tags=["snapshots"])


class Difference(BaseModel):
    """One setting that differs."""

    setting: str = Field(examples=["channels[0].pid.kp"])
    a: Any
    b: Any


class DiffIn(BaseModel):
    """Two snapshots, or one and a device (compared with its settings now)."""

    model_config = ConfigDict(extra="forbid")
    a: dict[str, Any] = Field(description="A snapshot file's content")
    b: Optional[dict[str, Any]] = Field(None, description="Another snapshot...")
    device: Optional[str] = Field(None, description="...or the device to compare with now")


class Restored(BaseModel):
    """What a restore wrote, each setting as read back."""

    restored: list[dict[str, Any]]


async def _take(request: Request, device: str) -> Any:
    return await snapshot.take(request.app.state.control, find_device(request, device),
                               int(time.time() * 1000))


@router.get("/devices/{device}/snapshot", responses=ERRORS)
async def download(request: Request, device: DevicePath) -> Any:
    """The device's whole configuration as a file (`thermostat-snapshot/1`):
    per channel the output limits, PID gains, output range and target, the
    PID state, thermistor parameters, postfilter and polarity; the fan."""
    try:
        taken = await _take(request, device)
    except control_module.WriteError as e:
        return _problem(e)
    name = "{}-{}.thermostat.json".format(taken["device"], taken["taken"][:19].replace(":", ""))
    return JSONResponse(taken, headers={"Content-Disposition":
                                        'attachment; filename="{}"'.format(name)})


@router.post("/snapshots/diff", response_model=list[Difference], responses=ERRORS)
async def compare(request: Request, body: DiffIn) -> Any:
    """The settings that differ between snapshot `a` and snapshot `b`, or
    between `a` and the `device` now."""
    if (body.b is None) == (body.device is None):
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "b"),
                                       "msg": "give b or device (one of them)", "input": None}])
    if body.b is not None:
        return snapshot.diff(body.a, body.b)
    try:
        return snapshot.diff(body.a, await _take(request, body.device))
    except control_module.WriteError as e:
        return _problem(e)


@router.put("/devices/{device}/snapshot", response_model=Restored, responses=ERRORS)
async def restore(request: Request, device: DevicePath, body: dict[str, Any],
                  who: Writer = Depends(writer)) -> Any:
    """Restore a snapshot onto this device (taken on it or on another, of
    either firmware): everything is checked first and nothing is written
    when the device cannot hold a value (422 listing each); then each
    setting is written and read back, and the restore is in the audit trail."""
    try:
        done = await snapshot.restore(request.app.state.control, find_device(request, device),
                                      body, who.name, who.client)
    except snapshot.SnapshotError as e:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", *where.split(".")),
                                       "msg": message, "input": None}
                                      for where, message in e.problems])
    except control_module.WriteError as e:
        return _problem(e)
    return Restored(restored=done)
