"""Samples as InfluxDB line protocol, the format InfluxDB (1.x and 2.x) and
VictoriaMetrics accept on their ``/write`` and ``/api/v2/write`` endpoints.

A sample becomes one point per channel::

    thermostat,channel=0,device=laser temperature=25.0012,pid_engaged=1i,target=25 1795759540123

* measurement ``thermostat`` (configurable); tags ``channel`` and ``device``
  (sorted by key, as InfluxDB recommends);
* one field per recorded report field, with the value the CSV log holds
  (the sample's stored row), so the database and the CSV always agree:
  numbers are float fields (``25``, ``0.13``, never an integer ``25i``, so a
  field never changes type), booleans (``pid_engaged``) are integer fields
  ``0i``/``1i`` (they can be averaged in InfluxQL; VictoriaMetrics stores
  every field as a float anyway), the device's own ``time`` is
  ``device_time``;
  the channel's PID target temperature is the ``target`` field, like any
  other (left out while the bridge does not know it);
* nulls are left out (a channel whose every value is null gives no point);
* the timestamp is the sample's ``ts`` in epoch milliseconds (sent with
  ``precision=ms``).

Encoding is deterministic: the same sample always gives the same bytes, so a resent point overwrites itself instead of adding one.
"""

import math
import re
from .. import schema
from ..acquisition.sample import Sample

__all__ = ["PointEncoder", "check_measurement"]

_MEASUREMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def check_measurement(name: str) -> str:
    """Return ``name`` if it is a usable measurement name (letters, digits
    and ``_``, not starting with a digit: also a valid Prometheus metric
    prefix for VictoriaMetrics), else ValueError naming it."""
    if not isinstance(name, str) or not _MEASUREMENT.match(name):
        raise ValueError("measurement must be letters, digits and '_' (not starting with a"
                         " digit, at most 64), not {!r}".format(name))
    return name


def _tag(value: str) -> str:
    """A tag value or key (or field key) with line protocol's escapes."""
    return value.translate(_TAG_ESCAPES)


def _float(value: float) -> str:
    # repr round-trips float64; an integral value needs no ".0" (still a float field).
    return str(int(value)) if value.is_integer() and abs(value) < 2.0 ** 53 else repr(value)


class PointEncoder:
    """Encodes samples as line protocol (see the module doc).

    :param measurement: the measurement name (:func:`check_measurement`).
    """

    def __init__(self, measurement: str = "thermostat"):
        self.measurement = check_measurement(measurement)
        self._layouts: dict[tuple, list[str]] = {}

    def _fields(self, columns: tuple) -> list[str]:
        """The field names of a stored row's columns (field-major, see
        :func:`~..schema.columns_for`)."""
        fields = self._layouts.get(columns)
        if fields is None:
            names = [c.rsplit("_ch", 1)[0] for c in columns[::schema.CHANNELS]]
            if schema.columns_for(names) != list(columns):
                raise ValueError("columns {} are not field-major per channel".format(columns))
            fields = self._layouts[columns] = names
        return fields

    def encode(self, sample: Sample) -> tuple[bytes, int]:
        """``(lines, points)``: the sample's points, one line each, and how many."""
        fields = self._fields(sample.columns)
        booleans = {key for channel in sample.report for key, value in channel.items()
                    if isinstance(value, bool)}
        values = sample.values.tolist()
        head = "{},channel={{}},device={}".format(self.measurement, _tag(sample.device))
        lines = []
        for ch in range(schema.CHANNELS):
            parts = []
            for j, field in enumerate(fields):
                value = values[j * schema.CHANNELS + ch]
                if not math.isfinite(value):
                    continue  # null (or a value line protocol cannot carry)
                if field in booleans:
                    parts.append("{}={}i".format(_tag(field), int(value)))
                else:
                    parts.append("{}={}".format(_tag(field), _float(value)))
            if parts:
                lines.append("{} {} {}\n".format(head.format(ch), ",".join(parts), sample.ts))
        return "".join(lines).encode(), len(lines)
