"""Byte-faithful simulator of the Sinara Thermostat TCP protocol (FW-2023 / FW-2025).

>>> async with Simulator(firmware="2025", speed=100, seed=1) as sim:
...     reader, writer = await asyncio.open_connection(sim.host, sim.port)

See :mod:`.server` (connections, faults), :mod:`.device` (commands, flash,
ADC timeline), :mod:`.physics` (plant and PID), :mod:`.grammar` (line parser)
and :mod:`.numfmt` (wire number format). The ``thermostat_sim`` command runs it
stand-alone (:mod:`.cli`).
"""

from .physics import PlantParams
from .faults import Faults
from .server import Simulator

__all__ = ["Simulator", "Faults", "PlantParams"]
