"""Shared fixtures of the procedure, autotune and CLI tests: a simulator with
the bench limits (1 A cooling, 1 A heating, 4 V) and a driver."""

import contextlib
from typing import AsyncIterator, NamedTuple

from harness import tuned_like_a_bridge
from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.simulator import PlantParams, Simulator

LIMITS = {"max_i_pos": 1.0, "max_i_neg": 1.0, "max_v": 4.0}
EXAMPLE_GAINS = {"kp": 0.45, "ki": 0.012, "kd": 4.3}
#: The default plant and plants of about a third and four times its heat capacity.
PLANTS = {"default": PlantParams(), "light": PlantParams(heat_capacity=7.0),
          "heavy": PlantParams(heat_capacity=80.0)}


class Bench(NamedTuple):
    sim: Simulator
    driver: Thermostat


@contextlib.asynccontextmanager
async def bench(speed: float = 100.0, plant: PlantParams = PlantParams(), seed: int = 1,
                limits: bool = True) -> AsyncIterator[Bench]:
    """A simulator at ``speed`` with ``plant`` on both channels, and a driver;
    the bench limits set on both channels unless ``limits`` is False."""
    tuned_like_a_bridge()
    sim = Simulator(speed=speed, seed=seed, plant=plant)
    await sim.start("127.0.0.1", 0)
    driver = Thermostat("127.0.0.1", sim.port, timeout=1.0, backoff_max=0.1)
    try:
        if limits:
            for ch in (0, 1):
                await driver.set_output_limits(ch, **LIMITS)
        yield Bench(sim, driver)
    finally:
        await driver.close()
        await sim.stop()


async def state(driver: Thermostat, ch: int) -> dict:
    """What a procedure must leave as it found it."""
    pid = (await driver.get_pid())[ch]
    out = (await driver.get_output())[ch]
    rep = (await driver.report())[ch]
    return {"engaged": rep["pid_engaged"], "target": pid["target"], **pid["parameters"],
            "i_set": None if rep["pid_engaged"] else out["i_set"]}
