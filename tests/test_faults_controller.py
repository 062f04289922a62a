"""Fault injection against the ARTIQ controller.

Facade level (no sipyco): :class:`ThermostatRPC` on a driver talking to the
in-process simulator.  Over RPC (skipped without sipyco): the
``aqctl_thermostat`` subprocess talking to a simulator served from a thread
of the test process, spoken to through sipyco's own Client.

For every fault: a call during the fault raises the documented builtin
exception (and ``ping`` answers False) promptly; the controller keeps
serving; the first call after the device's recovery succeeds within the
driver's backoff plus one timeout, and every reply afterwards has the shape
of its own command (no stale reply).
"""

import itertools
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from harness import (DOUBLE_BRACE, INVALID_REPLIES, SimThread, TamperProxy, check_channels,
                      free_port, hold_all_slots, release, wait_for, wait_until)
from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.rpc import ThermostatRPC
from thermostat_ctrl.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
SIPYCO_MISSING = ("sipyco is not installed (it is not on PyPI): "
                  "pip install 'thermostat_ctrl[artiq]' to run the controller tests")
TIMEOUT = 0.3
BACKOFF_MAX = 0.2
#: The controller subprocess uses the driver's default backoff (up to 1 s).
CONTROLLER_BACKOFF_MAX = 1.0
SPEED = 20.0
REBOOT_S = 20.0  # 1 real second off the network after a reset


@dataclass
class Fault:
    """A device fault: ``apply``/``clear`` run on the simulator's loop;
    ``error`` is the builtin exception a call raises meanwhile."""

    name: str
    apply: Callable[[Simulator, Optional[TamperProxy]], Any]
    clear: Callable[[Simulator, Optional[TamperProxy]], Any]
    error: type
    proxied: bool = False


def _set(name: str, value: Any) -> Callable:
    return lambda sim, proxy: setattr(sim.faults, name, value)


def _refuse(sim: Simulator, proxy: Optional[TamperProxy]) -> None:
    sim.faults.refuse = True
    sim.drop_connections()


def _mangle(make: Callable[[], Callable]) -> Callable:
    def apply(sim: Simulator, proxy: Optional[TamperProxy]) -> None:
        proxy.mangle = make()
    return apply


def _unmangle(sim: Simulator, proxy: Optional[TamperProxy]) -> None:
    proxy.mangle = None


def _invalid() -> Callable:
    lines = itertools.cycle(INVALID_REPLIES)
    return lambda line: next(lines)


_held: list = []


async def _take_slots(sim: Simulator, proxy: Optional[TamperProxy]) -> None:
    _held[:] = await hold_all_slots(sim)


async def _free_slot(sim: Simulator, proxy: Optional[TamperProxy]) -> None:
    await release(_held, sim, keep=3)


async def _back_online(sim: Simulator, proxy: Optional[TamperProxy]) -> None:
    await sim.wait_online()


async def _accept(sim: Simulator, proxy: Optional[TamperProxy]) -> None:
    sim.faults.refuse = False
    await sim.wait_online()


FAULTS = [
    Fault("refused", _refuse, _accept, ConnectionError),
    Fault("hang", _set("hang", True), _set("hang", False), TimeoutError),
    Fault("cut_mid_line", _set("cut_replies", 10 ** 9), _set("cut_replies", 0),
          ConnectionError),
    Fault("garbage_lines", _set("garbage_replies", 10 ** 9), _set("garbage_replies", 0),
          ConnectionError),
    Fault("invalid_json", _mangle(_invalid), _unmangle, ConnectionError, proxied=True),
    Fault("double_brace", _mangle(lambda: lambda line: DOUBLE_BRACE), _unmangle, RuntimeError,
          proxied=True),
    Fault("reset", lambda sim, proxy: sim.reset(), _back_online, ConnectionError),
    Fault("slots_taken", _take_slots, _free_slot, ConnectionError),
    Fault("slower_than_timeout", _set("delay_ms", 1000.0), _set("delay_ms", 0.0),
          TimeoutError),
]


async def _run(step: Callable, sim: Simulator, proxy: Optional[TamperProxy]) -> None:
    result = step(sim, proxy)
    if result is not None:
        await result


def check_in_step(replies: dict) -> None:
    """Every reply has the shape of its own command."""
    check_channels(replies["report"], "report")
    check_channels(replies["pid"], "pid")
    check_channels(replies["output"], "output")
    check_channels(replies["postfilter"], "postfilter")
    assert "rev" in replies["hwrev"], replies["hwrev"]


