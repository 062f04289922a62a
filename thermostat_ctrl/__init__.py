"""Sinara Thermostat support for physics labs: protocol, driver, simulator,
ARTIQ controller and HTTP bridge."""

__version__ = "0.1.0"
