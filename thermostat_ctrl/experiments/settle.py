"""Regulate a Thermostat channel and wait until it has settled."""

import logging

from artiq.experiment import BooleanValue, EnvExperiment, NumberValue

from thermostat_ctrl.artiq import setattr_power_up, setattr_thermostat, settle

logger = logging.getLogger(__name__)


class ThermostatSettle(EnvExperiment):
    """Thermostat: set a target, engage the PID, wait until settled"""

    def build(self):
        self.setattr_device("scheduler")
        setattr_thermostat(self)
        self.setattr_argument("target", NumberValue(25.0, unit="degC", scale=1, step=0.1,
                                                    precision=3))
        self.setattr_argument("tolerance", NumberValue(0.01, unit="K", scale=1, min=1e-4,
                                                       precision=4))
        self.setattr_argument("hold_s", NumberValue(10.0, unit="s", scale=1, min=0))
        self.setattr_argument("timeout_s", NumberValue(600.0, unit="s", scale=1, min=1))
        self.setattr_argument("save", BooleanValue(False),
                              tooltip="save the channel's settings to the device's flash")
        setattr_power_up(self)

    def run(self):
        ch = self.channel
        # Limits are 0 after boot without saved configuration: they are given here.
        state = self.thermostat.power_up(ch, self.target, kp=self.kp, ki=self.ki, kd=self.kd,
                                         max_i_pos=self.max_i_pos, max_i_neg=self.max_i_neg,
                                         max_v=self.max_v)
        logger.info("channel %d: PID %s, output %s", ch, state["pid"], state["output"])
        done = settle(self.thermostat, ch, self.tolerance, self.hold_s, self.timeout_s,
                      self.scheduler, self.target, self.device)
        logger.info("settled at %.4f degC (target %s degC) after %.0f s",
                    done["temperature"], done["target"], done["waited_s"])
        self.set_dataset("thermostat.settled_temperature", done["temperature"],
                         broadcast=True)
        if self.save:
            self.thermostat.save_config(ch)
