"""Example ARTIQ experiment: regulate Thermostat channel 0 and wait until it
has settled.

Needs the ``thermostat`` controller entry of ``device_db_snippet.py`` in the
device_db; run it with ``artiq_run scripts/example_experiment.py`` or submit
it through the ARTIQ master.
"""

import logging

from artiq.experiment import BooleanValue, EnvExperiment, NumberValue

logger = logging.getLogger(__name__)


class ThermostatSettle(EnvExperiment):
    """Thermostat: set a target, engage the PID, wait until settled"""

    def build(self):
        self.setattr_device("thermostat")
        self.setattr_argument("channel", NumberValue(0, min=0, max=1, step=1, precision=0))
        # scale=1: the values are sent as they are (degC, K, s)
        self.setattr_argument("target", NumberValue(25.0, unit="degC", scale=1, step=0.1,
                                                    precision=3))
        self.setattr_argument("tolerance", NumberValue(0.01, unit="K", scale=1, min=0.0001,
                                                       precision=4))
        self.setattr_argument("settle_s", NumberValue(10.0, unit="s", scale=1, min=0))
        self.setattr_argument("timeout_s", NumberValue(600.0, unit="s", scale=1, min=1))
        self.setattr_argument("save", BooleanValue(False))

    def run(self):
        ch = int(self.channel)
        # Limits are 0 after boot without saved configuration: give them here.
        state = self.thermostat.power_up(ch, self.target, kp=0.45, ki=0.012, kd=4.3,
                                         max_i_pos=1.0, max_i_neg=1.0, max_v=3.0)
        logger.info("channel %d: PID %s, output %s", ch, state["pid"], state["output"])
        done = self.thermostat.wait_settled(ch, tolerance=self.tolerance,
                                            settle_s=self.settle_s, timeout_s=self.timeout_s)
        logger.info("settled at %.4f degC (target %s degC) after %.0f s",
                    done["temperature"], done["target"], done["waited_s"])
        self.set_dataset("thermostat.settled_temperature", done["temperature"],
                         broadcast=True)
        if self.save:
            self.thermostat.save_config(ch)
