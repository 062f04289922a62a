"""Scan a Thermostat channel's setpoint; per point, settle and record."""

import logging

from artiq.experiment import BooleanValue, EnvExperiment, NumberValue, RangeScan, Scannable

from thermostat_ctrl.artiq import (PointRecorder, answered, power_up_if_off, setattr_power_up,
                                   setattr_thermostat, settle)

logger = logging.getLogger(__name__)

PREFIX = "thermostat.scan"


class ThermostatSetpointScan(EnvExperiment):
    """Thermostat: setpoint scan"""

    def build(self):
        self.setattr_device("scheduler")
        self.setattr_device("ccb")
        setattr_thermostat(self)
        # scale=1: ARTIQ knows no unit "degC"; values are used as they are
        self.setattr_argument("setpoints", Scannable(default=RangeScan(25.0, 26.0, 3),
                                                     unit="degC", scale=1, precision=3))
        self.setattr_argument("tolerance", NumberValue(0.05, unit="K", scale=1, min=1e-4,
                                                       precision=4))
        self.setattr_argument("hold_s", NumberValue(5.0, unit="s", scale=1, min=0))
        self.setattr_argument("timeout_s", NumberValue(600.0, unit="s", scale=1, min=1))
        self.setattr_argument("restore", BooleanValue(True),
                              tooltip="put the target back where it was after the scan (when"
                                      " the PID was engaged before it)")
        setattr_power_up(self)

    def run(self):
        ch, thermostat = self.channel, self.thermostat
        points = list(self.setpoints)
        recorder = PointRecorder(self, PREFIX, len(points))
        self.ccb.issue("create_applet", "thermostat scan",
                       "${{artiq_applet}}plot_xy {0}.temperature --x {0}.setpoint".format(PREFIX))
        # a channel this scan engages has no target worth putting back
        engaged = power_up_if_off(self, points[0])["engaged"]
        start = answered(thermostat.get_pid(), self.device, "get_pid")[ch]["target"]
        try:
            for index, setpoint in enumerate(points):
                thermostat.set_target(ch, setpoint)
                state = settle(thermostat, ch, self.tolerance, self.hold_s, self.timeout_s,
                               self.scheduler, setpoint, self.device)
                recorder.record(index, state)
                logger.info("point %d: setpoint %.4f degC, temperature %.4f degC, error"
                            " %+.5f K (std %.5f K), settled after %.1f s", index, setpoint,
                            state["temperature"], state["error_mean"], state["error_std"],
                            state["waited_s"])
        finally:
            if self.restore and not engaged:
                thermostat.set_target(ch, start)
