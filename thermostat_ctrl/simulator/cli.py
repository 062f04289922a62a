"""``thermostat_sim``: run the Thermostat simulator as a stand-alone TCP server.

Prints ``listening on HOST:PORT`` to stdout once ready (after ``control on
HOST:PORT`` with ``--control-port``); logs go to stderr. SIGINT/SIGTERM stop it cleanly (exit status 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Optional, Sequence

from .. import argtypes
from .control import serve_control
from .server import Simulator


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``thermostat_sim``."""
    p = argparse.ArgumentParser(
        prog="thermostat_sim",
        description="Simulated Sinara Thermostat (TEC controller) speaking the TCP line protocol.")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=argtypes.port, default=2323,
                   help="TCP port, 0 picks a free one (default %(default)s; the device uses 23)")
    p.add_argument("--firmware", choices=("2025", "2023"), default="2025",
                   help="protocol dialect (default %(default)s)")
    p.add_argument("--speed", type=argtypes.positive, default=1.0,
                   help="simulated seconds per wall-clock second (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="seed of the measurement noise")
    p.add_argument("--flash", metavar="FILE", default=None,
                   help="persist the config flash (save/ipv4) to this JSON file")
    p.add_argument("--delay-ms", type=argtypes.non_negative, default=0.0,
                   help="fault: delay every reply by this many milliseconds")
    p.add_argument("--hang", action="store_true", help="fault: read commands but never reply")
    p.add_argument("--unplug", type=int, choices=(0, 1), action="append", default=[],
                   metavar="CH", help="fault: channel without thermistor (repeatable)")
    p.add_argument("--short", type=int, choices=(0, 1), action="append", default=[],
                   metavar="CH", help="fault: channel with a shorted thermistor (repeatable)")
    p.add_argument("--tec-open", type=int, choices=(0, 1), action="append", default=[],
                   metavar="CH", help="fault: channel with its TEC disconnected (repeatable)")
    p.add_argument("--overheat", type=int, choices=(0, 1), action="append", default=[],
                   metavar="CH", help="fault: channel whose heat sink overheats (repeatable)")
    p.add_argument("--ambient-drift", type=argtypes.number, default=0.0, metavar="K_PER_H",
                   help="fault: ambient drifting by this much per simulated hour")
    p.add_argument("--control-port", type=argtypes.port, default=None, metavar="PORT",
                   help="switch faults at run time over this loopback TCP port (0: a free"
                        " one, printed as 'control on HOST:PORT'); send 'show' for the"
                        " commands")
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only log errors")
    return p


async def _serve(args: argparse.Namespace) -> None:
    sim = Simulator(firmware=args.firmware, speed=args.speed, seed=args.seed,
                    flash_path=args.flash)
    sim.faults.delay_ms = args.delay_ms
    sim.faults.hang = args.hang
    sim.faults.unplugged = set(args.unplug)
    sim.faults.shorted = set(args.short)
    sim.faults.tec_open = set(args.tec_open)
    sim.faults.overheat = set(args.overheat)
    sim.faults.ambient_drift = args.ambient_drift
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await sim.start(args.bind, args.port)
    host = f"[{args.bind}]" if ":" in args.bind else args.bind
    control = None
    if args.control_port is not None:
        control = await serve_control(sim.faults, "127.0.0.1", args.control_port)
        print("control on 127.0.0.1:{}".format(control.sockets[0].getsockname()[1]),
              flush=True)
    print(f"listening on {host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        if control is not None:
            control.close()
        await sim.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``thermostat_sim``."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        logging.getLogger(__name__).error("cannot listen: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
