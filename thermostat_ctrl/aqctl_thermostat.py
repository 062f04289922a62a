"""ARTIQ controller for the Sinara Thermostat (``aqctl_thermostat``).

Serves :class:`thermostat_ctrl.rpc.ThermostatRPC` as sipyco RPC target
``thermostat`` (or one target per device, ``-d NAME=HOST`` repeated) on the
same asyncio loop as the drivers, with
``allow_parallel=True``: the driver's lock serialises device exchanges, so a
long call (``wait_settled``) never holds up another client or the controller
manager's ``ping``.  The controller serves even while the device is
unreachable; the driver reconnects when it comes back.

sipyco is imported lazily: it is an optional dependency (the ``artiq`` extra).
"""

import argparse
import asyncio
import logging
import sys

from . import argtypes, procedures, protocol
from .driver import Thermostat
from .rpc import PublicMethods, ThermostatRPC

logger = logging.getLogger(__name__)

DEFAULT_PORT = 3277
TARGET_NAME = "thermostat"
MISSING_SIPYCO = ("aqctl_thermostat needs sipyco, which is not installed (it is not on PyPI): "
                  "pip install git+https://github.com/m-labs/sipyco, or use the nix flake in nix/")


def get_argparser() -> argparse.ArgumentParser:
    """Command-line parser of ``aqctl_thermostat`` (needs sipyco)."""
    from sipyco import common_args

    parser = argparse.ArgumentParser(
        description="ARTIQ controller for the Sinara Thermostat (RPC target {!r})".format(
            TARGET_NAME))
    device = parser.add_argument_group("device")
    which = device.add_mutually_exclusive_group(required=True)
    which.add_argument("-d", "--device", type=argtypes.named_address, action="append",
                       metavar="[NAME=]HOST[:PORT]",
                       help="address of the Thermostat (port 23 when omitted), served as RPC"
                            " target NAME ({!r} without one); repeat with a NAME for each"
                            " device of one controller".format(TARGET_NAME))
    which.add_argument("--simulation", nargs="*", metavar="NAME",
                       help="serve the built-in simulator (in this process) instead of a"
                            " device: one as target {!r}, or one per NAME given".format(
                                TARGET_NAME))
    device.add_argument("--firmware", choices=("auto", "2023", "2025"), default="auto",
                        help="firmware dialect, detected on connect by default; with"
                             " --simulation also the simulated firmware (default 2025)")
    device.add_argument("--timeout", type=argtypes.positive, default=5.0,
                        help="seconds allowed for connecting and for each reply"
                             " (default: %(default)s)")
    device.add_argument("--speed", type=argtypes.positive, default=None,
                        help="with --simulation: simulated seconds per real second (default 1)")
    device.add_argument("--safe-window", type=argtypes.number, nargs=2, metavar=("LOW", "HIGH"),
                        default=procedures.SAFE_WINDOW,
                        help="refuse targets outside LOW..HIGH degC, however they are set"
                             " (default: %(default)s)")
    try:
        common_args.simple_network_args(parser, DEFAULT_PORT, ssl=True)
    except TypeError:  # sipyco < 1.9 has no TLS support
        common_args.simple_network_args(parser, DEFAULT_PORT)
    common_args.verbosity_args(parser)
    return parser


def _ssl_config(ssl_args: list):
    try:
        from sipyco.tools import SimpleSSLConfig
    except ImportError:  # sipyco < 1.10 names the module asyncio_tools
        from sipyco.asyncio_tools import SimpleSSLConfig
    return SimpleSSLConfig(*ssl_args)


def devices_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list:
    """``[(target name, (host, port) or None for a simulator)]`` of the
    arguments; a usage error for unnamed or repeated names among several."""
    if args.simulation is not None:
        entries = [(name, None) for name in args.simulation] or [(None, None)]
        for name in args.simulation:
            if not argtypes.TARGET_NAME.match(name):
                parser.error("argument --simulation: name {!r} must be letters, digits, '_',"
                             " '.' or '-'".format(name))
    else:
        entries = args.device
    if len(entries) == 1:
        name, address = entries[0]
        return [(name or TARGET_NAME, address)]
    if any(name is None for name, _ in entries):
        parser.error("several devices need a name each: -d NAME=HOST[:PORT]")
    names = [name for name, _ in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        parser.error("device name {} given more than once".format(", ".join(repeated)))
    return entries


def main():
    """Entry point of ``aqctl_thermostat``."""
    try:
        from sipyco import common_args
        from sipyco.pc_rpc import simple_server_loop
    except ImportError:
        print(MISSING_SIPYCO, file=sys.stderr)
        sys.exit(1)

    parser = get_argparser()
    args = parser.parse_args()
    if args.speed is not None and args.simulation is None:
        parser.error("--speed is only valid with --simulation")
    try:
        safe_window = procedures.check_window(args.safe_window)
    except ValueError as e:
        parser.error("argument --safe-window: {}".format(e))
    devices = devices_from_args(parser, args)
    common_args.init_logger_from_args(args)

    bind = common_args.bind_address_from_args(args)
    ssl_args = getattr(args, "ssl", None)
    if not ssl_args and (bind is None or not all(protocol.is_loopback(h) for h in bind)):
        logger.warning("listening beyond loopback (%s) without --ssl: anyone who can reach"
                       " port %d can drive the Thermostat", bind or "all interfaces", args.port)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    exit_code = 0
    simulators = []
    drivers = []
    try:
        targets = {}
        for name, address in devices:
            if address is None:
                from .simulator import Simulator
                simulator = Simulator(firmware="2023" if args.firmware == "2023" else "2025",
                                      speed=args.speed or 1.0)
                simulators.append(simulator)
                address = ("127.0.0.1", loop.run_until_complete(
                    simulator.start(host="127.0.0.1", port=0)))
                logger.info("%s: simulated Thermostat on %s:%d", name, *address)
            driver = Thermostat(*address, timeout=args.timeout, firmware=args.firmware)
            drivers.append(driver)
            try:
                loop.run_until_complete(driver.connect())
            except (ConnectionError, TimeoutError) as e:
                logger.warning("%s: %s; serving anyway, commands retry the connection", name, e)
            # Only the facade's public methods: sipyco calls any attribute a client names.
            targets[name] = PublicMethods(ThermostatRPC(driver, safe_window,
                                                        ping_device=len(devices) == 1))
        # ssl_config only when asked for: sipyco < 1.9 lacks the keyword
        tls = {"ssl_config": _ssl_config(ssl_args)} if ssl_args else {}
        try:
            simple_server_loop(targets, bind, args.port, description="Sinara Thermostat",
                               allow_parallel=True, loop=loop, **tls)
        except OSError as e:  # the RPC port is taken or the address is not local
            logger.error("cannot listen on port %d: %s", args.port, e.strerror or e)
            exit_code = 1
    finally:
        # background work of the facades (channel_state's sampling) ends with the server
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        for driver in drivers:
            loop.run_until_complete(driver.close())
        for simulator in simulators:
            loop.run_until_complete(simulator.stop())
        loop.close()
    if exit_code:
        sys.exit(exit_code)


if __name__ == "__main__":
    main()
