"""Settling and ramps from an experiment, in short steps that yield to
higher-priority experiments.

Each step asks the controller's non-blocking ``channel_state`` and then,
when the scheduler says a higher-priority experiment waits
(``check_pause()``), yields with ``pause()`` (which raises ARTIQ's
``TerminationRequested`` when the run is asked to stop).  Time is the
device's sample clock, as on the controller; time spent paused does not
count towards a timeout.
"""

import time
from typing import Any, Optional

from ..procedures.basic import check_number, check_target
from .device import ThermostatUnreachable, answered

__all__ = ["settle", "ramp", "channel_state"]

#: Wall seconds between two questions to the controller.
POLL_S = 0.1
#: A target read back within this of the one set (K) is the same target.
TARGET_EPS = 1e-4


def channel_state(thermostat: Any, ch: int, tolerance: float, hold_s: float,
                  name: str = "thermostat") -> dict:
    """The controller's ``channel_state``, with ThermostatUnreachable (naming
    device_db entry ``name``) when the controller or the device is away."""
    try:
        state = thermostat.channel_state(ch, tolerance, hold_s)
    except (OSError, EOFError) as e:  # ConnectionError, TimeoutError, a lost controller
        raise ThermostatUnreachable("device_db entry {!r}: {}".format(name, e)) from e
    return answered(state, name, "channel_state")


def _yield(scheduler: Any) -> bool:
    """Pause for a higher-priority experiment if one waits; True if paused."""
    if scheduler is not None and scheduler.check_pause():
        scheduler.pause()
        return True
    return False


def settle(thermostat: Any, ch: int, tolerance: float = 0.01, hold_s: float = 10.0,
           timeout_s: float = 600.0, scheduler: Any = None, target: Optional[float] = None,
           name: str = "thermostat", poll_s: float = POLL_S) -> dict:
    """Wait until channel ``ch`` has stayed within ``tolerance`` K of its
    target for ``hold_s`` s, at most ``timeout_s`` s of device time not
    spent paused.

    Between questions it yields to higher-priority experiments through
    ``scheduler`` (the experiment's ``scheduler`` device; None: never).
    With ``target`` (degC) the target is set again after a pause if the
    other experiment changed it.  Returns the last ``channel_state`` with
    ``waited_s`` added.  TimeoutError when not settled in time,
    RuntimeError when the PID is not engaged, ThermostatUnreachable when
    the controller or the device does not answer.
    """
    check_number("tolerance", tolerance)
    check_number("hold_s", hold_s, zero_ok=True)
    check_number("timeout_s", timeout_s)
    waited = 0.0
    last: Optional[float] = None
    started = time.monotonic()
    while True:
        state = channel_state(thermostat, ch, tolerance, hold_s, name)
        if state["age_s"] > time.monotonic() - started:
            # sampled before this call (and maybe before the caller's power_up)
            time.sleep(poll_s)
            continue
        if not state["pid_engaged"]:
            raise RuntimeError("{} channel {}: the PID is not engaged; power_up() first".format(
                name, ch))
        if last is not None and state["time"] > last:
            waited += state["time"] - last
        last = state["time"]
        if state["settled"] and (target is None or abs(state["target"] - target) <= TARGET_EPS):
            state["waited_s"] = waited
            return state
        if waited >= timeout_s:
            raise TimeoutError(
                "{} channel {} not settled within {} s: temperature {} degC, target {} degC,"
                " tolerance {} K".format(name, ch, timeout_s, state["temperature"],
                                         state["target"], tolerance))
        if _yield(scheduler):
            last = None  # the time paused does not count
            if target is not None:  # the other experiment may have moved it
                thermostat.set_target(ch, target)
        time.sleep(poll_s)


def ramp(thermostat: Any, ch: int, target: float, rate: float, scheduler: Any = None,
         tolerance: float = 0.01, hold_s: Optional[float] = 10.0, timeout_s: float = 600.0,
         name: str = "thermostat", poll_s: float = POLL_S) -> dict:
    """Move channel ``ch``'s target from where it is to ``target`` degC at
    ``rate`` K/s (device time), then (unless ``hold_s`` is None) settle
    there as :func:`settle` does.

    The target moves in steps of ``rate`` times the device time between two
    questions; while paused for a higher-priority experiment it stays where
    it is, and the ramp goes on from there.  ValueError for a rate of 0 or
    below or a target outside the controller's safe window (checked before
    anything is set).  Returns ``{"start", "target", "rate", "steps",
    "ramp_s", "settled"}`` (``settled``: the final state, or None).
    """
    check_number("rate", rate)
    check_target(target, tuple(answered(thermostat.safe_window(), name, "safe_window")))
    start = answered(thermostat.get_pid(), name, "get_pid")[ch]["target"]
    setpoint, steps, ramp_s = start, 0, 0.0
    last: Optional[float] = None
    while setpoint != target:
        now = channel_state(thermostat, ch, tolerance, 0.0, name)["time"]
        if last is not None and now > last:
            ramp_s += now - last
            step = rate * (now - last)
            setpoint = (min(target, setpoint + step) if target > start
                        else max(target, setpoint - step))
            thermostat.set_target(ch, setpoint)
            steps += 1
        last = now
        if _yield(scheduler):
            last = None
            thermostat.set_target(ch, setpoint)  # where this ramp had got to
        if setpoint != target:
            time.sleep(poll_s)
    settled = None
    if hold_s is not None:
        settled = settle(thermostat, ch, tolerance, hold_s, timeout_s, scheduler, target, name,
                         poll_s)
    return {"start": start, "target": target, "rate": rate, "steps": steps, "ramp_s": ramp_s,
            "settled": settled}
