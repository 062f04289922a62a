"""``GET /audit``: the audit trail (see :mod:`..audit`)."""

from typing import Any, Optional

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from .deps import DeviceName, find_device
from .routes_data import FromMs, ToMs

router = APIRouter(tags=["control"])


class AuditEntry(BaseModel):
    """One change, or one attempt, made through the bridge, or one change
    seen in the polled settings that the bridge did not make."""

    ts: int = Field(description="Epoch ms", examples=[1795759540123])
    time: str = Field(examples=["2026-11-28T06:05:40.123Z"])
    device: str
    channel: Optional[int]
    what: str = Field(description="The setting or action: `target`, `pid`, `limits`,"
                                  " `autotune`, ...", examples=["target"])
    who: str = Field(description="The write token's name, or `outside the bridge`",
                     examples=["alice"])
    client: Optional[str] = Field(description="The writer's address")
    before: Optional[dict[str, Any]] = Field(description="As read from the device before")
    after: Optional[dict[str, Any]] = Field(description="As read back from the device after")
    requested: Optional[dict[str, Any]]
    result: str = Field(description="`ok`, `conflict`, `invalid`, `busy`, `device down`,"
                                    " `device error`, `started`, `aborted`, `failed`")
    detail: Optional[str]


@router.get("/audit", response_model=list[AuditEntry])
async def audit(request: Request, device: DeviceName = None, start: FromMs = None,
                to: ToMs = None) -> list:
    """The audit trail, oldest first (newest last): every write through the
    bridge (token name, client, the setting before and after as read back,
    result) and every change of a polled target, PID parameter or output
    limit the bridge did not make (`who`: `outside the bridge`).  The CSV's
    setpoint column stays the record of the targets between changes."""
    name = None if device is None else find_device(request, device).name
    return request.app.state.audit.entries(name, start, to)
