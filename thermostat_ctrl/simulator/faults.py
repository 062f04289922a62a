"""The simulator's faults: of the network, of the device and of its plant.

Every switch can be changed at any time while the simulator runs (the
``thermostat_sim`` flags set them at start, its ``--control-port`` at run
time; tests set them directly).  Each device fault makes one alarm rule of
the bridge fire, as the real fault would:

=====================  ==========================================  ====================
fault                  what the device does                        rule
=====================  ==========================================  ====================
``unplugged``          thermistor open: ``temperature`` null, the  sensor_open
                       firmware powers the output down
``shorted``            thermistor shorted: reads far beyond any    sensor_implausible
                       real temperature (nothing in the firmware
                       trips)
``tec_open``           TEC disconnected: no current flows           tec_open
                       whatever the setpoint
``overheat``           the heat sink :data:`OVERHEAT_K` above      runaway
                       ambient: cooling capacity lost
``ambient_drift``      ambient drifting (K per hour, both          drift (PID off:
                       channels)                                   the temperature)
=====================  ==========================================  ====================
"""

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Faults", "OVERHEAT_K", "SHORT_OHMS", "CHANNEL_FAULTS"]

#: How far above ambient an overheating heat sink sits (K).
OVERHEAT_K = 30.0
#: The resistance a shorted thermistor presents (Ω).
SHORT_OHMS = 1.0
#: The per-channel device faults (each a set of channels).
CHANNEL_FAULTS = ("unplugged", "shorted", "tec_open", "overheat")


@dataclass
class Faults:
    """Fault injection switches.

    Network faults:

    * ``hang``: commands are still read but discarded, nothing is replied.
    * ``delay_ms``: every reply is delayed by this many real milliseconds.
    * ``cut_replies``: the next N reply lines are cut after half their bytes
      (no newline) and the connection is then reset (RST).
    * ``garbage_replies``: the next N reply lines are each preceded by a
      non-JSON garbage line.
    * ``refuse``: listener closed (ECONNREFUSED); open connections are kept.

    Device and plant faults (see the module doc): ``unplugged``, ``shorted``,
    ``tec_open``, ``overheat`` (sets of channels) and ``ambient_drift``
    (K per simulated hour).
    """

    hang: bool = False
    delay_ms: float = 0.0
    cut_replies: int = 0
    garbage_replies: int = 0
    refuse: bool = False
    unplugged: set[int] = field(default_factory=set)
    shorted: set[int] = field(default_factory=set)
    tec_open: set[int] = field(default_factory=set)
    overheat: set[int] = field(default_factory=set)
    ambient_drift: float = 0.0

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "refuse":
            hook = self.__dict__.get("_on_refuse")
            if hook is not None:
                hook()

    def active(self) -> dict:
        """The faults switched on, by name."""
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(self).items()
                if not k.startswith("_") and v}
