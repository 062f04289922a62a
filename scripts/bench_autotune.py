"""Benchmark of the autotune: repeatability over noise seeds, and
the judge's 2 K step on light, default and heavy plants.

    python scripts/bench_autotune.py [--speed 20] [--tune-speed 20] [--seeds 5]
                                     [--ramp 0.15] [--plants light,default,heavy]

*Repeatability*: per plant, ``--seeds`` autotunes (default rule) on fresh
simulators with noise seeds 1, 2, ...; the model (K, T, L), the gains and the
output noise they cause, and each figure's spread (largest deviation from the
mean, in %).

*The judge*: a fresh simulator at ``--speed``, limits 1 A / 1 A /
4 V, the channel at 25 degC under the gains being judged for 120 s, then the
target steps to 27 degC.  Settling time: the time after the step from which
the 1 s moving mean of the temperature stays within ±10 mK of 27 degC;
overshoot: the largest excursion of that mean beyond 27 degC.  Each set of
gains is judged twice (noise seeds 101 and 102).  The sets: ours (the first
autotune's default-rule gains and output range), ours with the target
ramped at ``--ramp`` K/s instead of stepped, the example gains (kp 0.45, ki
0.012, kd 4.3) and the vendor client's relay autotune, Ziegler-Nichols as it
prints them (per second, which today's firmware reads as per sample).  The
example and vendor gains keep the PID's output range as the device has it.

Prints Markdown tables.
"""

import argparse
import asyncio
import math
from collections import deque

import numpy as np

from thermostat_ctrl import procedures
from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.procedures import tuning
from thermostat_ctrl.simulator import PlantParams, Simulator

LIMITS = {"max_i_pos": 1.0, "max_i_neg": 1.0, "max_v": 4.0}
EXAMPLE = {"kp": 0.45, "ki": 0.012, "kd": 4.3}
PLANTS = {"light": PlantParams(heat_capacity=7.0), "default": PlantParams(),
          "heavy": PlantParams(heat_capacity=80.0)}
START, END = 25.0, 27.0
HOLD_S = 120.0         # under the gains before the step
AFTER_S = 300.0        # the longest record after the step
SETTLED_HOLD_S = 60.0  # ... ended early once settled this long
JUDGE_SEEDS = (101, 102)


async def tune(plant: PlantParams, speed: float, seed: int) -> dict:
    async with Simulator(speed=speed, seed=seed, plant=plant) as sim, \
            Thermostat("127.0.0.1", sim.port, timeout=2.0) as driver:
        await driver.set_output_limits(0, **LIMITS)
        return await procedures.autotune(driver, 0, START)


async def vendor_autotune(plant: PlantParams, speed: float, seed: int, step: float = 1.0,
                          lookback_s: float = 3.0, noiseband: float = 1.5) -> dict:
    """The vendor client's (PyThermostat's) relay autotune at the
    target 25 degC with its CLI's defaults, on every sample: the relay around
    0 A, peaks as the extremes of the lookback window, success when the
    amplitude of the last peaks deviates by under 5 %; Ziegler-Nichols gains
    per second."""
    async with Simulator(speed=speed, seed=seed, plant=plant) as sim, \
            Thermostat("127.0.0.1", sim.port, timeout=2.0) as driver:
        await driver.set_output_limits(0, **LIMITS)
        heating = True  # output -step until above target + noiseband
        window = peak_type = None
        peaks, stamps = deque(maxlen=5), deque(maxlen=5)
        count = 0
        await driver.set_current(0, -step)
        async for rep in procedures.samples(driver, 0):
            x, now = rep["temperature"], rep["time"]
            if window is None:
                window = deque(maxlen=max(1, round(lookback_s / rep["interval"])))
            if heating and x > START + noiseband:
                heating = False
                await driver.set_current(0, step)
            elif not heating and x < START - noiseband:
                heating = True
                await driver.set_current(0, -step)
            is_max = all(x >= v for v in window)
            is_min = all(x <= v for v in window)
            window.append(x)
            if len(window) < window.maxlen:
                continue
            inflection = False
            if is_max:
                inflection, peak_type = peak_type == -1, 1
            elif is_min:
                inflection, peak_type = peak_type == 1, -1
            if inflection:
                count += 1
                peaks.append(x)
                stamps.append(now)
            if inflection and count > 4:
                p = list(peaks)
                amplitude = sum(abs(a - b) for a, b in zip(p[:-2], p[1:-1])) / 6.0
                spread = 0.5 * (max(p[:-2] + [p[-2]]) - min(p[:-2] + [p[-2]]))
                if (spread - amplitude) / amplitude < 0.05:
                    break
            if count >= 20:
                raise RuntimeError("the vendor autotune did not converge in 20 peaks")
        await driver.set_current(0, 0.0)
    ku = 4.0 * step / (amplitude * math.pi)
    pu = 0.5 * ((stamps[3] - stamps[1]) + (stamps[4] - stamps[2]))
    c0, c1, c2 = tuning.RULES["ziegler-nichols"]
    return {"kp": c0 * ku, "ki": c1 * ku / pu, "kd": c2 * ku * pu, "ku": ku, "pu": pu}


