"""aqctl_thermostat end to end: the controller as a subprocess, spoken to
through sipyco's own Client.

Every test that needs sipyco skips (with the reason shown) when it is not
installed; the missing-sipyco behaviour itself is tested by blocking the
import.  Only loopback addresses are used.
"""

import asyncio
import inspect
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import free_port, wait_until
from thermostat_ctrl.rpc import ThermostatRPC

ROOT = Path(__file__).resolve().parent.parent
SIPYCO_MISSING = ("sipyco is not installed (it is not on PyPI): pip install"
                  " git+https://github.com/m-labs/sipyco, or .ci/run with ../shared/deps,"
                  " to run the controller tests")
START_TIMEOUT = 30.0


@pytest.fixture
def Client():
    """sipyco's blocking RPC client class (skips without sipyco)."""
    return pytest.importorskip("sipyco.pc_rpc", reason=SIPYCO_MISSING).Client


class Controller:
    """An aqctl_thermostat subprocess on a free loopback port."""

    def __init__(self, tmp_path: Path, *device_args: str):
        self.port = free_port()
        self.log_path = tmp_path / "aqctl-{}.log".format(self.port)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat", *device_args,
                 "-p", str(self.port), "--no-localhost-bind", "--bind", "127.0.0.1",
                 "--timeout", "1"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connect(self, Client, timeout: float = START_TIMEOUT):
        """Poll until the RPC server accepts a connection; return a Client."""
        def attempt():
            assert self.proc.poll() is None, "controller exited:\n" + self.log()
            try:
                return Client("127.0.0.1", self.port, "thermostat", timeout=10)
            except OSError:
                return None
        return wait_until(attempt, timeout, "the controller to listen\n" + self.log())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SimProcess:
    """A thermostat_sim subprocess on a given loopback port."""

    def __init__(self, port: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "thermostat_ctrl.simulator.cli", "--bind", "127.0.0.1",
             "--port", str(port), "--speed", "50", "-q"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # printed once listening
        assert line.strip() == "listening on 127.0.0.1:{}".format(port), line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture
def processes():
    """Collects Controller/SimProcess objects and stops them after the test."""
    started = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture
def sim_controller(tmp_path, processes, Client):
    """A --simulation controller at 50x speed and a client connected to it."""
    ctl = Controller(tmp_path, "--simulation", "--speed", "50")
    processes.append(ctl)
    client = ctl.connect(Client)
    yield ctl, client
    client.close_rpc()


# ------------------------------------------------------------ with sipyco

def test_ping_report_and_round_trips(sim_controller):
    _, c = sim_controller
    assert c.get_selected_target() == "thermostat"
    assert c.ping() is True
    report = c.report()
    assert [o["channel"] for o in report] == [0, 1]
    assert c.firmware()["firmware"] == "2025"
    assert c.status()["connected"] is True

    c.set_target(1, 28.25)
    assert c.get_pid()[1]["target"] == pytest.approx(28.25)
    c.set_output_limits(0, max_i_pos=1.2, max_i_neg=0.8, max_v=2.5)
    out = c.get_output()[0]
    assert (out["max_i_pos"], out["max_i_neg"], out["max_v"]) == pytest.approx(
        (1.2, 0.8, 2.5), abs=0.01)
    c.set_b_parameter(0, b=3950.0)
    assert c.get_b_parameter()[0]["params"]["b"] == pytest.approx(3950.0)
    c.set_postfilter(1, 25.0)
    assert c.get_postfilter()[1]["rate"] == pytest.approx(25.0, abs=0.01)
    state = c.power_up(0, 30.0, kp=0.45, ki=0.012, kd=4.3, max_i_pos=1.5, max_i_neg=1.5,
                       max_v=4.0)
    assert state["pid"]["target"] == pytest.approx(30.0)
    assert c.report()[0]["pid_engaged"] is True


def test_exception_classes_reach_the_client(sim_controller):
    _, c = sim_controller
    with pytest.raises(RuntimeError, match="save_config") as e:
        c.load_config(0)
    assert type(e.value) is RuntimeError
    with pytest.raises(ValueError, match="amps") as e:
        c.set_current(0, 9.0)
    assert type(e.value) is ValueError
    with pytest.raises(ValueError, match="channel"):
        c.get_temperature(2)
    with pytest.raises(TimeoutError, match="not settled") as e:
        c.power_up(1, 75.0, kp=0.45, ki=0.012, kd=4.3, max_i_pos=0.1, max_i_neg=0.1, max_v=1.0)
        c.wait_settled(1, tolerance=0.1, settle_s=5, timeout_s=10)
    assert type(e.value) is TimeoutError
    with pytest.raises(AttributeError):
        c.send_raw("reset")
    assert c.ping() is True  # the connection survived every error


def test_method_list_documents_every_public_method(sim_controller):
    _, c = sim_controller
    listing = c.get_rpc_method_list()
    assert "Thermostat" in listing["docstring"]
    methods = listing["methods"]
    public = {name for name, _ in inspect.getmembers(ThermostatRPC, callable)
              if not name.startswith("_")}
    assert set(methods) == public | {"terminate"}
    for name in public:
        argspec, doc = methods[name]
        assert doc, name


def test_terminate_exits_with_status_zero(sim_controller):
    ctl, c = sim_controller
    c.terminate()
    assert ctl.proc.wait(15) == 0, ctl.log()
    assert "Traceback" not in ctl.log()


def test_second_client_pings_while_wait_settled_runs(sim_controller, Client):
    ctl, c = sim_controller
    c.power_up(0, 45.0, kp=0.45, ki=0.012, kd=4.3, max_i_pos=1.5, max_i_neg=1.5, max_v=4.0)
    outcome = {}

    def wait():
        try:
            # unreachable settle time: runs for timeout_s = 150 device s = 3 wall s
            c.wait_settled(0, tolerance=0.0001, settle_s=150, timeout_s=150)
        except Exception as e:
            outcome["error"] = e

    waiter = threading.Thread(target=wait)
    waiter.start()
    other = Client("127.0.0.1", ctl.port, "thermostat", timeout=10)
    try:
        for _ in range(5):
            start = time.monotonic()
            assert other.ping() is True
            assert time.monotonic() - start < 1.0
            assert waiter.is_alive()
    finally:
        other.close_rpc()
        waiter.join(30)
    assert isinstance(outcome.get("error"), TimeoutError), outcome


def test_serves_while_device_unreachable_and_recovers(tmp_path, processes, Client):
    sim_port = free_port()
    ctl = Controller(tmp_path, "-d", "127.0.0.1:{}".format(sim_port))
    processes.append(ctl)
    c = ctl.connect(Client)
    try:
        assert c.ping() is False
        with pytest.raises(ConnectionError):
            c.report()

        sim = SimProcess(sim_port)
        processes.append(sim)
        wait_until(c.ping, 20, "the controller to reach the simulator")
        assert c.firmware()["firmware"] == "2025"
        c.set_target(0, 26.0)

        sim.stop()
        wait_until(lambda: c.ping() is False, 20, "the controller to notice the device is gone")
        with pytest.raises((ConnectionError, TimeoutError)):
            c.get_pid()

        sim = SimProcess(sim_port)
        processes.append(sim)
        wait_until(c.ping, 20, "the controller to reconnect")
        assert [o["channel"] for o in c.report()] == [0, 1]
        assert c.get_pid()[0]["target"] == 0.0  # a fresh device
        assert ctl.proc.poll() is None
    finally:
        c.close_rpc()


@pytest.mark.parametrize("args", [[], ["--simulation", "-d", "127.0.0.1"],
                                  ["-d", "127.0.0.1", "--speed", "5"],
                                  ["-d", "127.0.0.1:notaport"]],
                         ids=["neither", "both", "speed-without-simulation", "bad-port"])
def test_usage_errors(args, Client):
    result = subprocess.run([sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------- without sipyco

BLOCK_SIPYCO = """
import sys

class BlockSipyco:
    def find_spec(self, name, path=None, target=None):
        if name == "sipyco" or name.startswith("sipyco."):
            raise ImportError("No module named " + repr(name))

sys.meta_path.insert(0, BlockSipyco())
import thermostat_ctrl.rpc
assert "sipyco" not in sys.modules
from thermostat_ctrl.aqctl_thermostat import main
sys.argv = ["aqctl_thermostat", "--simulation"]
main()
"""


def test_without_sipyco_prints_one_line_and_fails():
    result = subprocess.run([sys.executable, "-c", BLOCK_SIPYCO], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install git+https://github.com/m-labs/sipyco" in lines[0]
    assert result.stdout == ""


# ------------------------------------------------------ procedures over RPC

def test_autotune_and_step_response_over_rpc(sim_controller, Client):
    ctl, c = sim_controller
    c.set_output_limits(0, max_i_pos=1.0, max_i_neg=1.0, max_v=4.0)
    outcome = {}

    def tune():
        try:
            outcome["result"] = c.autotune(0, 25.0, apply=True, engage=True)
        except Exception as e:
            outcome["error"] = e

    tuner = threading.Thread(target=tune)
    tuner.start()
    other = Client("127.0.0.1", ctl.port, "thermostat", timeout=10)
    try:
        seen = wait_until(lambda: (other.autotune_progress(0) or {}).get("cycles"), 60,
                          "autotune progress from a second client")
        assert seen >= 1 and other.ping() is True
    finally:
        tuner.join(120)
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert result["applied"] is True and result["gains"]["kp"] > 0
    step = other.step_response(0, 1.0, band=0.02, hold_s=10)
    other.close_rpc()
    assert step["up"]["settling_time_s"] is not None and step["up"]["overshoot_k"] < 0.1


def test_busy_rpc_port_is_one_line(tmp_path, processes, Client):
    first = Controller(tmp_path, "--simulation")
    processes.append(first)
    first.connect(Client).close_rpc()
    result = subprocess.run(
        [sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat", "--simulation",
         "-p", str(first.port), "--no-localhost-bind", "--bind", "127.0.0.1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on port {}".format(first.port) in lines[0], \
        result.stderr


def test_controller_manager_starts_pings_and_stops_it():
    ctlmgr = pytest.importorskip("artiq_comtools.ctlmgr",
                                 reason="artiq-comtools is not installed (not on PyPI):"
                                        " .ci/run installs it from ../shared/deps")
    pc_rpc = pytest.importorskip("sipyco.pc_rpc", reason=SIPYCO_MISSING)
    port = free_port()
    entry = {
        "type": "controller", "host": "localhost", "port": port, "target_name": "thermostat",
        "ping_timer": 1, "term_timeout": 10,
        "command": sys.executable + " -m thermostat_ctrl.aqctl_thermostat -p {port}"
                   " --bind {bind} --no-localhost-bind --simulation --speed 10",
    }

    async def scenario():
        controllers = ctlmgr.Controllers(loop=asyncio.get_running_loop())
        controllers.host_filter = "localhost"
        try:
            controllers["thermostat"] = entry
            await controllers.queue.join()
            remote = pc_rpc.AsyncioClient()
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    await remote.connect_rpc("localhost", port, "thermostat")
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the controller never listened"
                    await asyncio.sleep(0.1)
            try:
                assert await remote.ping() is True
                assert (await remote.report())[0]["channel"] == 0
            finally:
                await remote.close_rpc()
            controller = controllers.active["thermostat"]
            process = controller.process
            # Absence of a restart can only be seen by letting the manager ping
            # (every ping_timer s) a few times: a failed ping would restart it.
            await asyncio.sleep(2.5 * entry["ping_timer"])
            assert controller.process is process and process.returncode is None
        finally:
            await controllers.shutdown()
        return process

    process = asyncio.run(scenario())
    assert process.returncode == 0  # stopped by terminate(), not killed


# ------------------------------------------------------- several devices

def test_one_target_per_device_and_one_down_leaves_the_other(tmp_path, processes, Client):
    up_port, down_port = free_port(), free_port()
    sim = SimProcess(up_port)
    processes.append(sim)
    ctl = Controller(tmp_path, "-d", "up=127.0.0.1:{}".format(up_port),
                     "-d", "down=127.0.0.1:{}".format(down_port), "--safe-window", "0", "40")
    processes.append(ctl)
    wait_until(lambda: _listening(ctl, Client), START_TIMEOUT, "the controller\n" + ctl.log())
    up = Client("127.0.0.1", ctl.port, "up", timeout=10)
    down = Client("127.0.0.1", ctl.port, "down", timeout=10)
    try:
        assert sorted(up.get_rpc_id()[0]) == ["down", "up"]
        with pytest.raises(ConnectionError):
            down.report()
        assert down.status()["connected"] is False
        assert down.ping() is True  # several devices: the controller manager must not restart
        up.set_target(0, 33.0)
        assert up.get_pid()[0]["target"] == pytest.approx(33.0)
        with pytest.raises(ValueError, match="outside the safe window 0.0..40.0"):
            up.set_target(0, 100)  # the newcomer's sipyco_rpctool call
        assert up.get_pid()[0]["target"] == pytest.approx(33.0)
        assert up.safe_window() == [0.0, 40.0]
    finally:
        up.close_rpc()
        down.close_rpc()


def _listening(ctl, Client) -> bool:
    assert ctl.proc.poll() is None, "controller exited:\n" + ctl.log()
    try:
        Client("127.0.0.1", ctl.port, "up", timeout=10).close_rpc()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("args,message", [
    (["-d", "127.0.0.1", "-d", "b=127.0.0.2"], "several devices need a name each"),
    (["-d", "a=127.0.0.1", "-d", "a=127.0.0.2"], "device name a given more than once"),
    (["-d", "a b=127.0.0.1"], "name 'a b' must be"),
    (["--simulation", "--safe-window", "40", "10"], "low must be below high"),
])
def test_device_usage_errors(args, message, Client):
    result = subprocess.run([sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr
