"""``thermostat_bridge``: serve a lab's Thermostats (or simulated ones) over HTTP.

    thermostat_bridge --simulation 3
    thermostat_bridge -d laser=10.0.0.5 -d cavity=10.0.0.6 --data-dir /var/lib/thermostat-bridge
    thermostat_bridge --config bridge.toml
    thermostat_bridge import old-server.csv --device laser --data-dir /var/lib/thermostat-bridge
    thermostat_bridge stability --device laser --channel 0 --from 2026-11-01 --to 2026-12-01

The HTTP port is bound and the data directory locked before anything is
polled or written: a second bridge on the same directory, or on a port in
use, exits with status 2 and one line.
"""

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import Optional, Sequence

import uvicorn

from .. import argtypes
from . import config as bridge_config
from .config import ENV_PREFIX, BridgeConfig, parse_fields
from .import_cli import main as import_main
from .runtime import Bridge, tune_process
from .web.app import create_app

logger = logging.getLogger("thermostat_bridge")

#: Variables that give the devices instead of the command line.
_DEVICE_VARIABLES = tuple(ENV_PREFIX + name for name in ("DEVICES", "DEVICE", "SIMULATION",
                                                         "CONFIG"))

PROG = "thermostat_bridge"


def get_argparser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Poll Sinara Thermostats, log their readings to daily CSV files and serve"
                    " them over HTTP (/docs, /devices, /data.csv, /series, /report, /metrics)."
                    " 'thermostat_bridge import --help': import the original server's CSV;"
                    " 'thermostat_bridge stability --help': a channel's stability figures.")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("-d", "--device", metavar="[NAME=]HOST[:PORT]", action="append",
                        help="a Thermostat (port 23 by default); repeat for each device of the"
                             " lab. Unnamed devices are thermostat0, thermostat1, ...")
    device.add_argument("--simulation", nargs="?", type=int, const=1, metavar="N",
                        help="poll N built-in simulated devices (default 1) instead")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="devices and settings from a TOML file; options given here win")
    parser.add_argument("--speed", type=float, metavar="K",
                        help="with --simulation: simulated time runs K times faster (default 1)")
    parser.add_argument("--bind",
                        help="address to serve HTTP on (default 127.0.0.1); any other than"
                             " loopback needs a token")
    parser.add_argument("--token",
                        help="bearer token POST endpoints require (default: ${}TOKEN, which"
                             " keeps it out of the process list)".format(ENV_PREFIX))
    parser.add_argument("--protect-reads", action="store_true", default=None,
                        help="require the token for GET endpoints too")
    parser.add_argument("--write-token-file", metavar="FILE",
                        default=os.environ.get(ENV_PREFIX + "WRITE_TOKEN_FILE") or None,
                        help="'NAME TOKEN' lines: the tokens that may change the devices"
                             " (PUT/POST /devices/...), each under its name in the audit trail"
                             " (default: ${}WRITE_TOKEN_FILE; without it the bridge is"
                             " read-only)".format(ENV_PREFIX))
    parser.add_argument("--port", type=int,
                        help="HTTP port (default 8000; 0 picks a free one)")
    parser.add_argument("--data-dir",
                        help="directory of the CSV files, one folder per device"
                             " (default ./thermostat-data)")
    parser.add_argument("--adopt", action="store_true", default=None,
                        help="append to device folders whose device.json records another"
                             " device (a simulation, another address); without it the"
                             " bridge refuses to start")
    parser.add_argument("--poll-period", type=float, metavar="S",
                        help="seconds between polls of each device (default 1.0)")
    parser.add_argument("--memory-s", type=float, metavar="S",
                        help="seconds of readings kept in memory (default 600)")
    parser.add_argument("--fields", metavar="F1,F2,...",
                        help="report fields to record (default: every numeric or boolean one)")
    parser.add_argument("--firmware", choices=("auto", "2023", "2025"),
                        help="firmware dialect (default: detect)")
    sinks = parser.add_argument_group(
        "InfluxDB / VictoriaMetrics", "push every sample; credentials come from ${0}INFLUX_TOKEN"
        "(_FILE) or ${0}INFLUX_USER and ${0}INFLUX_PASSWORD(_FILE)".format(ENV_PREFIX))
    sinks.add_argument("--influx", metavar="URL", action="append",
                       help="a write endpoint, http://HOST:8086/write?db=NAME or"
                            " http://HOST:8086/api/v2/write?org=ORG&bucket=NAME; repeat for"
                            " several (default: ${}INFLUX, comma-separated)".format(ENV_PREFIX))
    sinks.add_argument("--influx-spool-mb", type=float, metavar="MB",
                       help="disk kept per sink for points not yet written (default 256)")
    sinks.add_argument("--influx-batch-points", type=int, metavar="N",
                       help="send once N points wait (default 5000)...")
    sinks.add_argument("--influx-batch-s", type=float, metavar="S",
                       help="...or once the oldest has waited S seconds (default 1)")
    sinks.add_argument("--influx-measurement", metavar="NAME",
                       help="measurement of the points (default thermostat)")
    parser.add_argument("--artiq-master", metavar="HOST[:PORT]",
                        help="publish live datasets to this ARTIQ master (control port, 3251"
                             " by default) for the dashboard's applets (default:"
                             " ${}ARTIQ_MASTER)".format(ENV_PREFIX))
    alarms = parser.add_argument_group(
        "alarms", "rules and their settings: the [alarms] tables of the TOML file")
    alarms.add_argument("--notify", metavar="URL", action="append",
                        help="send alarms (raised, cleared) to this Apprise URL: mailto://...,"
                             " json://HOST:PORT/PATH, slack://..., ntfy://...; repeat for"
                             " several (default: ${}NOTIFY, separated by spaces)".format(
                                 ENV_PREFIX))
    summary = parser.add_argument_group(
        "stability summary", "per device and channel, the period's stability figures and alarms"
        " in one line; written to the data directory and sent through --notify")
    summary.add_argument("--summary-at", metavar="HH:MM",
                         help="make it at this time of day (UTC); off by default")
    summary.add_argument("--summary-period-s", type=float, metavar="S",
                         help="of the last S seconds, every S seconds (default 86400)")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0,
                           help="debug output (-vv: also the HTTP access log)")
    verbosity.add_argument("-q", "--quiet", action="count", default=0,
                           help="only warnings (-qq: only errors)")
    return parser


