"""device_db entry for the Sinara Thermostat controller (``aqctl_thermostat``).

Copy the entry into your ARTIQ ``device_db.py``.  The controller manager
(``artiq_ctlmgr``) starts ``command`` on the machine whose address matches
``host``, pings it and restarts it when the ping fails; experiments get an
RPC client with ``self.setattr_device("thermostat")``.

Replace ``192.168.1.26`` (the Thermostat's factory address) with your
device's address.  ``ping()`` answers False while the Thermostat is
unreachable, so the controller manager restarts the controller until the
device is back.
"""

device_db = {}

device_db["thermostat"] = {
    "type": "controller",
    "host": "localhost",  # the controller PC, as seen from the experiments
    "port": 3277,
    "target_name": "thermostat",
    "command": "aqctl_thermostat -p {port} --bind {bind} -d 192.168.1.26",
}

# Without hardware: the same controller serving its built-in simulator.
# device_db["thermostat"] = {
#     "type": "controller",
#     "host": "localhost",
#     "port": 3277,
#     "target_name": "thermostat",
#     "command": "aqctl_thermostat -p {port} --bind {bind} --simulation",
# }