# ------------------------------------------------------------- facade level

@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_facade_survives_and_recovers(fault: Fault):
    async with Simulator(speed=SPEED, reboot_s=REBOOT_S, seed=3) as sim:
        proxy = TamperProxy(sim.port)
        await proxy.start()
        port = proxy.port if fault.proxied else sim.port
        rpc = ThermostatRPC(Thermostat("127.0.0.1", port, timeout=TIMEOUT,
                                       backoff_max=BACKOFF_MAX))
        try:
            check_channels(await rpc.report(), "report")
            await _run(fault.apply, sim, proxy)
            began = time.monotonic()
            with pytest.raises(fault.error) as info:
                await rpc.report()
            assert type(info.value).__module__ == "builtins", type(info.value)
            assert time.monotonic() - began < TIMEOUT + 0.2
            assert await rpc.ping() is False
            assert rpc.status()["host"] == "127.0.0.1"
            await _run(fault.clear, sim, proxy)
            cleared = time.monotonic()

            async def answered():
                try:
                    return await rpc.get_pid()
                except (ConnectionError, TimeoutError):
                    return None
            pid = await wait_for(answered, what="an answer after recovery", interval=0.01)
            recovery = time.monotonic() - cleared
            print("controller facade {}: recovery {:.0f} ms".format(fault.name, recovery * 1e3))
            assert recovery <= BACKOFF_MAX + TIMEOUT + 0.1
            check_channels(pid, "pid")
            check_in_step({"report": await rpc.report(), "pid": await rpc.get_pid(),
                           "output": await rpc.get_output(),
                           "postfilter": await rpc.get_postfilter(),
                           "hwrev": await rpc.get_hwrev()})
            assert await rpc.ping() is True
        finally:
            await rpc._driver.close()
            await proxy.stop()


async def test_facade_load_without_saved_config_then_in_step():
    """The firmware's doubled-brace reply to ``load``: a RuntimeError naming
    the remedy; the connection stays in step (one and two reply lines)."""
    async with Simulator(speed=SPEED) as sim:
        rpc = ThermostatRPC(Thermostat("127.0.0.1", sim.port, timeout=TIMEOUT))
        try:
            for ch in (0, None):
                with pytest.raises(RuntimeError, match="save_config"):
                    await rpc.load_config(ch)
                check_in_step({"report": await rpc.report(), "pid": await rpc.get_pid(),
                               "output": await rpc.get_output(),
                               "postfilter": await rpc.get_postfilter(),
                               "hwrev": await rpc.get_hwrev()})
            await rpc.save_config()
            await rpc.load_config()
            check_channels(await rpc.report(), "report")
        finally:
            await rpc._driver.close()


async def test_facade_device_absent_at_start():
    port = free_port()
    rpc = ThermostatRPC(Thermostat("127.0.0.1", port, timeout=TIMEOUT, backoff_max=BACKOFF_MAX))
    with pytest.raises(ConnectionError):
        await rpc.report()
    assert await rpc.ping() is False
    assert rpc.status() == {"connected": False, "host": "127.0.0.1", "port": port,
                            "firmware": None}
    sim = Simulator(speed=SPEED)
    await sim.start("127.0.0.1", port)
    try:
        cleared = time.monotonic()
        await wait_for(rpc.ping, what="ping after the device appears", interval=0.01)
        print("controller facade absent_at_start: recovery {:.0f} ms".format(
            (time.monotonic() - cleared) * 1e3))
        assert time.monotonic() - cleared <= BACKOFF_MAX + TIMEOUT + 0.1
        check_channels(await rpc.report(), "report")
        assert rpc.status()["firmware"] == "2025"
    finally:
        await rpc._driver.close()
        await sim.stop()


# --------------------------------------------------------- over sipyco RPC

@pytest.fixture(scope="module")
def Client():
    """sipyco's blocking RPC client class (skips without sipyco)."""
    return pytest.importorskip("sipyco.pc_rpc", reason=SIPYCO_MISSING).Client


