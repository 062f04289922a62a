"""Settings snapshots: a device's whole configuration as a file, compared
with another or with the device now, and restored onto the same device or
another one, of either firmware dialect.

A snapshot (:data:`FORMAT`) holds, per channel, the output limits, the PID
gains, output range and target, whether the PID was engaged, the
thermistor parameters (``t0`` in °C), the postfilter rate and the polarity,
and the device's fan.  Restoring maps between the dialects (the
postfilter's four filters carry other labels on firmware 2023, see
:data:`~thermostat_ctrl.protocol.POSTFILTER_RATES`; firmware 2023 has no
polarity setting, only the normal one) and refuses, before anything is
written, what the target device cannot hold (a limit beyond its range, a
reversed polarity on 2023): every value goes through the same checks as
any write (:meth:`~.control.Control.check`), then each setting is one
audited write with its read-back.
"""

from typing import Any, Optional

from .. import protocol
from .control import RESOURCES, Control, Invalid, same_value
from .runtime import Device
from .storage.csvformat import iso_time

__all__ = ["FORMAT", "take", "diff", "plan", "restore", "SnapshotError"]

FORMAT = "thermostat-snapshot/1"
#: Channel settings restored, in this order (limits first: nothing drives
#: beyond the new limits meanwhile; the target before the PID is engaged).
ORDER = ("limits", "b_parameter", "postfilter", "polarity", "pid", "target")


class SnapshotError(ValueError):
    """A snapshot that cannot be restored onto a device; ``problems`` lists
    each ``(where, message)``."""

    def __init__(self, problems: list):
        super().__init__("; ".join("{}: {}".format(w, m) for w, m in problems))
        self.problems = problems


async def take(control: Control, device: Device, now_ms: int) -> dict:
    """The device's snapshot, read from it now (DeviceDown, DeviceRefused)."""
    channels = []
    for ch in protocol.CHANNELS:
        s = await control.settings(device, ch)
        channels.append({"target": s["target"], "pid_engaged": s["pid_engaged"],
                         "pid": s["pid"], "limits": s["limits"],
                         "b_parameter": s["b_parameter"], "postfilter": s["postfilter"],
                         "polarity": s["polarity"]})
    fan = await control.read(device, RESOURCES["fan"], None)
    return {"format": FORMAT, "device": device.name, "firmware": device.poller.firmware,
            "hwrev": device.poller.hwrev, "taken": iso_time(now_ms), "channels": channels,
            # In auto mode the power follows the current: only the mode is a setting.
            "fan": None if fan["auto"] is None else {
                "auto": fan["auto"], "power": None if fan["auto"] else fan["power"]}}


def _flatten(value: Any, path: str, out: dict) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, "{}.{}".format(path, key) if path else key, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flatten(item, "{}[{}]".format(path, i), out)
    else:
        out[path] = value


def _in_dialect(snapshot: dict, firmware: Optional[str]) -> dict:
    """``snapshot``'s settings as a device of ``firmware`` shows them."""
    source = snapshot.get("firmware")
    if firmware == source or source not in protocol.FIRMWARES \
            or firmware not in protocol.FIRMWARES:
        return snapshot
    channels = []
    for c in snapshot.get("channels") or []:
        if not isinstance(c, dict):
            return snapshot  # not a snapshot: compared as it is
        polarity = c.get("polarity")
        if firmware != "2025" and polarity == "normal":
            polarity = None  # firmware 2023 shows no polarity: always the normal one
        elif firmware == "2025" and polarity is None:
            polarity = "normal"
        channels.append({**c, "polarity": polarity,
                         "postfilter": _postfilter(c.get("postfilter"), source, firmware)})
    return {**snapshot, "channels": channels}


def diff(a: dict, b: dict) -> list:
    """The settings that differ between snapshots ``a`` and ``b``:
    ``[{"setting": "channels[0].pid.kp", "a": ..., "b": ...}]`` (the
    snapshots' own identity, time and firmware left out; ``a`` as ``b``'s
    firmware shows it: the postfilter's labels, the polarity)."""
    a = _in_dialect(a, b.get("firmware"))
    flat_a, flat_b = {}, {}
    _flatten(a.get("channels"), "channels", flat_a)
    _flatten(a.get("fan"), "fan", flat_a)
    _flatten(b.get("channels"), "channels", flat_b)
    _flatten(b.get("fan"), "fan", flat_b)
    return [{"setting": k, "a": flat_a.get(k), "b": flat_b.get(k)}
            for k in sorted(set(flat_a) | set(flat_b), key=_natural)
            if not same_value(flat_a.get(k), flat_b.get(k))]


