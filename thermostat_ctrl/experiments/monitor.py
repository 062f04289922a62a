"""Keep live datasets of every channel of the lab's Thermostats for the
dashboard's applets, yielding to every other experiment.

Submit it at a priority below the others' (``artiq_client submit -p -10
monitor.py``): it pauses whenever a higher-priority experiment waits and
goes on when that one is done, until it is terminated.  Applets::

    ${artiq_applet}big_number thermostat.thermostat.ch0.temperature
    ${artiq_applet}plot_xy thermostat.thermostat.ch0.window_temperature \\
        --x thermostat.thermostat.ch0.window_time
"""

import logging
import time

from artiq.experiment import EnvExperiment, NumberValue, StringValue

from thermostat_ctrl.artiq import (LiveWindow, ThermostatUnreachable, channel_state,
                                   get_thermostat, live_values)

logger = logging.getLogger(__name__)


def regulation(state: dict) -> str:
    """``off``, ``fault`` (no temperature), ``in_band`` or ``out_of_band``."""
    if not state["pid_engaged"]:
        return "off"
    if state["temperature"] is None:
        return "fault"
    return "in_band" if state["in_band"] else "out_of_band"


class ThermostatMonitor(EnvExperiment):
    """Thermostat: live monitor (submit at a low priority)"""

    def build(self):
        self.setattr_device("scheduler")
        self.setattr_argument("devices", StringValue("thermostat"),
                              tooltip="device_db entries of the controllers, comma-separated")
        self.setattr_argument("tolerance", NumberValue(0.05, unit="K", scale=1, min=1e-4,
                                                       precision=4),
                              tooltip="half-width of the band of the in_band state")
        self.setattr_argument("period_s", NumberValue(1.0, unit="s", scale=1, min=0.1))
        self.setattr_argument("window_s", NumberValue(600.0, unit="s", scale=1, min=1),
                              tooltip="length of the rolling window (window_* datasets)")
        self.setattr_argument("duration_s", NumberValue(0.0, unit="s", scale=1, min=0),
                              tooltip="stop after this long; 0: run until terminated")
        names = [n.strip() for n in self.devices.split(",") if n.strip()]
        self.thermostats = {name: get_thermostat(self, name) for name in names}

    def run(self):
        windows = {(name, ch): LiveWindow(self.window_s)
                   for name in self.thermostats for ch in (0, 1)}
        away = set()
        start = time.monotonic()
        while not self.duration_s or time.monotonic() - start < self.duration_s:
            for name, thermostat in self.thermostats.items():
                try:
                    self._publish(name, thermostat, windows)
                except ThermostatUnreachable as e:
                    if name not in away:
                        logger.warning("%s", e)
                    away.add(name)
                else:
                    if name in away:
                        logger.info("%s answers again", name)
                    away.discard(name)
            if self.scheduler.check_pause():
                self.scheduler.pause()  # TerminationRequested when terminated
            time.sleep(self.period_s)

    def _publish(self, name, thermostat, windows):
        for ch in (0, 1):
            state = channel_state(thermostat, ch, self.tolerance, 0.0, name)
            window = windows[name, ch]
            window.add(state["time"], state["temperature"])
            target = state["target"] if state["pid_engaged"] else None
            for key, value in live_values(name, ch, state["temperature"], target,
                                          regulation(state), window).items():
                self.set_dataset(key, value, broadcast=True)
