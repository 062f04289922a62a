"""Alarm endpoints: the active alarms, the alarm log, acknowledge, silence.

Reading is as open as every other read; acknowledging and silencing change
what people are told, so they need the bridge's token (``--token``): the
bridge without one answers them 403.
"""

from typing import Annotated, Optional

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from ..alarms.book import MAX_SILENCE_S
from ..alarms.rules import RULES
from ..alarms.settings import SEVERITIES
from ..runtime import Bridge
from .deps import DeviceName, bridge_of, find_device

router = APIRouter(tags=["alarms"])


class AlarmOut(BaseModel):
    """One active alarm."""

    id: int = Field(examples=[7])
    rule: str = Field(description="One of: " + ", ".join(RULES), examples=["out_of_band"])
    device: str = Field(examples=["cavity"])
    channel: Optional[int] = Field(description="Null for a device rule (offline, flapping)",
                                   examples=[1])
    severity: str = Field(description=" or ".join(SEVERITIES), examples=["warning"])
    message: str = Field(examples=["cavity ch1: 380 mK above its setpoint (25.000 °C),"
                                   " outside the ±50 mK band for over 60 s"])
    value: Optional[float] = Field(description="The rule's measure (K, A, s, ...)")
    first_seen: int = Field(description="Epoch ms of the raise")
    last_seen: int = Field(description="Epoch ms the condition was last seen")
    acknowledged_by: Optional[str]
    acknowledged_at: Optional[int]
    silenced: bool = Field(description="A silence covers it: no notification, no banner")


class SilenceOut(BaseModel):
    """A silence in force."""

    id: int
    until: int = Field(description="Epoch ms it ends")
    created_by: str
    created_at: int
    comment: str
    device: Optional[str] = Field(description="Null: every device")
    channel: Optional[int] = Field(description="Null: every channel")
    rule: Optional[str] = Field(description="Null: every rule")


class Acknowledge(BaseModel):
    """Who acknowledges."""

    by: str = Field("operator", min_length=1, max_length=64, examples=["alice"])


class SilenceIn(BaseModel):
    """A silence to create: the alarms matching every given field."""

    duration_s: float = Field(gt=0, le=MAX_SILENCE_S, examples=[3600])
    device: Optional[str] = Field(None, examples=["cavity"])
    channel: Optional[int] = Field(None, ge=0, le=1)
    rule: Optional[str] = Field(None, examples=["out_of_band"])
    comment: str = Field("", max_length=200, examples=["realigning the cavity"])
    by: str = Field("operator", min_length=1, max_length=64, examples=["alice"])


def _needs_token(request: Request) -> None:
    if request.app.state.bridge.config.token is None:
        raise HTTPException(403, "acknowledging and silencing alarms need the bridge's token:"
                                 " start it with --token (or THERMOSTAT_TOKEN)")


@router.get("/alarms", response_model=list[AlarmOut])
async def alarms(request: Request, device: DeviceName = None) -> list[dict]:
    """The active alarms (of `device`), oldest first."""
    if device is not None:
        find_device(request, device)
    return [a.public() for a in request.app.state.bridge.alarms.active(device=device)]


@router.get("/alarms/history", response_model=list[dict])
async def history(request: Request, device: DeviceName = None,
                  limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[dict]:
    """The alarm log (of `device`): its latest `limit` lines, oldest first,
    each with `event` (`raised`, `acknowledged`, `cleared`, `silenced`,
    `unsilenced`, `silence_expired`) and `ts` (epoch ms)."""
    if device is not None:
        find_device(request, device)
    return request.app.state.bridge.alarms.history(device=device, limit=limit)


@router.get("/alarms/silences", response_model=list[SilenceOut])
async def silences(bridge: Bridge = Depends(bridge_of)) -> list[dict]:
    """The silences in force."""
    return [vars(s) for s in bridge.alarms.silences()]


@router.post("/alarms/{alarm_id}/ack", response_model=AlarmOut,
             responses={404: {"description": "No active alarm of that id"},
                        403: {"description": "The bridge has no token"}})
async def acknowledge(request: Request, alarm_id: Annotated[int, Path(ge=1)],
                      body: Annotated[Optional[Acknowledge], Body()] = None) -> dict:
    """Acknowledge an active alarm (it stays until its condition is gone);
    needs the token."""
    _needs_token(request)
    try:
        alarm = request.app.state.bridge.alarms.acknowledge(alarm_id, (body or Acknowledge()).by)
    except KeyError:
        raise HTTPException(404, "no active alarm {}".format(alarm_id)) from None
    return alarm.public()


@router.post("/alarms/silences", response_model=SilenceOut, status_code=201,
             responses={403: {"description": "The bridge has no token"}})
async def silence(request: Request, body: SilenceIn) -> dict:
    """Silence the alarms matching `device`, `channel` and `rule` (left out:
    any) for `duration_s`: no notifications, no banner; needs the token."""
    _needs_token(request)
    if body.device is not None:
        find_device(request, body.device)
    if body.rule is not None and body.rule not in RULES:
        raise HTTPException(422, [{"type": "value_error", "loc": ["body", "rule"],
                                   "msg": "unknown rule; known: " + ", ".join(RULES),
                                   "input": body.rule}])
    made = request.app.state.bridge.alarms.silence(
        body.duration_s, body.by, body.comment, body.device, body.channel, body.rule)
    return vars(made)


@router.delete("/alarms/silences/{silence_id}", response_model=SilenceOut,
               responses={404: {"description": "No silence of that id"}})
async def unsilence(request: Request, silence_id: Annotated[int, Path(ge=1)],
                    by: Annotated[str, Query(min_length=1, max_length=64)] = "operator"
                    ) -> dict:
    """End a silence now; needs the token."""
    _needs_token(request)
    try:
        return vars(request.app.state.bridge.alarms.unsilence(silence_id, by))
    except KeyError:
        raise HTTPException(404, "no silence {}".format(silence_id)) from None
