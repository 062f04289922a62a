"""Wire encoding of the firmware: Rust ``{:e}`` floats inside compact JSON.

The firmware serializes with serde-json-core 0.1.0, which prints every float
with Rust's ``{:e}`` formatter: shortest round-trip mantissa for the *stored*
width, ``e``, exponent without ``+`` or leading zeros (25.0 -> ``2.5e1``).
Fields stored as f32 must be wrapped in :class:`F32` so their shortest digits
are computed in single precision (0.3 -> ``3e-1`` rather than
``3.000000011920929e-1``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["F32", "fmt_f32", "fmt_f64", "encode", "to_f32"]


class F32(float):
    """A float whose wire representation uses single-precision shortest digits."""


def to_f32(value: float) -> float:
    """Round ``value`` to the nearest f32 (as Rust's ``as f32`` does)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _rust_e(text: str) -> str:
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_f64(value: float) -> str:
    """Format like Rust ``format!("{:e}", value as f64)``; non-finite -> ``null``."""
    if not math.isfinite(value):
        return "null"
    return _rust_e(np.format_float_scientific(np.float64(value), unique=True, trim="-"))


def fmt_f32(value: float) -> str:
    """Format like Rust ``format!("{:e}", value as f32)``; non-finite -> ``null``."""
    with np.errstate(over="ignore"):
        single = np.float32(value)
    if not np.isfinite(single):
        return "null"
    return _rust_e(np.format_float_scientific(single, unique=True, trim="-"))


def encode(obj: Any) -> str:
    """Serialize ``obj`` compactly (no spaces) the way serde-json-core does.

    ``float`` -> f64 digits, :class:`F32` -> f32 digits, ``int`` plain,
    ``None`` -> ``null``; dicts keep insertion order (= wire key order).
    """
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, F32):
        return fmt_f32(obj)
    if isinstance(obj, float):
        return fmt_f64(obj)
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, str):
        return json.dumps(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(encode(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__}")
