"""ARTIQ experiments for the Sinara Thermostat, to point an ``artiq_master``
repository at (``artiq_master -r $(python -c 'import thermostat_ctrl.experiments as e,
os; print(os.path.dirname(e.__file__))')``) or to copy into one.

Each uses the device_db entry ``thermostat`` unless its ``device`` argument
names another, and runs with ``artiq_run`` on its default arguments
(``ThermostatMonitor`` then runs until terminated):

* ``setpoint_scan.py``: ``ThermostatSetpointScan``, per-point temperatures
  as datasets ``thermostat.scan.*``;
* ``autotune.py``: ``ThermostatAutotune``, model and gains as datasets
  ``thermostat.autotune.*``;
* ``step_test.py``: ``ThermostatStepTest``, rise time, overshoot, settling
  time as datasets ``thermostat.step.*``;
* ``settle.py``: ``ThermostatSettle``, regulate a channel and wait until
  it has settled;
* ``monitor.py``: ``ThermostatMonitor``, live datasets of every channel
  for the dashboard's applets; submit it at a low priority.
"""