class Controller:
    """``aqctl_thermostat -d 127.0.0.1:PORT`` on a free loopback port."""

    def __init__(self, device_port: int, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat",
                 "-d", "127.0.0.1:{}".format(device_port), "-p", str(self.port),
                 "--no-localhost-bind", "--bind", "127.0.0.1", "--timeout", str(TIMEOUT)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def connect(self, Client):
        """A sipyco Client, once the controller accepts connections."""
        def attempt():
            assert self.proc.poll() is None, "controller exited:\n" + self.log_path.read_text()
            try:
                return Client("127.0.0.1", self.port, "thermostat", timeout=10)
            except OSError:
                return None
        return wait_until(attempt, timeout=30, what="the controller to listen")

    def stop(self) -> int:
        """Terminate; the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="module")
def device():
    """A simulator with a tampering proxy, served from a thread."""
    served = SimThread(proxy=True, speed=SPEED, reboot_s=REBOOT_S, seed=5)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def controllers(device, Client, tmp_path_factory):
    """Two controllers: one on the simulator, one behind the proxy; yields
    {False: client, True: proxied client}."""
    log_dir = tmp_path_factory.mktemp("aqctl")
    procs = {False: Controller(device.port, log_dir / "direct.log"),
             True: Controller(device.proxy.port, log_dir / "proxied.log")}
    clients = {k: c.connect(Client) for k, c in procs.items()}
    yield clients
    for client in clients.values():
        client.close_rpc()
    for proc in procs.values():
        assert proc.stop() == 0, proc.log_path.read_text()


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_controller_survives_and_recovers(fault: Fault, device, controllers):
    client = controllers[fault.proxied]

    def answered():
        try:
            return client.get_pid()
        except (ConnectionError, TimeoutError):
            return None
    # An earlier fault may have cut this controller's connection: it reconnects.
    wait_until(answered, timeout=10, what="the controller in service")
    sim, proxy = device.sim, device.proxy
    device.run(_run(fault.apply, sim, proxy))
    try:
        began = time.monotonic()
        with pytest.raises(fault.error):
            client.report()
        assert time.monotonic() - began < TIMEOUT + 0.5
        assert client.ping() is False
    finally:
        device.run(_run(fault.clear, sim, proxy))
    cleared = time.monotonic()
    pid = wait_until(answered, timeout=10, what="an answer after recovery")
    recovery = time.monotonic() - cleared
    print("controller RPC {}: recovery {:.0f} ms".format(fault.name, recovery * 1e3))
    assert recovery <= CONTROLLER_BACKOFF_MAX + TIMEOUT + 0.3
    check_channels(pid, "pid")
    check_in_step({"report": client.report(), "pid": client.get_pid(),
                   "output": client.get_output(), "postfilter": client.get_postfilter(),
                   "hwrev": client.get_hwrev()})
    assert client.ping() is True


def test_controller_load_without_saved_config(device, controllers):
    client = controllers[False]  # nothing was ever saved to this simulator's flash
    with pytest.raises(RuntimeError, match="save_config"):
        client.load_config(1)
    check_channels(client.report(), "report")
    check_channels(client.get_pid(), "pid")


def test_controller_reset_over_rpc_recovers(device, controllers):
    client = controllers[False]
    client.reset()
    assert device.run(_offline_then_online(device.sim)) >= 0
    cleared = time.monotonic()
    wait_until(client.ping, timeout=10, what="ping after the reboot")
    print("controller RPC reset(): recovery {:.0f} ms".format(
        (time.monotonic() - cleared) * 1e3))
    check_channels(client.report(), "report")


async def _offline_then_online(sim: Simulator) -> float:
    began = time.monotonic()
    await wait_for(lambda: not sim.device.online, what="the reset")
    await sim.wait_online()
    return time.monotonic() - began


def test_controller_device_absent_at_start(Client, tmp_path):
    port = free_port()
    controller = Controller(port, tmp_path / "absent.log")
    client = None
    device = None
    try:
        client = controller.connect(Client)
        assert client.ping() is False
        assert client.status()["connected"] is False
        with pytest.raises(ConnectionError):
            client.report()
        device = SimThread(port=port, speed=SPEED)
        cleared = time.monotonic()
        wait_until(client.ping, timeout=10, what="ping once the device is there")
        print("controller RPC absent_at_start: recovery {:.0f} ms".format(
            (time.monotonic() - cleared) * 1e3))
        assert time.monotonic() - cleared <= CONTROLLER_BACKOFF_MAX + TIMEOUT + 0.3
        check_channels(client.report(), "report")
    finally:
        if client is not None:
            client.close_rpc()
        assert controller.stop() == 0, controller.log_path.read_text()
        if device is not None:
            device.stop()
    assert "serving anyway" in controller.log_path.read_text()
