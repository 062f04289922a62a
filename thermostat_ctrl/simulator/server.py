"""TCP front end of the simulator: listener, connections, line discipline, faults.

Each connection gets a protocol object that splits the byte stream into lines
(CR or LF ends a line, empty lines ignored, 64-byte buffer with silent
truncation) and a worker task that executes them in order, yielding to the
event loop after every line so connections are served round-robin. A
background tick advances the physics and streams FW-2023 report-mode lines.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import socket
import struct
import time
from typing import Any, Optional, Sequence, Union

from .device import INVALID_INPUT, Device, Flash, Session
from .faults import Faults
from .grammar import FIRMWARES, parse
from .physics import PlantParams

__all__ = ["Simulator", "Faults"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 4
LINE_BUFFER = 64
TX_BUFFER = 2048
_TICK_S = 0.05
_GARBAGE = b"#\x01garbage\n"
_TERMINATORS = re.compile(rb"[\r\n]")


def _abort_rst(transport: asyncio.BaseTransport) -> None:
    """Close ``transport`` with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()  # type: ignore[attr-defined]


class _Connection(asyncio.Protocol):
    def __init__(self, sim: "Simulator") -> None:
        self.sim = sim
        self.session = Session()
        self.transport: Optional[asyncio.Transport] = None
        self.peer: Any = None
        self.closed = False
        self._partial = b""
        self._lines: collections.deque[bytes] = collections.deque()
        self._wakeup = asyncio.Event()
        self._eof = False
        self._worker: Optional[asyncio.Task[None]] = None

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        sim = self.sim
        if len(sim._connections) >= MAX_CONNECTIONS or not sim.device.online:
            log.info("connection from %s reset (no free socket)", self.peer)
            self.closed = True
            _abort_rst(transport)
            return
        log.info("connection from %s", self.peer)
        sim._connections.add(self)
        self._worker = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        pieces = _TERMINATORS.split(data)
        if len(pieces) == 1:
            self._partial = (self._partial + data)[:LINE_BUFFER]
            return
        pieces[0] = self._partial + pieces[0]
        self._partial = pieces.pop()[:LINE_BUFFER]
        self._lines.extend(p[:LINE_BUFFER] for p in pieces if p)
        self._wakeup.set()

    def eof_received(self) -> bool:
        # Answer what was already received, then close our side too.
        self._eof = True
        self._wakeup.set()
        return True

    def connection_lost(self, exc: Optional[Exception]) -> None:
        log.info("connection from %s closed", self.peer)
        self.closed = True
        self.sim._connections.discard(self)
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._worker.cancel()

    # -- worker ------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self.closed:
                if not self._lines:
                    if self._eof:
                        self.close()
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                await self.sim._handle(self, self._lines.popleft())
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass

    # -- output ------------------------------------------------------------

    def send_reply(self, line: str) -> None:
        """Send one reply line, applying the cut/garbage faults."""
        if self.closed or self.transport is None:
            return
        faults = self.sim.faults
        data = line.encode() + b"\n"
        if faults.garbage_replies > 0:
            faults.garbage_replies -= 1
            self.transport.write(_GARBAGE)
        if faults.cut_replies > 0:
            faults.cut_replies -= 1
            self.transport.write(data[: len(line) // 2])
            self.abort()
            return
        self.transport.write(data)

    def send_report(self, line: str) -> None:
        """Stream a report-mode line unless it does not fit the 2 KiB TX buffer."""
        if self.closed or self.transport is None:
            return
        data = line.encode() + b"\n"
        if self.transport.get_write_buffer_size() + len(data) <= TX_BUFFER:
            self.transport.write(data)

    def close(self) -> None:
        """Close gracefully (FIN) after pending output."""
        if not self.closed and self.transport is not None:
            self.closed = True
            self.sim._connections.discard(self)
            self.transport.close()

    def abort(self) -> None:
        """Reset the connection (RST)."""
        if not self.closed and self.transport is not None:
            self.closed = True
            self.sim._connections.discard(self)
            _abort_rst(self.transport)


class Simulator:
    """Simulated Sinara Thermostat serving the TCP line protocol.

    ``firmware`` selects the dialect ("2025" or "2023"); ``speed`` makes the
    simulated clock run that many times faster than wall time; ``seed`` seeds
    the measurement noise; ``flash_path`` mirrors the config flash to a JSON
    file (loaded at construction if it exists); ``reboot_s`` is the simulated
    time the device stays off the network after ``reset``/``dfu``; ``plant``
    is the thermal model of both channels (one :class:`PlantParams`) or of
    each (a pair).
    """

    def __init__(self, *, firmware: str = "2025", speed: float = 1.0, seed: Optional[int] = None,
                 flash_path: Optional[str] = None, reboot_s: float = 3.0,
                 plant: Union[PlantParams, Sequence[PlantParams]] = PlantParams()) -> None:
        firmware = str(firmware)
        if firmware not in FIRMWARES:
            raise ValueError(f"firmware must be one of {FIRMWARES}, not {firmware!r}")
        if not speed > 0:
            raise ValueError("speed must be > 0")
        if reboot_s < 0:
            raise ValueError("reboot_s must be >= 0")
        self.firmware = firmware
        self.speed = float(speed)
        self.reboot_s = float(reboot_s)
        plants = (plant, plant) if isinstance(plant, PlantParams) else tuple(plant)
        if len(plants) != 2 or not all(isinstance(p, PlantParams) for p in plants):
            raise ValueError("plant must be a PlantParams or a pair of them, not {!r}"
                             .format(plant))
        self.faults = Faults()
        self.device = Device(firmware, random.Random(seed), Flash(flash_path),
                             faults=self.faults, plants=plants)
        self.device.on_sample = self._on_sample
        self.host = "127.0.0.1"
        self.port = 0
        self._real_origin = time.monotonic()
        self._connections: set[_Connection] = set()
        self._started = False
        self._listen_sock: Optional[socket.socket] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._serve_task: Optional[asyncio.Task[None]] = None
        self._tick_task: Optional[asyncio.Task[None]] = None
        self._reboot_handle: Optional[asyncio.TimerHandle] = None
        self._online = asyncio.Event()
        object.__setattr__(self.faults, "_on_refuse", self._update_listener)

    # ---- lifecycle -------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Boot the device and listen on ``host:port`` (0 = free port); returns the port."""
        self.host = host
        self.port = port
        self._started = True
        self.device.boot(self._clock())
        self._update_listener()
        await self.wait_online()
        self._tick_task = asyncio.get_running_loop().create_task(self._tick())
        log.info("simulator (FW-%s, speed %g) listening on %s:%d",
                 self.firmware, self.speed, self.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection."""
        self._started = False
        if self._reboot_handle is not None:
            self._reboot_handle.cancel()
        self._update_listener()
        for conn in list(self._connections):
            conn.close()
        if self._tick_task is not None:
            self._tick_task.cancel()
            try:
                await self._tick_task
            except asyncio.CancelledError:
                pass
            self._tick_task = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> "Simulator":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_online(self) -> None:
        """Return once the device is listening (after start, reset or ``refuse``)."""
        await self._online.wait()

    # ---- control -----------------------------------------------------------

    def reset(self) -> None:
        """Like the ``reset`` command: RST all connections, go off the network for
        ``reboot_s`` simulated seconds, then boot from flash."""
        loop = asyncio.get_running_loop()
        self.device.shutdown(self._clock())
        self._update_listener()
        self.drop_connections()
        if self._reboot_handle is not None:
            self._reboot_handle.cancel()
        self._reboot_handle = loop.call_later(self.reboot_s / self.speed, self._reboot)
        log.info("reset: offline for %g s", self.reboot_s)

    def drop_connections(self) -> None:
        """Abort every open connection with RST; the device stays up."""
        for conn in list(self._connections):
            conn.abort()

    @property
    def connection_count(self) -> int:
        """Number of open client connections."""
        return len(self._connections)

    def now(self) -> float:
        """Simulated seconds since the last boot."""
        return self.device.uptime(self._clock())

    def true_temperature(self, ch: int) -> float:
        """Noise-free plant temperature of channel ``ch`` (°C)."""
        self.device.advance(self._clock())
        return self.device.plants[ch].temperature

    def sensor_temperature(self, ch: int) -> float:
        """Noise-free thermistor temperature of channel ``ch`` (°C): the plant's,
        seen through the sensor lag."""
        self.device.advance(self._clock())
        return self.device.plants[ch].sensor

    # ---- internals -----------------------------------------------------------

    def _clock(self) -> float:
        return (time.monotonic() - self._real_origin) * self.speed

    def _reboot(self) -> None:
        self._reboot_handle = None
        self.device.boot(self._clock())
        self._update_listener()
        log.info("reboot complete")

    def _update_listener(self) -> None:
        want = self._started and self.device.online and not self.faults.refuse
        if want and self._listen_sock is None:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                      flags=socket.AI_PASSIVE)[0]
            sock = socket.socket(info[0], socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(info[4])
            sock.listen(8)
            sock.setblocking(False)
            self.port = sock.getsockname()[1]
            self._listen_sock = sock
            self._serve_task = asyncio.get_running_loop().create_task(self._serve(sock))
        elif not want and self._listen_sock is not None:
            self._online.clear()
            if self._serve_task is not None:
                self._serve_task.cancel()
            if self._server is not None:
                self._server.close()
                self._server = None
            self._listen_sock.close()
            self._listen_sock = None

    async def _serve(self, sock: socket.socket) -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), sock=sock)
        if self._listen_sock is sock:
            self._server = server
            self._online.set()
        else:
            server.close()

    async def _tick(self) -> None:
        while True:
            t = self._clock()
            self.device.advance(t)
            self._flush_reports()
            delay = _TICK_S
            if any(c.session.report_mode for c in self._connections):
                delay = min(delay, max(0.001, (self.device.next_sample_t - t) / self.speed))
            await asyncio.sleep(delay)

    def _on_sample(self, ch: int) -> None:
        for conn in self._connections:
            if conn.session.report_mode:
                conn.session.pending_reports.add(ch)

    def _flush_reports(self) -> None:
        # Like the firmware main loop: one pending flag per channel, and each
        # pass sends one report line (current state) and clears one flag.
        if self.faults.hang:
            return
        line: Optional[str] = None
        for conn in list(self._connections):
            pending = conn.session.pending_reports
            if pending:
                line = line or self.device.report_line()
                conn.send_report(line)
                pending.pop()

    async def _handle(self, conn: _Connection, line: bytes) -> None:
        if self.faults.hang:
            log.debug("%s: %r (hang: ignored)", conn.peer, line)
            return
        t = self._clock()
        self.device.advance(t)
        self._flush_reports()
        cmd = parse(line, self.firmware)
        log.debug("%s: %r -> %r", conn.peer, line, cmd)
        if cmd is None:
            replies, action = [INVALID_INPUT], None
        else:
            replies, action = self.device.execute(cmd, t, conn.session)
        if replies and self.faults.delay_ms > 0:
            await asyncio.sleep(self.faults.delay_ms / 1000.0)
        for reply in replies:
            conn.send_reply(reply)
        if action == "quit":
            conn.close()
        elif action in ("reset", "dfu"):
            self.reset()
