"""The Thermostat of a device_db entry, and a clear error when it cannot be
reached."""

from typing import Any

__all__ = ["ThermostatUnreachable", "get_thermostat", "answered"]


class ThermostatUnreachable(ConnectionError):
    """The controller or the Thermostat behind it does not answer; the
    message names the device_db entry and what to check."""


def get_thermostat(experiment: Any, name: str = "thermostat") -> Any:
    """The RPC client of device_db entry ``name`` for ``experiment`` (an
    ``EnvExperiment``; call it from ``build``).

    ThermostatUnreachable when the entry is missing or its controller does
    not accept the connection.  With ``"best_effort": True`` in the entry
    the client is created even while the controller is down, and every
    call returns None until it is back: :func:`answered` turns that None
    into ThermostatUnreachable.
    """
    try:
        return experiment.get_device(name)
    except Exception as e:  # ARTIQ's DeviceError, with the socket error as its cause
        cause = e.__cause__ or e
        raise ThermostatUnreachable(
            "device_db entry {!r}: {}: {}; is aqctl_thermostat running (artiq_ctlmgr starts"
            " it from the entry's command) and are host and port right?".format(
                name, type(cause).__name__, cause)) from e


def answered(value: Any, name: str, what: str) -> Any:
    """``value`` unless it is None, the answer of a ``best_effort`` client
    whose controller is down: then ThermostatUnreachable naming ``name``
    (the device_db entry) and ``what`` was asked."""
    if value is None:
        raise ThermostatUnreachable(
            "device_db entry {!r}: no answer to {} (the controller is not reachable; a"
            " best_effort client keeps retrying)".format(name, what))
    return value
