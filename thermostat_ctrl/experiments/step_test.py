"""Step a Thermostat channel's target and back: rise time, overshoot, settling time."""

import logging

import numpy as np
from artiq.experiment import BooleanValue, EnvExperiment, NumberValue

from thermostat_ctrl.artiq import power_up_if_off, setattr_power_up, setattr_thermostat

logger = logging.getLogger(__name__)

PREFIX = "thermostat.step"
FIGURES = ("rise_time_s", "overshoot_k", "settling_time_s", "steady_std_k", "steady_error_k")


class ThermostatStepTest(EnvExperiment):
    """Thermostat: closed-loop step test"""

    def build(self):
        setattr_thermostat(self)
        self.setattr_argument("delta", NumberValue(1.0, unit="K", scale=1, precision=3))
        self.setattr_argument("band", NumberValue(0.02, unit="K", scale=1, min=1e-4,
                                                  precision=4))
        self.setattr_argument("hold_s", NumberValue(10.0, unit="s", scale=1, min=0.1))
        self.setattr_argument("duration_s", NumberValue(300.0, unit="s", scale=1, min=1))
        self.setattr_argument("back", BooleanValue(True), tooltip="step back afterwards")
        self.setattr_argument("target", NumberValue(25.0, unit="degC", scale=1, precision=3),
                              tooltip="where the PID is engaged if it is off")
        setattr_power_up(self)

    def run(self):
        power_up_if_off(self, self.target)
        # One blocking call: a step test cannot stop half-way (abort(ch) restores).
        result = self.thermostat.step_response(self.channel, self.delta, band=self.band,
                                               duration_s=self.duration_s,
                                               hold_s=self.hold_s, back=self.back)
        self.set_dataset(PREFIX + ".start", result["start"])
        self.set_dataset(PREFIX + ".target", result["target"])
        for leg in ("up", "down"):
            figures = result[leg]
            if figures is None:
                continue
            for name in FIGURES:
                value = figures[name]
                self.set_dataset("{}.{}.{}".format(PREFIX, leg, name),
                                 np.nan if value is None else value)
            for name, values in figures["data"].items():
                self.set_dataset("{}.{}.data.{}".format(PREFIX, leg, name), np.array(values))
            logger.info("%s: rise %s s, overshoot %.4f K, settling %s s, steady std %.5f K",
                        leg, figures["rise_time_s"], figures["overshoot_k"],
                        figures["settling_time_s"], figures["steady_std_k"])
