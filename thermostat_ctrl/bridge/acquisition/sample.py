"""A sample: one successful poll of one device, as it travels on the bus."""

import concurrent.futures
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["Sample"]


@dataclass(frozen=True, eq=False)
class Sample:
    """One successful poll of one device.

    ``ack``, set only for a sample that must be durable (``POST
    /save_once``), is resolved by the store with True once the row is synced
    to the CSV log, False when it could not be written.
    """

    device: str              #: name of the device polled
    ts: int                  #: epoch ms of the request
    monotonic: float         #: monotonic clock at the reply, for freshness
    report: list             #: both channels' report objects as received
    columns: tuple           #: the stored columns
    values: np.ndarray       #: the stored row, float64 (NaN for null)
    ack: Optional[concurrent.futures.Future] = field(default=None, repr=False)
