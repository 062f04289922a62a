"""Arguments the shipped experiments share (they need ARTIQ, imported on use)."""

from typing import Any

from .device import answered, get_thermostat

__all__ = ["setattr_thermostat", "setattr_power_up", "power_up_if_off", "LIMITS", "GAINS"]

#: Output limits set when a channel's are all 0 (the boot default), A and V.
LIMITS = {"max_i_pos": 1.0, "max_i_neg": 1.0, "max_v": 4.0}
#: PID gains (per sample) used when the PID has to be engaged.
GAINS = {"kp": 0.45, "ki": 0.012, "kd": 4.3}
_GROUP = "Power-up (only when the PID is off / the limits are 0)"


def setattr_thermostat(experiment: Any) -> None:
    """Arguments ``device`` (the device_db entry, ``thermostat`` by default)
    and ``channel``; sets ``experiment.thermostat`` to its client."""
    from artiq.experiment import NumberValue, StringValue

    experiment.setattr_argument("device", StringValue("thermostat"),
                                tooltip="device_db entry of the Thermostat's controller")
    experiment.setattr_argument("channel", NumberValue(0, min=0, max=1, step=1, precision=0,
                                                       type="int"))
    experiment.thermostat = get_thermostat(experiment, experiment.device)


def setattr_power_up(experiment: Any, gains: bool = True) -> None:
    """The output limits (and with ``gains`` the PID gains) that
    :func:`power_up_if_off` applies."""
    from artiq.experiment import NumberValue

    for name, value in LIMITS.items():
        unit = "V" if name == "max_v" else "A"
        experiment.setattr_argument(name, NumberValue(value, unit=unit, scale=1, min=0,
                                                      precision=3), group=_GROUP)
    if gains:
        for name, value in GAINS.items():
            experiment.setattr_argument(name, NumberValue(value, precision=4), group=_GROUP)


def power_up_if_off(experiment: Any, target: float, engage: bool = True) -> dict:
    """Make channel ``experiment.channel`` ready: its output limits set from
    the arguments when they are all 0 (the boot default), and with
    ``engage`` the PID engaged on ``target`` with the arguments' gains when
    it is off.  A channel already regulating is left as it is.  Returns
    what was done: ``{"limits": bool, "engaged": bool}``."""
    thermostat, ch, name = experiment.thermostat, experiment.channel, experiment.device
    done = {"limits": False, "engaged": False}
    output = answered(thermostat.get_output(), name, "get_output")[ch]
    if not any(output[k] for k in LIMITS):
        thermostat.set_output_limits(ch, **{k: getattr(experiment, k) for k in LIMITS})
        done["limits"] = True
    if engage and not answered(thermostat.report(), name, "report")[ch]["pid_engaged"]:
        thermostat.power_up(ch, target, **{k: getattr(experiment, k) for k in GAINS})
        done["engaged"] = True
    return done
