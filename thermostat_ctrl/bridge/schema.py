"""Column naming and row conversion between device reports and stored rows.

A report is a list of channel dicts (``channel``, ``time``, ``adc``, ...).  A
stored row holds one float64 per field and channel, field-major:
``temperature_ch0, temperature_ch1, i_set_ch0, ...``.  Booleans become 0/1,
nulls and missing values NaN.  Besides the report's fields a row can carry
each channel's PID target (:data:`TARGET`, read with ``pid``).
"""

import math
from collections import Counter
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from .. import protocol

__all__ = [
    "CHANNELS",
    "DEVICE_TIME",
    "TARGET",
    "KNOWN_FIELDS",
    "stored_field",
    "report_fields",
    "recordable_fields",
    "columns_for",
    "check_fields",
    "row_values",
]

#: Number of channels of a Thermostat.
CHANNELS = 2

#: Name under which the device's own ``time`` (seconds since boot) is stored,
#: so it never clashes with the CSV ``time`` column.
DEVICE_TIME = "device_time"


#: Field of each channel's PID target setpoint (from ``pid``, not ``report``).
TARGET = "target"

def stored_field(key: str) -> str:
    """Stored name of a report key (``time`` is stored as :data:`DEVICE_TIME`)."""
    return DEVICE_TIME if key == "time" else key


#: Every field a row of some firmware can carry, by its stored name.
KNOWN_FIELDS = tuple(
    stored_field(key)
    for key in (*protocol.REPORT_KEYS, *protocol.HISTORIC_REPORT_KEYS) if key != "channel"
) + (TARGET,)


def _key(field: str) -> str:
    """Report key of a stored field name (the inverse of :func:`stored_field`)."""
    return "time" if field == DEVICE_TIME else field


def _is_value(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float))


def report_fields(report: Sequence[dict]) -> list[str]:
    """Every numeric or boolean (possibly null) field of a report, in report
    order, without ``channel`` and with ``time`` renamed :data:`DEVICE_TIME`.

    This is the default field list of the bridge.
    """
    fields: list[str] = []
    for channel in report:
        for key, value in channel.items():
            if key == "channel" or not _is_value(value):
                continue
            field = stored_field(key)
            if field not in fields:
                fields.append(field)
    return fields


def recordable_fields(report: Sequence[dict]) -> list[str]:
    """:func:`report_fields` and :data:`TARGET`: every field a row can carry."""
    return [*report_fields(report), TARGET]


def columns_for(fields: Iterable[str], channels: int = CHANNELS) -> list[str]:
    """Column names, field-major: ``[f"{f}_ch0", f"{f}_ch1", ...]``."""
    return [f"{field}_ch{ch}" for field in fields for ch in range(channels)]


def check_fields(fields: Sequence[str], available: Iterable[str]) -> list[str]:
    """Return ``fields`` as a list if every one is in ``available``.

    :raises ValueError: naming the unknown (or repeated) fields.
    """
    known = list(available)
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ValueError(
            f"unknown field(s): {', '.join(unknown)}; "
            f"available: {', '.join(known)}"
        )
    repeated = [f for f, n in Counter(fields).items() if n > 1]
    if repeated:
        raise ValueError(f"repeated field(s): {', '.join(repeated)}")
    return list(fields)


def row_values(
    report: Sequence[dict],
    fields: Sequence[str],
    out: Optional[np.ndarray] = None,
    targets: Optional[Sequence[Any]] = None,
) -> np.ndarray:
    """A report as one row of float64 in :func:`columns_for` order, with
    ``targets`` (the channels' PID targets, None while unknown) as
    :data:`TARGET`.

    Booleans become 1.0/0.0; null, missing or non-numeric values NaN.  When
    ``out`` is given it is filled in place (no allocation) and returned.
    """
    ncols = CHANNELS * len(fields)
    if out is None:
        out = np.empty(ncols, dtype=np.float64)
    elif out.shape != (ncols,):
        raise ValueError(f"out has shape {out.shape}, expected ({ncols},)")
    out.fill(math.nan)
    for position, channel in enumerate(report[:CHANNELS]):
        ch = channel.get("channel", position)
        if not isinstance(ch, int) or not 0 <= ch < CHANNELS:
            continue
        for j, field in enumerate(fields):
            value = channel.get(_key(field))
            if isinstance(value, (bool, int, float)):
                out[j * CHANNELS + ch] = float(value)
    if targets is not None and TARGET in fields:
        j = list(fields).index(TARGET)
        for ch, value in enumerate(targets[:CHANNELS]):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[j * CHANNELS + ch] = float(value)
    return out
