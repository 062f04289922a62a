"""``thermostat_ctrl``: the Thermostat from a shell at the bench.

    thermostat_ctrl -d 192.168.1.26 report
    thermostat_ctrl --simulation autotune 0 --target 25
    thermostat_ctrl -d 192.168.1.26 set-target 0 30 --ramp 0.05

Bad input is one line naming the argument and exit status 2; a device or
procedure error is one line and exit status 1; Ctrl-C during a procedure
restores the channel and exits with 130.
"""

import argparse
import asyncio
import json
import sys
from typing import Optional, Sequence

from . import argtypes, procedures
from .driver import Thermostat
from .simulator import PlantParams, Simulator
from .simulator.physics import HEAT_CAPACITY, LEAK, SENSOR_LAG

__all__ = ["main", "build_parser"]

#: Output limits of the ``--simulation`` bench device (a real one boots with 0).
SIM_LIMITS = {"max_i_pos": 1.0, "max_i_neg": 1.0, "max_v": 4.0}
GET_TOPICS = ("output", "pid", "b-parameter", "postfilter", "fan", "hwrev", "ipv4")
REPORT_ROWS = ("temperature", "pid_engaged", "i_set", "tec_i", "tec_u_meas", "pid_output",
               "time", "interval")


class UsageError(Exception):
    """Bad input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def _plant_value(text: str) -> tuple:
    """``VALUE`` (both channels) or ``CH:VALUE``."""
    ch, sep, value = text.rpartition(":")
    channels = (0, 1) if not sep else (argtypes.channel(ch),)
    return channels, argtypes.number(value)


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``thermostat_ctrl``."""
    p = _Parser(prog="thermostat_ctrl", description="Sinara Thermostat at the bench.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-d", "--device", type=argtypes.address, metavar="HOST[:PORT]",
                       help="address of the Thermostat (port 23 when omitted)")
    which.add_argument("--simulation", action="store_true",
                       help="a simulated device in this process, output limits 1 A, 1 A, 4 V")
    p.add_argument("--firmware", choices=("auto", "2023", "2025"), default="auto",
                   help="firmware dialect (default: detected; simulated: 2025)")
    p.add_argument("--timeout", type=argtypes.positive, default=5.0,
                   help="seconds allowed per reply (default %(default)s)")
    sim = p.add_argument_group("simulation", "with --simulation; VALUE or CH:VALUE")
    sim.add_argument("--speed", type=argtypes.positive, default=1.0,
                     help="simulated seconds per real second (default %(default)s)")
    sim.add_argument("--heat-capacity", type=_plant_value, action="append", default=[],
                     metavar="[CH:]J_PER_K", help="default {}".format(HEAT_CAPACITY))
    sim.add_argument("--thermal-resistance", type=_plant_value, action="append", default=[],
                     metavar="[CH:]K_PER_W", help="to ambient, default {}".format(1 / LEAK))
    sim.add_argument("--sensor-lag", type=_plant_value, action="append", default=[],
                     metavar="[CH:]S", help="thermistor time constant, default {}".format(
                         SENSOR_LAG))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    def command(name: str, help: str, channel: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        if channel:
            c.add_argument("channel", type=argtypes.channel, help="0 or 1")
        return c

    def window(c: argparse.ArgumentParser) -> None:
        c.add_argument("--safe-window", type=argtypes.number, nargs=2, metavar=("LOW", "HIGH"),
                       default=procedures.SAFE_WINDOW,
                       help="allowed targets in degC (default %(default)s)")

    c = command("report", "both channels' state, as a table", channel=False)
    c.add_argument("--json", action="store_true", help="print JSON instead")
    c = command("get", "a setting of both channels, as JSON", channel=False)
    c.add_argument("topic", choices=GET_TOPICS)
    c = command("set-target", "set the PID target (degC), at once or ramped")
    c.add_argument("target", type=argtypes.number)
    c.add_argument("--ramp", type=argtypes.positive, metavar="K_PER_S",
                   help="move the target there at this rate (K/s), one step per sample;"
                        " Ctrl-C stops it where it is")
    window(c)
    c = command("set-pid", "set PID gains (per sample) and output range (A)")
    for name in ("kp", "ki", "kd", "output-min", "output-max"):
        c.add_argument("--" + name, type=argtypes.number)
    c = command("set-limits", "set output limits")
    for name in ("max-i-pos", "max-i-neg", "max-v"):
        c.add_argument("--" + name, type=argtypes.number)
    c = command("set-current", "drive a fixed current (A, positive cools; disengages the PID)")
    c.add_argument("amps", type=argtypes.number)
    command("engage", "hand the output to the PID")
    c = command("power-up", "limits, gains, target, then engage the PID")
    c.add_argument("target", type=argtypes.number)
    for name in ("kp", "ki", "kd", "max-i-pos", "max-i-neg", "max-v"):
        c.add_argument("--" + name, type=argtypes.number)
    window(c)
    c = command("wait-settled", "wait until within tolerance of the target")
    c.add_argument("--tolerance", type=argtypes.positive, default=0.01, help="K (default %(default)s)")
    c.add_argument("--settle-s", type=argtypes.number, default=10.0, help="default %(default)s")
    c.add_argument("--timeout-s", type=argtypes.positive, default=600.0, help="default %(default)s")
    c = command("autotune", "relay autotune; Ctrl-C aborts and restores the channel")
    c.add_argument("--target", type=argtypes.number, required=True, help="degC")
    c.add_argument("--rule", choices=procedures.RULE_NAMES, default=procedures.DEFAULT_RULE,
                   help="default %(default)s")
    c.add_argument("--amplitude", type=argtypes.positive, help="relay swing cap (A)")
    c.add_argument("--hysteresis", type=argtypes.positive, help="noise band (K; default measured)")
    c.add_argument("--window", type=argtypes.positive, default=3.0, help="K (default %(default)s)")
    c.add_argument("--timeout-s", type=argtypes.positive, default=1800.0, help="default %(default)s")
    c.add_argument("--apply", action="store_true", help="write the gains")
    c.add_argument("--engage", action="store_true", help="with --apply: regulate at target")
    c.add_argument("--save", action="store_true", help="with --apply: save to flash")
    c.add_argument("--json", action="store_true", help="print the whole result as JSON")
    window(c)
    c = command("step-test", "a target step of DELTA K and back, with its figures")
    c.add_argument("delta", type=argtypes.number)
    c.add_argument("--band", type=argtypes.positive, default=0.01, help="K (default %(default)s)")
    c.add_argument("--duration-s", type=argtypes.positive, default=300.0, help="default %(default)s")
    c.add_argument("--hold-s", type=argtypes.positive, default=30.0, help="default %(default)s")
    c.add_argument("--no-back", action="store_true", help="stay at the stepped target")
    c.add_argument("--target", type=argtypes.number, help="power up at this target first (degC)")
    for name in ("kp", "ki", "kd"):
        c.add_argument("--" + name, type=argtypes.number, help="with --target")
    c.add_argument("--json", action="store_true", help="print the result with its data")
    window(c)
    for name, what in (("save", "save"), ("load", "load")):
        c = command(name, "{} configuration (both channels unless CH)".format(what),
                    channel=False)
        c.add_argument("channel", type=argtypes.channel, nargs="?")
    command("reset", "reboot the device", channel=False)
    return p


def _plants(args: argparse.Namespace) -> tuple:
    values = [{}, {}]
    for key in ("heat_capacity", "thermal_resistance", "sensor_lag"):
        for channels, value in getattr(args, key):
            for ch in channels:
                values[ch][key] = value
    try:
        return tuple(PlantParams(**v) for v in values)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


def _table(reports: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("", "channel 0", "channel 1")
    for key in REPORT_ROWS:
        table.add_row(key, *(_cell(r.get(key)) for r in reports))
    Console().print(table)


def _cell(value) -> str:
    if isinstance(value, float):
        return "{:.4f}".format(value)
    return "-" if value is None else str(value)


async def _autotune(d: Thermostat, args: argparse.Namespace) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=_stderr_console()) as bar:
        task = bar.add_task("starting", total=None)

        def show(p: dict) -> None:
            remaining = p.get("remaining_s")
            total = None if remaining is None else p["elapsed_s"] + remaining
            text = "{} {:.0f} s".format(p["state"], p["elapsed_s"])
            if p.get("cycles"):
                text += ", {} cycles, amplitude {:.3f} K, period {:.1f} s".format(
                    p["cycles"], p["amplitude"], p["period"])
            bar.update(task, description=text, total=total, completed=p["elapsed_s"])

        result = await procedures.autotune(
            d, args.channel, args.target, rule=args.rule, amplitude=args.amplitude,
            hysteresis=args.hysteresis, window=args.window, timeout_s=args.timeout_s,
            apply=args.apply, engage=args.engage, save=args.save,
            safe_window=tuple(args.safe_window), on_progress=show)
    if args.json:
        _print_json(result)
        return
    g, s, m = result["gains"], result["gains_per_second"], result["model"]
    print("rule {}: kp {:.6g}  ki {:.6g}  kd {:.6g}  (per sample, Ts {:.4f} s)".format(
        result["rule"], g["kp"], g["ki"], g["kd"], result["sample_period_s"]))
    print("per second: kp {:.6g} A/K  Ki {:.6g} A/(K s)  Kd {:.6g} A s/K".format(
        s["kp"], s["ki"], s["kd"]))
    print("output_min {:.3g} A  output_max {:.3g} A".format(result["output_min"],
                                                          result["output_max"]))
    print("Ku {:.4g} A/K  Pu {:.4g} s  model K {:.4g} K/A T {:.4g} s L {:.4g} s".format(
        result["ku"], result["pu"], m["K"], m["T"], m["L"]))
    print("noise {:.2g} K  cycles {}  operating current {:.3f} A  {:.0f} s; {}".format(
        result["noise_k"], result["cycles"], result["operating_current_a"],
        result["duration_s"], "applied" if result["applied"] else "not applied (--apply)"))


def _stderr_console():
    from rich.console import Console
    return Console(stderr=True)


async def _step(d: Thermostat, args: argparse.Namespace) -> None:
    if args.target is not None:
        await procedures.power_up(d, args.channel, args.target, args.kp, args.ki, args.kd,
                                  safe_window=tuple(args.safe_window))
    elif any(v is not None for v in (args.kp, args.ki, args.kd)):
        raise UsageError("argument --kp/--ki/--kd: give --target too")
    result = await procedures.step_response(
        d, args.channel, args.delta, band=args.band, duration_s=args.duration_s,
        hold_s=args.hold_s, back=not args.no_back, safe_window=tuple(args.safe_window))
    if args.json:
        _print_json(result)
        return
    for name in ("up", "down"):
        f = result[name]
        if f is None:
            continue
        settle = f["settling_time_s"]
        print("{:4} rise {}  overshoot {:.4f} K  settled (±{} K) {}  std {:.4f} K".format(
            name, "-" if f["rise_time_s"] is None else "{:.1f} s".format(f["rise_time_s"]),
            f["overshoot_k"], args.band, "never" if settle is None else "{:.1f} s".format(settle),
            f["steady_std_k"]))


async def _ramp(d: Thermostat, args: argparse.Namespace) -> None:
    seen = {}
    try:
        done = await procedures.ramp(d, args.channel, args.target, args.ramp,
                                     safe_window=tuple(args.safe_window),
                                     on_progress=seen.update)
    except asyncio.CancelledError:
        if "setpoint" in seen:
            print("thermostat_ctrl: ramp stopped; the target stays at {:.4f} degC".format(
                seen["setpoint"]), file=sys.stderr)
        raise
    print("target {} degC reached from {} degC at {} K/s in {:.1f} s ({} steps)".format(
        done["target"], done["start"], done["rate"], done["duration_s"], done["steps"]))


async def _run(d: Thermostat, args: argparse.Namespace) -> None:
    ch = getattr(args, "channel", None)
    cmd = args.command
    if cmd == "report":
        reports = await d.report()
        _print_json(reports) if args.json else _table(reports)
    elif cmd == "get":
        topic = args.topic
        if topic == "b-parameter":
            _print_json(await procedures.get_b_parameter(d))
        else:
            _print_json(await getattr(d, "get_" + topic)())
    elif cmd == "set-target" and args.ramp is not None:
        await _ramp(d, args)
    elif cmd == "set-target":
        procedures.check_target(args.target, tuple(args.safe_window))
        await d.set_target(ch, args.target)
    elif cmd == "set-pid":
        await d.set_pid_params(ch, args.kp, args.ki, args.kd, args.output_min, args.output_max)
    elif cmd == "set-limits":
        await d.set_output_limits(ch, args.max_i_pos, args.max_i_neg, args.max_v)
    elif cmd == "set-current":
        await d.set_current(ch, args.amps)
    elif cmd == "engage":
        await d.engage_pid(ch)
    elif cmd == "power-up":
        result = await procedures.power_up(d, ch, args.target, args.kp, args.ki, args.kd,
                                           args.max_i_pos, args.max_i_neg, args.max_v,
                                           safe_window=tuple(args.safe_window))
        if "warning" in result:
            print("warning: " + result["warning"], file=sys.stderr)
    elif cmd == "wait-settled":
        done = await procedures.wait_settled(d, ch, args.tolerance, args.settle_s,
                                             args.timeout_s)
        print("settled at {:.4f} degC (target {} degC) after {:.1f} s".format(
            done["temperature"], done["target"], done["waited_s"]))
    elif cmd == "autotune":
        await _autotune(d, args)
    elif cmd == "step-test":
        await _step(d, args)
    elif cmd == "save":
        await d.save_config(ch)
    elif cmd == "load":
        await d.load_config(ch)
    elif cmd == "reset":
        await d.reset()


async def _session(args: argparse.Namespace, plants: tuple) -> None:
    sim = None
    if args.simulation:
        sim = Simulator(firmware="2023" if args.firmware == "2023" else "2025",
                        speed=args.speed, plant=plants)
        host, port = "127.0.0.1", await sim.start("127.0.0.1", 0)
    else:
        host, port = args.device
    try:
        async with Thermostat(host, port, timeout=args.timeout, firmware=args.firmware) as d:
            if sim is not None:
                for ch in (0, 1):
                    await d.set_output_limits(ch, **SIM_LIMITS)
            await _run(d, args)
    finally:
        if sim is not None:
            await sim.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``thermostat_ctrl``; returns the exit status."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        sim_options = [o for o in ("heat_capacity", "thermal_resistance", "sensor_lag")
                       if getattr(args, o)]
        if not args.simulation and (sim_options or args.speed != 1.0):
            raise UsageError("argument --{}: only with --simulation".format(
                (sim_options or ["speed"])[0].replace("_", "-")))
        plants = _plants(args)
        asyncio.run(_session(args, plants))
    except UsageError as e:
        print("thermostat_ctrl: error: {}".format(e), file=sys.stderr)
        return 2
    except ValueError as e:
        print("thermostat_ctrl: error: {}".format(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if getattr(args, "ramp", None) is None:  # a ramp said where it stopped
            print("thermostat_ctrl: interrupted; the channel was restored", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, NotImplementedError) as e:  # device, connection, procedure
        print("thermostat_ctrl: {}".format(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
