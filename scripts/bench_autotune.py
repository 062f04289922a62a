"""Benchmark of the autotune: per plant, the 2 K step figures of
the autotuned gains, of the example gains (kp 0.45, ki 0.012, kd 4.3) and of
the classic Ziegler-Nichols gains taken as printed (per second, which the
firmware reads as per sample), on the simulator with limits 1 A / 1 A / 4 V.

    python scripts/bench_autotune.py [--speed 100] [--seed 1]

Prints a Markdown table (settling to ±10 mK on a 1 s moving mean, overshoot,
steady-state std), figures of the up step (25 -> 27 degC).
"""

import argparse
import asyncio

from thermostat_ctrl import procedures
from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.simulator import PlantParams, Simulator

LIMITS = {"max_i_pos": 1.0, "max_i_neg": 1.0, "max_v": 4.0}
EXAMPLE = {"kp": 0.45, "ki": 0.012, "kd": 4.3}
PLANTS = {"default (20 J/K)": PlantParams(), "light (7 J/K)": PlantParams(heat_capacity=7.0),
          "heavy (80 J/K)": PlantParams(heat_capacity=80.0)}


async def step(driver: Thermostat, gains: dict, output=(-2.0, 2.0)) -> dict:
    await procedures.power_up(driver, 0, 25.0, **gains)
    await driver.set_pid_params(0, output_min=output[0], output_max=output[1])
    return (await procedures.step_response(driver, 0, 2.0, band=0.01, duration_s=300,
                                           hold_s=30))["up"]


async def bench(name: str, plant: PlantParams, speed: float, seed: int) -> list:
    async with Simulator(speed=speed, seed=seed, plant=plant) as sim, \
            Thermostat("127.0.0.1", sim.port, timeout=2.0) as driver:
        await driver.set_output_limits(0, **LIMITS)
        tuned = await procedures.autotune(driver, 0, 25.0)
        zn = tuned["rules"]["ziegler-nichols"]["per_second"]  # as the classic rules print them
        rows = []
        for label, gains, output in (
                ("autotune (simc)", tuned["gains"], (tuned["output_min"], tuned["output_max"])),
                ("example gains", EXAMPLE, (-2.0, 2.0)),
                ("anchor ZN as printed", zn, (-2.0, 2.0))):
            try:
                f = await step(driver, gains, output)
            except TimeoutError:  # not even settled at 25 degC before the step
                f = None
            rows.append((name, label, gains, f))
        rows.append((name, "autotune took", None, tuned["duration_s"]))
        return rows


def fmt(x, unit="") -> str:
    return "never" if x is None else "{:.1f}{}".format(x, unit)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    print("| plant | gains | kp | ki | kd | settled ±10 mK | overshoot | std |")
    print("|---|---|---|---|---|---|---|---|")
    for name, plant in PLANTS.items():
        for plant_name, label, gains, f in await bench(name, plant, args.speed, args.seed):
            if gains is None:
                print("| {} | autotune took {:.0f} s (simulated) | | | | | | |".format(
                    plant_name, f))
                continue
            if f is None:
                print("| {} | {} | {:.3g} | {:.3g} | {:.3g} | unstable: never settled at 25"
                      " degC | | |".format(plant_name, label, gains["kp"], gains["ki"],
                                           gains["kd"]))
                continue
            print("| {} | {} | {:.3g} | {:.3g} | {:.3g} | {} | {:.3f} K | {:.1f} mK |".format(
                plant_name, label, gains["kp"], gains["ki"], gains["kd"],
                fmt(f["settling_time_s"], " s"), f["overshoot_k"], 1000 * f["steady_std_k"]))


if __name__ == "__main__":
    asyncio.run(main())
