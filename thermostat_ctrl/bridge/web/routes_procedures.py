"""Procedures on a channel from the HTTP API: the relay autotune and the step
test, their progress (also on ``/stream`` as ``procedure`` events), an
abort that restores the channel, and the result.

A procedure runs in the bridge, on the poller's connection (every exchange
between two polls), with the same checks and the same restore-on-exit as
from the controller or the CLI.  While it runs, other writes to the channel
get 409.  The autotune never applies its gains here: the result is shown,
and applying it is a ``PUT .../pid`` of its ``gains`` (in the audit trail
like any write).
"""

from typing import Annotated, Any, Literal, Optional

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ... import procedures
from .. import control as control_module
from .deps import find_device
from .routes_write import ERRORS, Body, Channel, DevicePath, Number, _problem
from .writer import Writer, writer

router = APIRouter(tags=["control"])

Rule = Literal[procedures.RULE_NAMES]  # type: ignore[valid-type]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
CH = "/devices/{device}/channels/{ch}/"


class AutotuneIn(Body):
    """A relay autotune around ``target``; the channel is restored afterwards."""

    target: Number = Field(description="°C, inside the safe window", examples=[25.0])
    rule: Rule = Field("simc", description="Tuning rule")
    amplitude: Optional[Positive] = Field(None, description="Relay swing cap (A)")
    hysteresis: Optional[Positive] = Field(None, description="Noise band (K); default"
                                                             " measured")
    window: Positive = Field(3.0, description="Abort beyond target ± window (K)")
    timeout_s: Positive = Field(1800.0, description="Abort after this many seconds")


class StepTestIn(Body):
    """A target step of ``delta`` K and back, with its figures."""

    delta: Number = Field(description="K", examples=[0.5])
    band: Positive = Field(0.01, description="Settling band (K)")
    duration_s: Positive = Field(300.0, description="Seconds allowed per step")
    hold_s: Positive = Field(30.0, description="Seconds held after settling")


class Job(BaseModel):
    """A procedure running or last run on a channel."""

    procedure: Literal["autotune", "step_test"]
    who: str = Field(description="The write token's name that started it")
    requested: dict[str, Any]
    running: bool
    progress: dict[str, Any] = Field(description="`state` and, for the autotune, `peaks`,"
                                                 " `cycles`, `amplitude`, `remaining_s`, ...")
    result: Optional[dict[str, Any]] = Field(description="The outcome once done: gains,"
                                                         " rules, Ku, Pu, model, ...")
    error: Optional[str] = Field(description="Why it stopped early")


class Aborting(BaseModel):
    aborting: bool = Field(description="False when nothing ran")


async def _start(request: Request, who: Writer, device: str, ch: int, procedure: str,
                 body: BaseModel) -> Any:
    control = request.app.state.control
    try:
        job = await control.start_procedure(find_device(request, device), ch, procedure,
                                            body.model_dump(exclude_none=True), who.name,
                                            who.client)
    except control_module.WriteError as e:
        return _problem(e)
    return job.summary()


@router.post(CH + "autotune", response_model=Job, status_code=202, responses=ERRORS)
async def autotune(request: Request, device: DevicePath, ch: Channel, body: AutotuneIn,
                   who: Writer = Depends(writer)) -> Any:
    """Start a relay autotune (the output limits as set are used); follow it
    with `GET .../procedure` or the `procedure` events of `/stream`."""
    return await _start(request, who, device, ch, "autotune", body)


@router.post(CH + "step_test", response_model=Job, status_code=202, responses=ERRORS)
async def step_test(request: Request, device: DevicePath, ch: Channel, body: StepTestIn,
                    who: Writer = Depends(writer)) -> Any:
    """Start a step test (PID engaged): the target up by `delta` and back."""
    return await _start(request, who, device, ch, "step_test", body)


@router.get(CH + "procedure", response_model=Optional[Job])
async def procedure(request: Request, device: DevicePath, ch: Channel) -> Any:
    """The procedure running or last run on the channel (null: none since start)."""
    job = request.app.state.control.job(find_device(request, device), ch)
    return None if job is None else job.summary()


@router.post(CH + "abort", response_model=Aborting, responses=ERRORS)
async def abort(request: Request, device: DevicePath, ch: Channel,
                who: Writer = Depends(writer)) -> Aborting:
    """Stop the procedure on the channel; it restores the channel's state."""
    return Aborting(aborting=await request.app.state.control.abort(
        find_device(request, device), ch, who.name, who.client))