def settings_from_args(args: argparse.Namespace) -> dict:
    """The settings the command line gives (None where an option is not given;
    :func:`~.config.load` puts them over the file's and the environment's)."""
    try:
        fields = parse_fields(args.fields)
    except ValueError as e:
        raise ValueError("--fields: {}".format(e)) from None
    return {
        "config": args.config, "devices": args.device, "simulation": args.simulation,
        "speed": args.speed, "bind": args.bind, "token": args.token,
        "protect_reads": args.protect_reads, "write_token_file": args.write_token_file,
        "adopt": args.adopt, "port": args.port,
        "data_dir": args.data_dir,
        "poll_period": args.poll_period, "memory_s": args.memory_s, "fields": fields,
        "firmware": args.firmware, "influx": args.influx,
        "influx_spool_mb": args.influx_spool_mb, "influx_batch_points": args.influx_batch_points,
        "influx_batch_s": args.influx_batch_s, "influx_measurement": args.influx_measurement,
        "notify": args.notify, "artiq_master": args.artiq_master,
        "summary_at": args.summary_at, "summary_period_s": args.summary_period_s,
    }


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BridgeConfig:
    """The :class:`BridgeConfig` of parsed arguments and the environment; one
    line and exit status 2 when it is invalid."""
    if args.device is None and args.simulation is None and args.config is None \
            and not any(os.environ.get(name, "").strip() for name in _DEVICE_VARIABLES):
        parser.error("give the devices: -d/--device, --simulation or --config")
    try:
        return bridge_config.load(settings_from_args(args), os.environ)
    except ValueError as e:  # ExposureError among them: before anything is bound
        argtypes.fail(PROG, e)


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening); OSError
    with the address when it cannot be bound."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise OSError("cannot serve on {}:{}: {}".format(host, port, e.strerror or e)) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise OSError("cannot serve on {}:{}: {}".format(host, port, e.strerror or e)) from None
    return sock


async def serve(server: uvicorn.Server, sock: socket.socket, bridge: Bridge) -> int:
    """Run ``server`` until it exits or polling stops for good; exit status."""
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        # uvicorn offers no readiness event; this wait is cheap and brief.
        await asyncio.wait([serving], timeout=0.02)
    if server.started:
        tune_process()
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        logger.info("serving %d device(s) on http://%s:%d (live view: http://%s:%d/, API docs:"
                    " http://%s:%d/docs)", len(bridge.devices), host, port, host, port, host,
                    port)
        failed = asyncio.ensure_future(bridge.failed.wait())
        await asyncio.wait([serving, failed], return_when=asyncio.FIRST_COMPLETED)
        failed.cancel()
    if not serving.done():
        server.should_exit = True
    await serving
    if bridge.fatal is not None:
        logger.error("%s", bridge.fatal)
    return 0 if server.started and bridge.fatal is None else 1


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``thermostat_bridge`` (and of ``thermostat_bridge import``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["import"]:
        return import_main(argv[1:])
    if argv[:1] == ["stability"]:
        from .stability_cli import main as stability_main
        return stability_main(argv[1:])
    parser = get_argparser()
    args = parser.parse_args(argv)
    config = config_from_args(parser, args)
    level = logging.INFO + 10 * (args.quiet - min(args.verbose, 1))
    logging.basicConfig(level=level, format="%(levelname)s:%(name)s: %(message)s")
    if not args.verbose:
        # The simulator logs every connection; only -v wants that.
        logging.getLogger("thermostat_ctrl.simulator").setLevel(max(level, logging.WARNING))
        # httpx logs every request of the sinks at INFO.
        logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
        # Apprise warns of each failed delivery; the notifier says it once, with the retry.
        logging.getLogger("apprise").setLevel(max(level, logging.ERROR))
    try:
        sock = bind_socket(config.bind, config.port)
    except OSError as e:
        argtypes.fail(PROG, e)
    try:
        app = create_app(config)
    except OSError as e:
        sock.close()
        argtypes.fail(PROG, e)
    # asyncio's own loop even where uvloop is installed: the built-in
    # simulator runs in it and relies on asyncio's transports.
    server = uvicorn.Server(uvicorn.Config(
        app, loop="asyncio", log_config=None, access_log=args.verbose >= 2, lifespan="on"))
    try:
        status = asyncio.run(serve(server, sock, app.state.bridge))
    except KeyboardInterrupt:
        status = 0  # uvicorn re-raises the SIGINT it handled, after a clean shutdown
    sys.exit(status)


if __name__ == "__main__":
    main()
