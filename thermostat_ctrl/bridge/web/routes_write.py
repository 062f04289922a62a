"""The write API: one resource per setting of a channel or of a device.

Every write needs a write token (:mod:`.writer`), goes through
:class:`~..control.Control` (the controller's and the CLI's checks, the
poller's connection between two polls, a read-back) and answers with the
setting as read back from the device.  ``expect`` carries the value the
writer means to replace: when the device holds another one (another person,
an experiment), the answer is 409 with the current value and nothing is
written.

Errors: 401 without a token, 403 with a wrong one (or from another site, or
on a read-only bridge), 409 on a conflict or while a procedure runs on the
channel, 422 naming the bad field, 502 when the device refuses the command,
503 when it does not answer.
"""

from typing import Annotated, Any, Literal, Optional, Union

from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import control as control_module
from ..control import Control, Resource
from .deps import find_device
from .writer import READ_ONLY, Writer, write_state, writer

router = APIRouter(tags=["control"])

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Channel = Annotated[int, Path(ge=0, le=1, description="0 or 1")]
DevicePath = Annotated[str, Path(description="The device's name (see `/devices`)",
                                 examples=["thermostat0"])]


class Problem(BaseModel):
    """Why a write did not happen."""

    detail: str


class ConflictProblem(Problem):
    """The setting changed meanwhile: nothing was written."""

    current: Optional[dict[str, Any]] = Field(
        None, description="The setting on the device now (absent when a procedure runs)")


ERRORS = {401: {"model": Problem, "description": "No write token"},
          403: {"model": Problem, "description": "A wrong token, another site's page, or a"
                                                 " read-only bridge"},
          409: {"model": ConflictProblem, "description": "Changed meanwhile (`current`), or a"
                                                         " procedure runs on the channel"},
          429: {"model": Problem, "description": "Too many wrong tokens from this address"},
          502: {"model": Problem, "description": "The device refused the command"},
          503: {"model": Problem, "description": "The device does not answer"}}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------- models

class TargetIn(Body):
    """A PID target."""

    value: Number = Field(description="°C, inside the safe window -10..80 °C",
                          examples=[26.0])
    expect: Optional[Number] = Field(None, description="The target (°C) this replaces")


class Value(BaseModel):
    """One value read back from the device."""

    value: float = Field(examples=[26.0])


class PidFields(BaseModel):
    kp: Optional[Number] = Field(None, description="Proportional gain (per sample)")
    ki: Optional[Number] = Field(None, description="Integral gain (per sample)")
    kd: Optional[Number] = Field(None, description="Derivative gain (per sample)")
    output_min: Optional[Number] = Field(None, description="Lowest PID output (A)")
    output_max: Optional[Number] = Field(None, description="Highest PID output (A)")


class PidIn(Body, PidFields):
    """PID gains and output range; the fields given are changed."""

    expect: Optional[PidFields] = Field(None, description="The values these replace")


class LimitFields(BaseModel):
    max_i_pos: Optional[Number] = Field(None, description="Largest cooling current (A)")
    max_i_neg: Optional[Number] = Field(None, description="Largest heating current (A),"
                                                          " a magnitude")
    max_v: Optional[Number] = Field(None, description="Largest TEC voltage (V)")


class LimitsIn(Body, LimitFields):
    """Output limits; the fields given are changed."""

    expect: Optional[LimitFields] = Field(None, description="The values these replace")


class BParameterFields(BaseModel):
    t0: Optional[Number] = Field(None, description="Reference temperature (°C)")
    r0: Optional[Number] = Field(None, description="Resistance at t0 (Ω)")
    b: Optional[Number] = Field(None, description="B constant (K)")


class BParameterIn(Body, BParameterFields):
    """Thermistor parameters; the fields given are changed."""

    expect: Optional[BParameterFields] = None


class PostfilterIn(Body):
    """The ADC postfilter."""

    rate: Optional[Number] = Field(description="Hz, one the firmware supports; null: off",
                                   examples=[16.67])


class Rate(BaseModel):
    rate: Optional[float] = Field(description="Hz; null: off")


class PolarityIn(Body):
    """The output polarity (firmware 2025)."""

    value: Literal["normal", "reversed"] = Field(examples=["normal"])
    expect: Optional[Literal["normal", "reversed"]] = Field(
        None, description="The polarity this replaces")


