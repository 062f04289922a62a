"""Procedures on a channel from the HTTP API: the relay autotune, the step
test and the setpoint ramp, their progress (also on ``/stream`` as
``procedure`` events), an abort, and the result.

A procedure runs in the bridge, on the poller's connection (every exchange
between two polls), with the same checks and the same restore-on-exit as
from the controller or the CLI.  While it runs, other writes to the channel
get 409.  The autotune never applies its gains here: the result is shown,
and applying it is a ``PUT .../pid`` of its ``gains`` (in the audit trail
like any write).  An aborted autotune or step test restores the channel; an
aborted ramp leaves the target where the ramp had brought it.
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
    rule: Rule = Field(procedures.DEFAULT_RULE, description="Tuning rule")
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


class RampIn(Body):
    """The target moved to ``target`` at ``rate`` at most, by the bridge."""

    target: Number = Field(description="°C, inside the safe window", examples=[27.0])
    rate: Positive = Field(description="K/s of device time", examples=[0.05])
    expect: Optional[Number] = Field(None, description="The target (°C) this replaces")


class Job(BaseModel):
    """A procedure running or last run on a channel."""

    procedure: Literal[control_module.PROCEDURES]  # type: ignore[valid-type]
    who: str = Field(description="The write token's name that started it")
    requested: dict[str, Any]
    running: bool
    progress: dict[str, Any] = Field(description="`state` and, for the autotune, `peaks`,"
                                                 " `cycles`, `amplitude`, `remaining_s`, ...;"
                                                 " for a ramp `setpoint`, `elapsed_s`,"
                                                 " `remaining_s`")
    result: Optional[dict[str, Any]] = Field(description="The outcome once done: gains,"
                                                         " rules, Ku, Pu, model, ...; for a"
                                                         " ramp `start`, `target`,"
                                                         " `duration_s`, `steps`")
    error: Optional[str] = Field(description="Why it stopped early")


class Aborting(BaseModel):
    aborting: bool = Field(description="False when nothing ran")


async def _start(request: Request, who: Writer, device: str, ch: int, procedure: str,
                 body: BaseModel) -> Any:
    control = request.app.state.control
    params = body.model_dump(exclude_none=True)
    try:
        job = await control.start_procedure(find_device(request, device), ch, procedure,
                                            params, who.name, who.client,
                                            expect=params.pop("expect", None))
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


@router.post(CH + "ramp", response_model=Job, status_code=202, responses=ERRORS)
async def ramp(request: Request, device: DevicePath, ch: Channel, body: RampIn,
               who: Writer = Depends(writer)) -> Any:
    """Move the PID target to `target` at `rate` K/s at most: a step on
    every sample, never a larger one.  After a lost connection the ramp goes
    on from the target the device holds; a device that rebooted or a target
    set by someone else stops it, and the error names the target now."""
    return await _start(request, who, device, ch, "ramp", body)


@router.get(CH + "procedure", response_model=Optional[Job])
async def procedure(request: Request, device: DevicePath, ch: Channel) -> Any:
    """The procedure running or last run on the channel (null: none since start)."""
    job = request.app.state.control.job(find_device(request, device), ch)
    return None if job is None else job.summary()


@router.post(CH + "abort", response_model=Aborting, responses=ERRORS)
async def abort(request: Request, device: DevicePath, ch: Channel,
                who: Writer = Depends(writer)) -> Aborting:
    """Stop the procedure on the channel: an autotune or a step test restores
    the channel's state, a ramp leaves the target where it got to."""
    return Aborting(aborting=await request.app.state.control.abort(
        find_device(request, device), ch, who.name, who.client))