def _natural(key: str) -> tuple:
    return tuple(key.replace("[", ".").replace("]", "").split("."))


def _postfilter(rate: Optional[float], source: str, target: str) -> Optional[float]:
    """The rate on ``target`` of the filter ``rate`` names on ``source``."""
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or source == target:
        return rate  # off (None), or not a rate: the check names it
    rates = protocol.POSTFILTER_RATES[source]
    for i, known in enumerate(rates):
        if abs(rate - known) < 0.01:
            return protocol.POSTFILTER_RATES[target][i]
    return rate  # not one of the source's: the check names it


def plan(control: Control, device: Device, snapshot: dict) -> list:
    """The writes that restore ``snapshot`` onto ``device``:
    ``[(resource, ch, values)]``, every value checked for the device's
    firmware.  SnapshotError listing every problem (nothing is written)."""
    if not isinstance(snapshot, dict) or snapshot.get("format") != FORMAT:
        raise SnapshotError([("format", "not a {} file".format(FORMAT))])
    target_fw = device.poller.firmware
    source_fw = snapshot.get("firmware")
    if source_fw not in protocol.FIRMWARES:
        raise SnapshotError([("firmware", "unknown firmware {!r}".format(source_fw))])
    channels = snapshot.get("channels")
    if not isinstance(channels, list) or len(channels) != len(protocol.CHANNELS):
        raise SnapshotError([("channels", "needs both channels")])
    writes, problems = [], []
    for ch, c in enumerate(channels):
        try:
            values = {
                "limits": dict(c["limits"]), "b_parameter": dict(c["b_parameter"]),
                "postfilter": {"rate": _postfilter(c["postfilter"], source_fw, target_fw)},
                "pid": dict(c["pid"]), "target": {"value": c["target"]},
                "polarity": {"value": c.get("polarity") or "normal"}}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            problems.append(("channels[{}]".format(ch), "malformed ({}: {})".format(
                type(e).__name__, e)))
            continue
        if target_fw != "2025" and values["polarity"]["value"] == "normal":
            del values["polarity"]  # firmware 2023 has only the normal polarity
        for name in ORDER:
            if name not in values:
                continue
            try:
                control.check(device, RESOURCES[name], ch, values[name])
            except Invalid as e:
                problems.append(("channels[{}].{}.{}".format(ch, name, e.field), str(e)))
                continue
            writes.append((name, ch, values[name]))
        if c.get("pid_engaged"):
            writes.append(("engage", ch, {}))
    fan = snapshot.get("fan")
    if isinstance(fan, dict):
        power = "auto" if fan.get("auto") else fan.get("power")
        try:
            control.check(device, RESOURCES["fan"], None, {"power": power})
            writes.append(("fan", None, {"power": power}))
        except Invalid as e:
            problems.append(("fan.power", str(e)))
    if problems:
        raise SnapshotError(problems)
    return writes


async def restore(control: Control, device: Device, snapshot: dict, who: str,
                  client: Optional[str]) -> list:
    """Restore ``snapshot`` onto ``device`` (see :func:`plan`): each setting
    an audited write, the whole an audit entry ``restore``.  Returns the
    read-back of each write; raises SnapshotError or the first
    :class:`~.control.WriteError` (the writes before it stay done)."""
    writes = plan(control, device, snapshot)
    if any(name == "fan" for name, _, _ in writes) and \
            (await control.read(device, RESOURCES["fan"], None))["auto"] is None:
        writes = [w for w in writes if w[0] != "fan"]  # this board has no fan to set
    source = "{} ({}, firmware {}, taken {})".format(
        snapshot.get("device"), snapshot.get("hwrev"), snapshot.get("firmware"),
        snapshot.get("taken"))
    done = []
    try:
        for name, ch, values in writes:
            after = await control.write(device, RESOURCES[name], ch, values, who, client)
            done.append({"setting": name, "channel": ch, "after": after})
    except Exception as e:
        await control.record(device, "restore", who, client=client, requested={"from": source},
                             result="failed", detail="after {} of {} writes: {}".format(
                                 len(done), len(writes), e))
        raise
    await control.record(device, "restore", who, client=client, requested={"from": source},
                         after={"writes": len(done)})
    return done