class Polarity(BaseModel):
    value: Optional[str] = Field(description="`normal` or `reversed`")


class CurrentIn(Body):
    """A constant TEC current; the PID is switched off."""

    value: Number = Field(description="A, positive cools", examples=[0.1])
    expect: Optional[Number] = Field(None, description="The set current (A) this replaces")


class CurrentOut(BaseModel):
    value: float = Field(description="The set current (A)")
    pid_engaged: bool


class Engaged(BaseModel):
    pid_engaged: bool


class FanIn(Body):
    """The fan."""

    power: Union[Literal["auto"], Annotated[int, Field(strict=True, ge=1, le=100)]] = Field(
        description="1..100 %, or `auto` to follow the fan curve", examples=["auto"])


class FanOut(BaseModel):
    """The fan as read back (both null on a board without a fan)."""

    auto: Optional[bool] = Field(description="Following the fan curve")
    power: Optional[int] = Field(description="%")


class ChannelSettings(BaseModel):
    """Every setting of a channel, read from the device."""

    target: float = Field(description="°C")
    pid: dict[str, float] = Field(description="kp, ki, kd (per sample), output_min,"
                                              " output_max (A)")
    limits: dict[str, float] = Field(description="max_i_pos, max_i_neg (A), max_v (V)")
    i_set: float = Field(description="Set current (A)")
    pid_engaged: bool
    polarity: Optional[str] = Field(description="`normal` or `reversed` (firmware 2025)")
    b_parameter: dict[str, float] = Field(description="t0 (°C), r0 (Ω), b (K)")
    postfilter: Optional[float] = Field(description="Hz; null: off")
    postfilter_rates: list[float] = Field(description="The rates this firmware supports (Hz)")
    safe_window: list[float] = Field(description="Targets allowed (°C): low, high")
    firmware: str = Field(examples=["2025"])
    autotune_rules: list[str] = Field(description="Rules `POST .../autotune` takes")


class Access(BaseModel):
    """Whether this bridge takes writes."""

    writable: bool
    reason: Optional[str] = Field(description="Why not, in words")


class WhoAmI(BaseModel):
    name: str = Field(description="The write token's name, as the audit trail records it")


# ------------------------------------------------------------ plumbing

def _control(request: Request) -> Control:
    return request.app.state.control


def _expect(body: BaseModel, resource: Resource) -> Optional[dict]:
    expect = getattr(body, "expect", None)
    if expect is None:
        return None
    if isinstance(expect, BaseModel):
        return expect.model_dump(exclude_none=True)
    return {resource.fields[0]: expect}


async def _write(request: Request, who: Writer, device: str, name: str, ch: Optional[int],
                 body: Optional[BaseModel] = None) -> Any:
    control = _control(request)
    target = find_device(request, device)
    resource = control_module.RESOURCES[name]
    values = {} if body is None else body.model_dump(exclude={"expect"})
    try:
        after = await control.write(target, resource, ch, values, who.name, who.client,
                                    expect=None if body is None else _expect(body, resource))
    except control_module.WriteError as e:
        return _problem(e)
    return after


def _problem(e: control_module.WriteError) -> Any:
    if isinstance(e, control_module.Invalid):
        raise RequestValidationError([{"type": "value_error", "loc": ("body", e.field),
                                       "msg": str(e), "input": None}])
    if isinstance(e, control_module.Conflict):
        return JSONResponse({"detail": str(e), "current": e.current}, status_code=409)
    status = {control_module.Busy: 409, control_module.DeviceRefused: 502,
              control_module.DeviceDown: 503}.get(type(e), 503)
    return JSONResponse({"detail": str(e)}, status_code=status)


# ------------------------------------------------------------- access

@router.get("/access", response_model=Access)
async def access(request: Request) -> Access:
    """Whether this bridge takes writes at all (it needs write tokens)."""
    tokens, _ = write_state(request)
    return Access(writable=tokens.configured, reason=None if tokens.configured else READ_ONLY)


@router.post("/access", response_model=WhoAmI, responses=ERRORS)
async def who_am_i(who: Writer = Depends(writer)) -> WhoAmI:
    """Check a write token (in `Authorization: Bearer`): its name."""
    return WhoAmI(name=who.name)