async def judge(plant: PlantParams, speed: float, seed: int, gains: dict,
                output=None, ramp=None) -> dict:
    """The judge's figures of one set of per-sample ``gains``."""
    async with Simulator(speed=speed, seed=seed, plant=plant) as sim, \
            Thermostat("127.0.0.1", sim.port, timeout=2.0) as driver:
        await driver.set_output_limits(0, **LIMITS)
        await procedures.power_up(driver, 0, START, **gains)
        if output is not None:
            await driver.set_pid_params(0, output_min=output[0], output_max=output[1])
        t0 = None
        async for rep in procedures.samples(driver, 0):
            t0 = rep["time"] if t0 is None else t0
            if rep["time"] - t0 >= HOLD_S:
                break
        stepped = asyncio.ensure_future(
            driver.set_target(0, END) if ramp is None
            else procedures.ramp(driver, 0, END, ramp))
        t, y = [], []
        step_t = None
        async for rep in procedures.samples(driver, 0):
            step_t = rep["time"] if step_t is None else step_t
            t.append(rep["time"] - step_t)
            y.append(rep["temperature"])
            if t[-1] >= AFTER_S:
                break
            if stepped.done() and t[-1] > SETTLED_HOLD_S and len(t) % 20 == 0:
                settle = procedures.step_metrics(t, y, START, END)["settling_time_s"]
                if settle is not None and t[-1] - settle >= SETTLED_HOLD_S:
                    break
        await stepped
    return procedures.step_metrics(t, y, START, END)


def spread(values) -> float:
    """Largest deviation from the mean, in % of it."""
    v = np.asarray(values, dtype=float)
    return float(np.max(np.abs(v / v.mean() - 1)) * 100)


def fmt_settle(f: dict) -> str:
    s = f["settling_time_s"]
    return "never" if s is None else "{:.1f} s".format(s)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", type=float, default=20.0, help="the judge's --speed")
    p.add_argument("--tune-speed", type=float, default=20.0, help="the autotunes' --speed")
    p.add_argument("--seeds", type=int, default=5, help="autotunes per plant")
    p.add_argument("--ramp", type=float, default=0.15, help="K/s of the ramped judge")
    p.add_argument("--plants", default=",".join(PLANTS))
    args = p.parse_args()
    plants = args.plants.split(",")
    ours = {}
    print("Repeatability: {} autotunes per plant, noise seeds 1..{}, --speed {:g}\n".format(
        args.seeds, args.seeds, args.tune_speed))
    print("| plant | seed | K (K/A) | T (s) | L (s) | kp | ki | kd | output noise | took |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in plants:
        runs = []
        for seed in range(1, args.seeds + 1):
            try:
                runs.append(await tune(PLANTS[name], args.tune_speed, seed))
            except procedures.ProcedureError as e:  # what a lab would see: no gains
                print("| {} | {} | refused: {} | | | | | | | |".format(name, seed, e))
                continue
            r = runs[-1]
            m, g = r["model"], r["gains"]
            print("| {} | {} | {:.3f} | {:.2f} | {:.3f} | {:.4g} | {:.4g} | {:.4g} |"
                  " {:.1f} mA | {:.0f} s |".format(
                      name, seed, m["K"], m["T"], m["L"], g["kp"], g["ki"], g["kd"],
                      1000 * r["output_noise_a"], r["duration_s"]))
        ours[name] = runs[0]
        cols = [[r["model"][k] for r in runs] for k in ("K", "T", "L")]
        cols += [[r["gains"][k] for r in runs] for k in ("kp", "ki", "kd")]
        print("| {} | spread | {} | | |".format(
            name, " | ".join("±{:.1f} %".format(spread(c)) for c in cols)))
    print("\nThe judge: 25 -> 27 degC, --speed {:g}, each set judged twice (seeds {}, {})\n"
          .format(args.speed, *JUDGE_SEEDS))
    print("| plant | gains | kp | ki | kd | settled ±10 mK | overshoot |")
    print("|---|---|---|---|---|---|---|")
    for name in plants:
        plant = PLANTS[name]
        r = ours[name]
        vendor = await vendor_autotune(plant, args.tune_speed, 1)
        vendor_gains = {k: vendor[k] for k in ("kp", "ki", "kd")}
        output = (r["output_min"], r["output_max"])
        sets = [("ours (designed)", r["gains"], output, None),
                ("ours, ramp {:g} K/s".format(args.ramp), r["gains"], output, args.ramp),
                ("example gains", EXAMPLE, None, None),
                ("vendor relay autotune (ZN as printed)", vendor_gains, None, None)]
        for label, gains, out, rate in sets:
            figures = [await judge(plant, args.speed, seed, gains, out, rate)
                       for seed in JUDGE_SEEDS]
            print("| {} | {} | {:.4g} | {:.4g} | {:.4g} | {} | {} |".format(
                name, label, gains["kp"], gains["ki"], gains["kd"],
                " / ".join(fmt_settle(f) for f in figures),
                " / ".join("{:.0f} mK".format(1000 * f["overshoot_k"]) for f in figures)))


if __name__ == "__main__":
    asyncio.run(main())
