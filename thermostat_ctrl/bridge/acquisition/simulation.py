"""``--simulation [N]``: built-in simulated devices, configured so their plots move.

Each simulated device is a simulator of its own (own plant, own noise) on a
free loopback port.  Both channels get output limits, the upstream example
PID gains and an engaged PID; a task then steps the targets between
:data:`LOW_C` and :data:`HIGH_C` (shifted by :data:`OFFSET_C` per device
index, so a lab's devices are told apart) every :data:`STEP_S` simulated
seconds, channel 1 in opposite phase, until :meth:`Simulation.hold` (a
person changed the channel through the bridge).
"""

import asyncio
import logging
from typing import Optional

from ...aio import cancel_task
from ...driver import Thermostat
from ...simulator import Simulator

logger = logging.getLogger(__name__)

LOW_C, HIGH_C = 24.0, 26.0
OFFSET_C = 1.5
STEP_S = 180.0
LIMITS = {"max_i_pos": 1.5, "max_i_neg": 1.5, "max_v": 4.0}
GAINS = {"kp": 0.45, "ki": 0.012, "kd": 4.3}


class Simulation:
    """One in-process simulated device of ``--simulation``.

    :param speed: simulated seconds per wall-clock second.
    :param firmware: the simulated firmware dialect.
    :param index: the device's position in the lab (shifts its targets and
        seeds its noise).
    """

    def __init__(self, speed: float = 1.0, firmware: str = "2025", index: int = 0):
        self.speed = speed
        self.index = index
        self.sim = Simulator(firmware=firmware, speed=speed, seed=index)
        self.port: Optional[int] = None
        self._driver: Optional[Thermostat] = None
        self._task: Optional[asyncio.Task] = None
        #: The target this simulation last set on each channel (its own
        #: steps are no change from outside the bridge).
        self.commanded: dict = {}
        self._held: set = set()

    async def start(self) -> tuple:
        """Start the simulator, configure both channels, start stepping the
        targets; return the device's (host, port)."""
        self.port = await self.sim.start("127.0.0.1", 0)
        self._driver = Thermostat("127.0.0.1", self.port, timeout=5.0)
        await self._configure()
        self._task = asyncio.get_running_loop().create_task(self._step(), name="target steps")
        return "127.0.0.1", self.port

    async def stop(self) -> None:
        """Stop stepping and shut the simulator down."""
        if self._task is not None:
            await cancel_task(self._task)
        if self._driver is not None:
            await self._driver.close()
        await self.sim.stop()

    def hold(self, ch: int) -> None:
        """Stop stepping channel ``ch``'s target: a person has taken it over."""
        self._held.add(ch)

    def targets(self, step: int) -> tuple:
        """Targets (ch0, ch1) in °C after ``step`` steps."""
        low, high = LOW_C + OFFSET_C * self.index, HIGH_C + OFFSET_C * self.index
        return (low, high) if step % 2 == 0 else (high, low)

    async def _configure(self) -> None:
        assert self._driver is not None
        for ch, target in enumerate(self.targets(0)):
            await self._driver.set_output_limits(ch, **LIMITS)
            await self._driver.set_pid_params(ch, **GAINS)
            self.commanded[ch] = target
            await self._driver.set_target(ch, target)
            await self._driver.engage_pid(ch)

    async def _step(self) -> None:
        assert self._driver is not None
        step = 0
        while True:
            await asyncio.sleep(STEP_S / self.speed)
            step += 1
            try:
                for ch, target in enumerate(self.targets(step)):
                    if ch in self._held:
                        continue
                    self.commanded[ch] = target
                    await self._driver.set_target(ch, target)
            except (ConnectionError, TimeoutError, RuntimeError) as e:
                # Test faults (hang, reset...) may make a step fail; the next one retries.
                logger.info("simulation: could not step the targets: %s", e)
