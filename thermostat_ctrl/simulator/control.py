"""``thermostat_sim --control-port``: switch faults while the simulator runs.

A loopback TCP line protocol, one command per line, one JSON line back
(``{"faults": {...}}``, the faults now in force, or ``{"error": "..."}``)::

    unplugged 1 on        # a channel fault on / off: unplugged, shorted, tec_open, overheat
    ambient_drift 0.5     # K per simulated hour (0: off)
    hang on               # network faults: hang on|off, refuse on|off, delay_ms N
    clear                 # every fault off
    show

For example ``printf 'shorted 0 on\\n' | nc -q1 127.0.0.1 PORT``.
"""

import asyncio
import json
import math

from .faults import CHANNEL_FAULTS, Faults

__all__ = ["serve_control", "apply"]

_SWITCH = {"on": True, "off": False}
USAGE = ("commands: <{}> CH on|off; ambient_drift K_PER_H; hang on|off; refuse on|off;"
         " delay_ms N; clear; show".format("|".join(CHANNEL_FAULTS)))


def apply(faults: Faults, line: str) -> dict:
    """Carry out one command line on ``faults``; the reply object."""
    words = line.split()
    try:
        if not words:
            raise ValueError(USAGE)
        name, args = words[0], words[1:]
        if name in CHANNEL_FAULTS and len(args) == 2 and args[0] in ("0", "1") \
                and args[1] in _SWITCH:
            channels = set(getattr(faults, name))
            (channels.add if _SWITCH[args[1]] else channels.discard)(int(args[0]))
            setattr(faults, name, channels)
        elif name in ("hang", "refuse") and len(args) == 1 and args[0] in _SWITCH:
            setattr(faults, name, _SWITCH[args[0]])
        elif name in ("ambient_drift", "delay_ms") and len(args) == 1:
            value = float(args[0])
            if not math.isfinite(value) or (name == "delay_ms" and value < 0):
                raise ValueError("{} needs a finite number{}".format(
                    name, " >= 0" if name == "delay_ms" else ""))
            setattr(faults, name, value)
        elif name == "clear" and not args:
            for channel_fault in CHANNEL_FAULTS:
                setattr(faults, channel_fault, set())
            faults.ambient_drift = faults.delay_ms = 0.0
            faults.hang = faults.refuse = False
        elif name != "show" or args:
            raise ValueError("{!r}: {}".format(line.strip(), USAGE))
    except ValueError as e:
        return {"error": str(e)}
    return {"faults": faults.active()}


async def serve_control(faults: Faults, host: str, port: int) -> asyncio.base_events.Server:
    """Listen for control connections on ``host:port`` (0: a free port)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = apply(faults, line.decode("utf-8", "replace"))
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the simulator is stopping
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
