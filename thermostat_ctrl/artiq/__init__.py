"""Helpers for ARTIQ experiments that drive a Thermostat through its
controller (``aqctl_thermostat``), on top of the controller's RPC.

* :func:`get_thermostat`: the device_db entry's client, with a clear
  :class:`ThermostatUnreachable` when the controller or the Thermostat
  cannot be reached (also for ``best_effort`` entries, whose calls return
  None then);
* :func:`settle`: wait until a channel has settled, in short steps that
  yield to higher-priority experiments (``scheduler.check_pause()`` /
  ``pause()``), so a long settle never blocks the machine;
* :func:`ramp`: move a target at a rate, yielding the same way, and settle;
* :class:`PointRecorder`: per-point setpoint, temperature and error as
  datasets, archived into the run's HDF5 results;
* :func:`live_values`: the live datasets of a channel for the dashboard;
* :func:`setattr_thermostat`, :func:`setattr_power_up`,
  :func:`power_up_if_off`: the arguments the shipped experiments share.

The experiments shipped with the package (``thermostat_ctrl/experiments``)
use them.  This package needs neither ARTIQ nor sipyco to be imported.
"""

from .arguments import power_up_if_off, setattr_power_up, setattr_thermostat
from .datasets import LiveWindow, PointRecorder, live_key, live_values
from .device import ThermostatUnreachable, answered, get_thermostat
from .settle import channel_state, ramp, settle

__all__ = ["LiveWindow", "PointRecorder", "ThermostatUnreachable", "answered", "channel_state",
           "get_thermostat", "live_key", "live_values", "power_up_if_off", "ramp",
           "setattr_power_up", "setattr_thermostat", "settle"]
