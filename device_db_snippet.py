"""device_db entries for the Sinara Thermostat controller (``aqctl_thermostat``).

Copy the entries you need into your ARTIQ ``device_db.py``.  The controller
manager (``artiq_ctlmgr``) starts ``command`` on the machine whose address
matches ``host``, pings it and restarts it when the ping fails; experiments
get an RPC client with ``self.setattr_device("thermostat")`` (or
``thermostat_ctrl.artiq.get_thermostat(self, "thermostat")``, which names
the entry when it cannot be reached).

Replace ``192.168.1.26`` (the Thermostat's factory address) with your
device's address.  ``ping()`` answers False while the Thermostat is
unreachable, so the controller manager restarts the controller until the
device is back.  ``--safe-window LOW HIGH`` (degC, default -10 80) bounds
every target set through the controller.

``"best_effort": True`` gives experiments a client that does not fail when
the controller is down: every call returns None meanwhile (the helpers of
``thermostat_ctrl.artiq`` raise ThermostatUnreachable on it), and it
reconnects by itself.  Use it for monitors that must not fail; leave it out
for experiments whose results depend on the device.
"""

device_db = {}

device_db["thermostat"] = {
    "type": "controller",
    "host": "localhost",  # the controller PC, as seen from the experiments
    "port": 3277,
    "target_name": "thermostat",
    "command": "aqctl_thermostat -p {port} --bind {bind} -d 192.168.1.26 --safe-window 10 40",
}

# Without hardware: the same controller serving its built-in simulator.
# device_db["thermostat"] = {
#     "type": "controller",
#     "host": "localhost",
#     "port": 3277,
#     "target_name": "thermostat",
#     "command": "aqctl_thermostat -p {port} --bind {bind} --simulation",
# }

# Several Thermostats in one controller process: one RPC target per device
# (-d NAME=HOST repeated), one device_db entry per target.  The controller
# manager starts the first entry's command; the others name its targets.
# While it serves several devices, ping() answers True even when one of them
# is away (status() tells), so that the manager does not restart the
# controller and cut off the devices that are fine.
device_db["thermostat_laser"] = {
    "type": "controller",
    "host": "localhost",
    "port": 3278,
    "target_name": "laser",
    "command": "aqctl_thermostat -p {port} --bind {bind}"
               " -d laser=192.168.1.26 -d cavity=192.168.1.27",
}
device_db["thermostat_cavity"] = {
    "type": "controller_aux_target",
    "controller": "thermostat_laser",
    "target_name": "cavity",
    "best_effort": True,  # e.g. for the monitor: a missing controller is not an error
}