# ------------------------------------------------------------ channels

CH = "/devices/{device}/channels/{ch}/"


@router.get(CH + "settings", response_model=ChannelSettings, responses=ERRORS)
async def channel_settings(request: Request, device: DevicePath, ch: Channel) -> Any:
    """Every setting of channel `ch`, read from the device now."""
    try:
        return await _control(request).settings(find_device(request, device), ch)
    except control_module.WriteError as e:
        return _problem(e)


@router.put(CH + "target", response_model=Value, responses=ERRORS)
async def put_target(request: Request, device: DevicePath, ch: Channel, body: TargetIn,
                     who: Writer = Depends(writer)) -> Any:
    """Set the PID target (°C) at once; answers the target read back (for a
    limited rate: `POST .../ramp`)."""
    return await _write(request, who, device, "target", ch, body)


@router.put(CH + "pid", response_model=PidFields, responses=ERRORS)
async def put_pid(request: Request, device: DevicePath, ch: Channel, body: PidIn,
                  who: Writer = Depends(writer)) -> Any:
    """Set PID gains (per sample) and output range (A); answers all five read back."""
    return await _write(request, who, device, "pid", ch, body)


@router.put(CH + "limits", response_model=LimitFields, responses=ERRORS)
async def put_limits(request: Request, device: DevicePath, ch: Channel, body: LimitsIn,
                     who: Writer = Depends(writer)) -> Any:
    """Set output limits; answers the three read back."""
    return await _write(request, who, device, "limits", ch, body)


@router.put(CH + "b_parameter", response_model=BParameterFields, responses=ERRORS)
async def put_b_parameter(request: Request, device: DevicePath, ch: Channel,
                          body: BParameterIn, who: Writer = Depends(writer)) -> Any:
    """Set thermistor parameters: t0 (°C), r0 (Ω), b (K); answers them read back."""
    return await _write(request, who, device, "b_parameter", ch, body)


@router.put(CH + "postfilter", response_model=Rate, responses=ERRORS)
async def put_postfilter(request: Request, device: DevicePath, ch: Channel, body: PostfilterIn,
                         who: Writer = Depends(writer)) -> Any:
    """Set the ADC postfilter rate (Hz), or switch it off (null)."""
    return await _write(request, who, device, "postfilter", ch, body)


@router.put(CH + "polarity", response_model=Polarity, responses=ERRORS)
async def put_polarity(request: Request, device: DevicePath, ch: Channel, body: PolarityIn,
                       who: Writer = Depends(writer)) -> Any:
    """Set the output polarity (firmware 2025; 422 on 2023, which has only the normal one)."""
    return await _write(request, who, device, "polarity", ch, body)


@router.put(CH + "current", response_model=CurrentOut, responses=ERRORS)
async def put_current(request: Request, device: DevicePath, ch: Channel, body: CurrentIn,
                      who: Writer = Depends(writer)) -> Any:
    """Drive a constant TEC current (A, positive cools); switches the PID off."""
    return await _write(request, who, device, "current", ch, body)


@router.post(CH + "engage", response_model=Engaged, responses=ERRORS)
async def engage(request: Request, device: DevicePath, ch: Channel,
                 who: Writer = Depends(writer)) -> Any:
    """Hand the channel's output to the PID."""
    return await _write(request, who, device, "engage", ch)


# ------------------------------------------------------------- devices

@router.put("/devices/{device}/fan", response_model=FanOut, responses=ERRORS)
async def put_fan(request: Request, device: DevicePath, body: FanIn,
                  who: Writer = Depends(writer)) -> Any:
    """Set the fan power (%) or `auto`; answers the fan state read back."""
    return await _write(request, who, device, "fan", None, body)


@router.post("/devices/{device}/save", responses=ERRORS)
async def save(request: Request, device: DevicePath, who: Writer = Depends(writer)) -> Any:
    """Save both channels' settings to the device's flash (loaded at boot)."""
    return await _write(request, who, device, "save", None)


@router.post("/devices/{device}/load", responses=ERRORS)
async def load(request: Request, device: DevicePath, who: Writer = Depends(writer)) -> Any:
    """Load both channels' settings from the device's flash."""
    return await _write(request, who, device, "load", None)
