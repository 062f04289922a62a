"""Relay-autotune a Thermostat channel's PID; the model and gains as datasets."""

import logging

import numpy as np
from artiq.experiment import BooleanValue, EnumerationValue, EnvExperiment, NumberValue

from thermostat_ctrl.artiq import power_up_if_off, setattr_power_up, setattr_thermostat
from thermostat_ctrl.procedures import DEFAULT_RULE, RULE_NAMES

logger = logging.getLogger(__name__)

PREFIX = "thermostat.autotune"


def flatten(value, key: str, out: dict) -> dict:
    """Datasets of a nested result: numbers and strings as they are, lists of
    numbers as arrays, dicts under ``key.<name>``; None is left out."""
    if isinstance(value, dict):
        for name, item in value.items():
            flatten(item, "{}.{}".format(key, name), out)
    elif isinstance(value, (list, tuple)):
        out[key] = np.array(value, dtype=float)
    elif value is not None:
        out[key] = value
    return out


class ThermostatAutotune(EnvExperiment):
    """Thermostat: relay autotune of the PID"""

    def build(self):
        setattr_thermostat(self)
        self.setattr_argument("target", NumberValue(25.0, unit="degC", scale=1, precision=3))
        self.setattr_argument("rule", EnumerationValue(list(RULE_NAMES), DEFAULT_RULE))
        self.setattr_argument("apply", BooleanValue(False),
                              tooltip="write the gains and output range to the channel")
        self.setattr_argument("engage", BooleanValue(False),
                              tooltip="with apply: engage the PID on the target")
        self.setattr_argument("timeout_s", NumberValue(1800.0, unit="s", scale=1, min=10))
        setattr_power_up(self, gains=False)

    def run(self):
        power_up_if_off(self, self.target, engage=False)
        # One blocking call: a relay test cannot pause half-way (abort(ch) restores).
        result = self.thermostat.autotune(self.channel, self.target, rule=self.rule,
                                          timeout_s=self.timeout_s, apply=self.apply,
                                          engage=self.apply and self.engage)
        for key, value in flatten(result, PREFIX, {}).items():
            self.set_dataset(key, value)
        logger.info("channel %d, rule %s: gains %s (per sample), model %s, ku %.4g, pu %.4g s%s",
                    self.channel, result["rule"], result["gains"], result["model"],
                    result["ku"], result["pu"], ", applied" if self.apply else "")
