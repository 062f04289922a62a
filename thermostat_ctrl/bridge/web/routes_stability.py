"""Stability endpoints: ``/stability`` (JSON) and ``/stability.csv`` (its
Allan deviation table), computed by :mod:`..stability` from the raw samples
of one channel."""

from typing import Annotated, Optional

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import schema
from ..runtime import Device
from ..stability import analyse_rows, channel_columns
from ..storage.csvformat import format_value
from .deps import device_of, invalid
from .routes_data import CSV_MEDIA_TYPE, FromMs, ToMs, _range

router = APIRouter(tags=["stability"])

#: Most samples one answer computes on (46 days of 1 s samples): at its peak
#: an answer's heap holds about 100 bytes per sample.
MAX_SAMPLES = 4_000_000
#: Columns of ``/stability.csv``.
CSV_COLUMNS = ("tau_s", "adev_k", "lo_k", "hi_k", "terms", "alpha")

Channel = Annotated[int, Query(ge=0, lt=schema.CHANNELS, description="The channel, 0 or 1")]
BandMk = Annotated[float, Query(ge=0, le=1e6, allow_inf_nan=False,
                                description="Half-width of the band around the setpoint, mK")]


class Spread(BaseModel):
    """Count, mean, standard deviation (population), extremes and peak-to-peak."""

    n: int
    mean: Optional[float]
    std: Optional[float]
    min: Optional[float]
    max: Optional[float]
    p2p: Optional[float]


class AllanPoint(BaseModel):
    """The overlapping Allan deviation at one averaging time."""

    tau_s: float = Field(description="Averaging time, s")
    adev_k: float = Field(description="Overlapping Allan deviation of the temperature, K")
    lo_k: Optional[float] = Field(description="Lower end of the 1-sigma confidence interval")
    hi_k: Optional[float] = Field(description="Upper end of the 1-sigma confidence interval")
    terms: int = Field(description="Second differences averaged (over every segment)")
    alpha: Optional[int] = Field(description="Noise type: 2 white phase, 1 flicker phase,"
                                             " 0 white frequency, -1 flicker, -2 random walk")


class Stability(Spread):
    """How stable a channel was between ``from`` and ``to`` (temperature in
    °C, spreads in K)."""

    device: str
    channel: int
    from_ms: int = Field(alias="from")
    to: int
    period_s: float = Field(description="Sample period (the poll period)")
    segments: int = Field(description="Runs of samples without a gap")
    first_ts: Optional[int]
    last_ts: Optional[int]
    drift_k_per_h: Optional[float] = Field(description="Least-squares slope, K per hour")
    error: Optional[Spread] = Field(
        description="Temperature - setpoint where the PID was engaged (null: never)")
    engaged_fraction: Optional[float]
    band_mk: float
    in_band_fraction: Optional[float] = Field(
        description="Fraction of the engaged samples within band_mk of the setpoint")
    allan: list[AllanPoint]
    notes: list[str] = Field(description="Why a figure is missing")


def _check_size(device: Device, start: int, end: int) -> None:
    period = device.config.poll_period
    samples = (end - start) / 1000 / period
    if samples > MAX_SAMPLES:
        raise invalid("from", "the range holds up to {:.0f} samples (poll period {:g} s),"
                              " more than the {} one answer computes on: narrow from/to"
                      .format(samples, period, MAX_SAMPLES), start)


async def stability_of(device: Device, channel: int, from_ms: Optional[int],
                       to: Optional[int], band_mk: float) -> dict:
    """The :class:`Stability` answer as a dict (422 naming a bad parameter);
    computed in a worker thread."""
    start, end = _range(from_ms, to, int(device.memory_s * 1000))
    _check_size(device, start, end)

    def work() -> dict:
        recorded = device.store.all_columns()
        table = device.store.query(start, end, channel_columns(channel))
        figures = analyse_rows(table.ts, table.values, recorded, channel,
                               device.config.poll_period, band_mk / 1000, (end - start) / 1000)
        return {"device": device.name, "channel": channel, "from": start, "to": end,
                **figures}

    return await run_in_threadpool(work)


@router.get("/stability", response_model=Stability)
async def stability(channel: Channel, device: Device = Depends(device_of),
                    from_ms: FromMs = None, to: ToMs = None, band_mk: BandMk = 10.0) -> dict:
    """Stability of one channel between `from` and `to` (default: the memory
    window), from its raw samples: temperature and error statistics, drift,
    time within `band_mk` of the setpoint and the overlapping Allan deviation
    (allantools `oadev`, frequency data at the poll rate) at octave-spaced
    averaging times up to a tenth of the range, with 1-sigma confidence
    intervals.  Gaps split the samples into segments, never bridged."""
    return await stability_of(device, channel, from_ms, to, band_mk)


@router.get("/stability.csv", response_class=Response,
            responses={200: {"content": {CSV_MEDIA_TYPE: {"example": (
                "tau_s,adev_k,lo_k,hi_k,terms,alpha\n"
                "1,0.00031,0.000305,0.000315,86395,0\n")}}}})
async def stability_csv(channel: Channel, device: Device = Depends(device_of),
                        from_ms: FromMs = None, to: ToMs = None,
                        band_mk: BandMk = 10.0) -> Response:
    """The Allan deviation table of `/stability` as CSV, one row per
    averaging time (an empty cell where a figure is missing)."""
    answer = await stability_of(device, channel, from_ms, to, band_mk)
    lines = [",".join(CSV_COLUMNS)]
    for point in answer["allan"]:
        lines.append(",".join("" if point[c] is None else format_value(float(point[c]))
                              for c in CSV_COLUMNS))
    name = "{}-ch{}-stability.csv".format(device.name, channel)
    return Response("\n".join(lines) + "\n", media_type=CSV_MEDIA_TYPE,
                    headers={"Cache-Control": "no-store",
                             "Content-Disposition": 'attachment; filename="{}"'.format(name)})
