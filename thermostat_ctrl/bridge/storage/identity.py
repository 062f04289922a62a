"""What filled a device folder: its identity, recorded in the folder.

``<data-dir>/<name>/device.json`` says whether the rows come from the
built-in simulation or from a real Thermostat, which address it was polled
at, and, once polled, its firmware dialect and hardware revision.  A bridge
claims each device folder at start, before anything is written
(:func:`claim`): a folder another device filled is refused unless the bridge
is told to adopt it; a folder without a record (new, or filled before
records were kept) takes the bridge's device.  The firmware and the hardware
revision are recorded as they become known (:func:`update`).
"""

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from typing import Optional

from .datadir import DataDirError

logger = logging.getLogger(__name__)

__all__ = ["Identity", "IDENTITY_NAME", "claim", "read", "update"]

#: The record's file name inside a device folder.
IDENTITY_NAME = "device.json"


@dataclass(frozen=True)
class Identity:
    """The device whose rows a folder holds."""

    simulated: bool
    address: Optional[str] = None  #: ``HOST:PORT`` polled; None for the simulation
    firmware: Optional[str] = None  #: ``2023`` or ``2025`` once known
    hwrev: Optional[str] = None  #: e.g. ``v2.2`` once known

    def same_device(self, other: "Identity") -> bool:
        """True when ``other`` is the same source of rows: simulated or not,
        the same address and, where both are known, the same firmware and
        hardware revision."""
        return self.simulated == other.simulated and self.address == other.address and all(
            mine is None or theirs is None or mine == theirs
            for mine, theirs in ((self.firmware, other.firmware), (self.hwrev, other.hwrev)))

    def __str__(self) -> str:
        what = "the simulation" if self.simulated else "the Thermostat at {}".format(self.address)
        known = [v for v in (self.firmware and "firmware " + self.firmware, self.hwrev) if v]
        return what + (" ({})".format(", ".join(known)) if known else "")


def read(folder: str) -> Optional[Identity]:
    """The identity recorded in ``folder``, None when there is no record;
    DataDirError naming the file when it is unreadable."""
    path = os.path.join(folder, IDENTITY_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return Identity(**{key: data.get(key) for key in ("address", "firmware", "hwrev")},
                        simulated=bool(data["simulated"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataDirError("{} is unreadable ({}): fix or remove it".format(path, e)) from None


def _write(folder: str, identity: Identity) -> None:
    path = os.path.join(folder, IDENTITY_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(identity), f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def claim(folder: str, identity: Identity, adopt: bool = False) -> Identity:
    """Record ``identity`` as what fills ``folder`` and return the record now
    in force; DataDirError (one line) when the folder records another device,
    unless ``adopt``."""
    os.makedirs(folder, exist_ok=True)
    recorded = read(folder)
    if recorded is not None and recorded.same_device(identity):
        merged = replace(identity, firmware=identity.firmware or recorded.firmware,
                         hwrev=identity.hwrev or recorded.hwrev)
        if merged != recorded:
            _write(folder, merged)
        return merged
    if recorded is not None and not adopt:
        raise DataDirError("{} holds the rows of {}, not of {}: give the device another name,"
                           " another --data-dir, or --adopt to append to it".format(
                               folder, recorded, identity))
    if recorded is not None:
        logger.warning("%s: adopted; it held the rows of %s, now of %s", folder, recorded,
                       identity)
    _write(folder, identity)
    return identity


def update(folder: str, recorded: Identity, firmware: Optional[str],
           hwrev: Optional[str]) -> Identity:
    """Record the firmware and hardware revision once known (a change is
    logged); the record now in force."""
    now = replace(recorded, firmware=firmware or recorded.firmware,
                  hwrev=hwrev or recorded.hwrev)
    if now == recorded:
        return recorded
    if not now.same_device(recorded):
        logger.warning("%s: the device now reports %s; it was %s", folder, now, recorded)
    try:
        _write(folder, now)
    except OSError as e:
        logger.warning("%s: could not record the device's identity: %s", folder, e)
        return recorded
    return now
