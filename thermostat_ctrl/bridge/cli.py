"""``thermostat_bridge``: serve one Thermostat (or the simulator) over HTTP.

    thermostat_bridge --simulation
    thermostat_bridge -d 192.168.1.26 --data-dir /var/lib/thermostat-bridge
"""

import argparse
import asyncio
import logging
import os
import sys
from typing import Optional, Sequence

import uvicorn

from .app import create_app
from .config import ENV_PREFIX, BridgeConfig, ExposureError, parse_fields
from .runtime import Bridge

logger = logging.getLogger("thermostat_bridge")


def get_argparser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="thermostat_bridge",
        description="Poll a Sinara Thermostat, log its readings to daily CSV files and serve"
                    " them over HTTP (/docs, /data.csv, /series, /report, /metrics).")
    device = parser.add_mutually_exclusive_group(required=True)
    device.add_argument("-d", "--device", metavar="HOST[:PORT]",
                        help="the Thermostat's address (port 23 by default)")
    device.add_argument("--simulation", action="store_true",
                        help="poll the built-in simulator instead of a device")
    parser.add_argument("--speed", type=float, default=1.0, metavar="K",
                        help="with --simulation: simulated time runs K times faster (default 1)")
    parser.add_argument("--bind", default="127.0.0.1",
                        help="address to serve HTTP on (default 127.0.0.1); any other than"
                             " loopback needs a token")
    parser.add_argument("--token", default=os.environ.get(ENV_PREFIX + "TOKEN") or None,
                        help="bearer token POST endpoints require (default: ${}TOKEN, which"
                             " keeps it out of the process list)".format(ENV_PREFIX))
    parser.add_argument("--protect-reads", action="store_true",
                        help="require the token for GET endpoints too")
    parser.add_argument("--port", type=int, default=8000,
                        help="HTTP port (default 8000; 0 picks a free one)")
    parser.add_argument("--data-dir", default="./thermostat-data",
                        help="directory of the daily CSV files (default ./thermostat-data)")
    parser.add_argument("--poll-period", type=float, default=1.0, metavar="S",
                        help="seconds between polls (default 1.0)")
    parser.add_argument("--memory-s", type=float, default=600.0, metavar="S",
                        help="seconds of readings kept in memory (default 600)")
    parser.add_argument("--fields", metavar="F1,F2,...",
                        help="report fields to record (default: every numeric or boolean one)")
    parser.add_argument("--firmware", choices=("auto", "2023", "2025"), default="auto",
                        help="firmware dialect (default: detect)")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0,
                           help="debug output (-vv: also the HTTP access log)")
    verbosity.add_argument("-q", "--quiet", action="count", default=0,
                           help="only warnings (-qq: only errors)")
    return parser


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BridgeConfig:
    """The :class:`BridgeConfig` of parsed arguments; usage error when invalid."""
    try:
        return BridgeConfig(device=args.device, simulation=args.simulation, speed=args.speed,
                            data_dir=args.data_dir, poll_period=args.poll_period,
                            memory_s=args.memory_s, fields=parse_fields(args.fields),
                            firmware=args.firmware, bind=args.bind, token=args.token,
                            protect_reads=args.protect_reads)
    except ExposureError as e:
        # Before anything is bound: one line, exit status 2.
        print("{}: error: {}".format(parser.prog, e), file=sys.stderr)
        sys.exit(2)
    except ValueError as e:
        parser.error(str(e))


async def serve(server: uvicorn.Server, bridge: Bridge) -> int:
    """Run ``server`` until it exits or the poller stops for good; exit status."""
    serving = asyncio.ensure_future(server.serve())
    stopped = asyncio.ensure_future(bridge.poller.stopped.wait())
    while not server.started and not serving.done():
        # uvicorn offers no readiness event; this wait is cheap and brief.
        await asyncio.wait([serving], timeout=0.02)
    if server.started:
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        logger.info("serving on http://%s:%d (API docs: http://%s:%d/docs)", host, port, host, port)
    await asyncio.wait([serving, stopped], return_when=asyncio.FIRST_COMPLETED)
    if not serving.done():
        server.should_exit = True
    await serving
    stopped.cancel()
    if bridge.poller.fatal is not None:
        return 2
    return 0 if server.started else 1


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``thermostat_bridge``."""
    parser = get_argparser()
    args = parser.parse_args(argv)
    config = config_from_args(parser, args)
    level = logging.INFO + 10 * (args.quiet - min(args.verbose, 1))
    logging.basicConfig(level=level, format="%(levelname)s:%(name)s: %(message)s")
    if not args.verbose:
        # The simulator logs every connection; only -v wants that.
        logging.getLogger("thermostat_ctrl.simulator").setLevel(max(level, logging.WARNING))
    try:
        app = create_app(config)
    except OSError as e:
        print("thermostat_bridge: error: {}".format(e), file=sys.stderr)
        sys.exit(2)
    server = uvicorn.Server(uvicorn.Config(
        app, host=args.bind, port=args.port, log_config=None, access_log=args.verbose >= 2,
        lifespan="on"))
    try:
        status = asyncio.run(serve(server, app.state.bridge))
    except KeyboardInterrupt:
        status = 0  # uvicorn re-raises the SIGINT it handled, after a clean shutdown
    sys.exit(status)


if __name__ == "__main__":
    main()
