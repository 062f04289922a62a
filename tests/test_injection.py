"""No RPC argument reaches the device as anything but one validated command.

Hostile arguments (newlines, extra words, exponent numbers, over-long
lines, NaN and infinities, non-ASCII text, wrong types) go to every setter of
the facade, in-process and over sipyco RPC; a proxy in front of the
simulator records every line the device receives.  Rejected calls must raise
ValueError and send nothing; accepted ones send exactly one line in the
device's grammar; a raw ``report`` afterwards is still in step.  (The
bridge's HTTP parameters never reach the device at all: see
``test_http_fuzz.py``.)
"""

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import SimThread, TamperProxy, check_channels, free_port, wait_until
from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.rpc import PublicMethods, ThermostatRPC
from thermostat_ctrl.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
SIPYCO_MISSING = ("sipyco is not installed (it is not on PyPI): "
                  "pip install 'thermostat_ctrl[artiq]' to run the controller tests")
NAN, INF = float("nan"), float("inf")
LONG = 1.2345678901234567e-300  # plain decimal: ~320 characters

#: (method, args, kwargs) that must raise ValueError without sending anything.
HOSTILE = [
    ("set_target", (0, "25\nreset"), {}),
    ("set_target", (0, "25 reset"), {}),
    ("set_target", (0, "25"), {}),
    ("set_target", (0, "２５"), {}),
    ("set_target", (0, NAN), {}),
    ("set_target", (0, INF), {}),
    ("set_target", (0, -INF), {}),
    ("set_target", (0, 10 ** 400), {}),
    ("set_target", (0, LONG), {}),
    ("set_target", (0, True), {}),
    ("set_target", (0, None), {}),
    ("set_target", (0, [25.0]), {}),
    ("set_target", ("0", 25.0), {}),
    ("set_target", ("0\nreset", 25.0), {}),
    ("set_target", ("０", 25.0), {}),
    ("set_target", (0.0, 25.0), {}),
    ("set_target", (2, 25.0), {}),
    ("set_target", (-1, 25.0), {}),
    ("set_target", (True, 25.0), {}),
    ("set_current", (0, "0.1\nreset"), {}),
    ("set_current", (0, 5.0), {}),
    ("set_current", (0, NAN), {}),
    ("set_pid_params", (0,), {"kp": "0.4 ki 1"}),
    ("set_pid_params", (0,), {"kp": NAN}),
    ("set_pid_params", (0,), {"ki": 1e-50}),
    ("set_pid_params", (0,), {"kd": 1e39}),
    ("set_pid_params", (0,), {}),
    ("set_pid_params", (0,), {"output_min": 1.0, "output_max": -1.0}),
    ("set_output_limits", (0,), {"max_v": 100.0}),
    ("set_output_limits", (0,), {"max_i_pos": -1.0}),
    ("set_output_limits", (0,), {"max_i_neg": INF}),
    ("set_b_parameter", (0,), {"b": -3950.0}),
    ("set_b_parameter", (0,), {"t0": "25\r\nreset"}),
    ("set_b_parameter", (0,), {"r0": LONG}),
    ("set_postfilter", (0, "off"), {}),
    ("set_postfilter", (0, 13.0), {}),
    ("set_postfilter", (0, "20\nreset"), {}),
    ("set_postfilter", (0, NAN), {}),
    ("set_center", (0, "vref\nreset"), {}),
    ("set_center", (0, "vref reset"), {}),
    ("set_center", (0, "Vref"), {}),
    ("set_center", (0, "vréf"), {}),
    ("set_center", (0, NAN), {}),
    ("set_polarity", (0, "normal\nreset"), {}),
    ("set_polarity", (0, "normal reversed"), {}),
    ("set_polarity", (0, "NORMAL"), {}),
    ("set_polarity", (0, "normál"), {}),
    ("set_fan", ("auto\nreset",), {}),
    ("set_fan", ("50",), {}),
    ("set_fan", (50.5,), {}),
    ("set_fan", (0,), {}),
    ("set_fan", (101,), {}),
    ("set_fan", (True,), {}),
    ("set_fcurve", (1e-50, 0.0, 0.0), {}),
    ("set_fcurve", (NAN, 0.0, 0.0), {}),
    ("set_fcurve", ("1", 0.0, 0.0), {}),
    ("save_config", ("0\nreset",), {}),
    ("save_config", (2,), {}),
    ("load_config", (" 0",), {}),
    ("get_temperature", ("0\nreset",), {}),
    ("get_temperature", (2,), {}),
    ("power_up", (0, "25\nreset"), {}),
    ("power_up", (0, 25.0), {"kp": INF}),
    ("power_up", (0, 25.0), {"max_v": -1.0}),
    ("power_up", (0, 25.0), {"ki": "0.01\nreset"}),
    ("wait_settled", (0,), {"tolerance": NAN}),
    ("wait_settled", (0,), {"settle_s": -1.0}),
    ("wait_settled", (0,), {"timeout_s": INF}),
]

#: (method, args, kwargs, the one line expected on the wire).
ACCEPTED = [
    ("set_target", (0, 1e-5), {}, b"pid 0 target 0.00001"),
    ("set_target", (1, 2.5e1), {}, b"pid 1 target 25"),
    ("set_pid_params", (0,), {"kp": 4.5e-1}, b"pid 0 kp 0.45"),
    ("set_current", (1, -1e-3), {}, b"output 1 i_set -0.001"),
    ("set_fcurve", (1e-3, 0, 1), {}, b"fcurve 0.001 0 1"),
    ("set_center", (0, "vref"), {}, b"center 0 vref"),
    ("set_fan", ("auto",), {}, b"fan auto"),
]
#: The device's grammar: known words and plain decimal numbers (no exponents).
_WORDS = (b"report|output|pwm|pid|b-p|s-h|center|postfilter|fan|fcurve|save|load|hwrev|ipv4"
          b"|target|kp|ki|kd|output_min|output_max|i_set|max_i_pos|max_i_neg|max_v|vref"
          b"|polarity|normal|reversed|rate|off|auto|t0|r0|b")
LINE = re.compile(rb"(?:%s)(?: (?:%s|-?[0-9]+(?:\.[0-9]+)?))*\Z" % (_WORDS, _WORDS))


def _raw_report(port: int) -> list:
    """A ``report`` on a fresh raw connection, parsed."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"report\n")
        data = b""
        while not data.endswith(b"\n"):
            data += s.recv(4096)
    return json.loads(data)


def _assert_device_untouched(lines: list, before: int) -> None:
    assert lines[before:] == [], lines[before:]


async def test_facade_sends_nothing_for_hostile_arguments():
    async with Simulator(speed=10) as sim:
        proxy = TamperProxy(sim.port)
        await proxy.start()
        rpc = ThermostatRPC(Thermostat("127.0.0.1", proxy.port, timeout=1.0))
        try:
            check_channels(await rpc.report(), "report")
            targets = await rpc.get_pid()
            before = len(proxy.lines)
            for method, args, kwargs in HOSTILE:
                with pytest.raises(ValueError):
                    await getattr(rpc, method)(*args, **kwargs)
                _assert_device_untouched(proxy.lines, before)
            assert await rpc.get_pid() == targets  # nothing changed on the device
            for method, args, kwargs, wire in ACCEPTED + [
                    ("set_target", (0, np.float32(25.5)), {}, b"pid 0 target 25.5")]:
                before = len(proxy.lines)
                await getattr(rpc, method)(*args, **kwargs)
                assert proxy.lines[before:] == [wire]
                assert LINE.match(wire) and len(wire) <= 64
            check_channels(await asyncio.to_thread(_raw_report, sim.port), "report")
            check_channels(await rpc.report(), "report")
        finally:
            await rpc._driver.close()
            await proxy.stop()


def test_lines_sent_are_in_the_grammar():
    """Every recorded line of the accepted calls matches the strict grammar
    (also a check of :data:`LINE` itself)."""
    assert all(LINE.match(wire) for *_, wire in ACCEPTED)
    for bad in (b"pid 0 target 1e-5", b"pid 0 target 25\nreset", b"pid 0  target 25",
                b"pid 0 target nan", b"pid 0 target inf", b"pid 0 target 25\n",
                b"pid 0 target 25 reset", b"pid 0 target .5"):
        assert not LINE.match(bad), bad


@pytest.fixture(scope="module")
def controller_over_proxy(tmp_path_factory):
    """(sipyco Client, SimThread): a controller whose device is the proxied
    simulator."""
    pc_rpc = pytest.importorskip("sipyco.pc_rpc", reason=SIPYCO_MISSING)
    device = SimThread(proxy=True, speed=10)
    port = free_port()
    log_path = tmp_path_factory.mktemp("aqctl") / "aqctl.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thermostat_ctrl.aqctl_thermostat",
             "-d", "127.0.0.1:{}".format(device.proxy.port), "-p", str(port),
             "--no-localhost-bind", "--bind", "127.0.0.1", "--timeout", "1"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def connect():
        assert proc.poll() is None, log_path.read_text()
        try:
            return pc_rpc.Client("127.0.0.1", port, "thermostat", timeout=10)
        except OSError:
            return None
    client = wait_until(connect, timeout=30, what="the controller")
    yield client, device
    client.close_rpc()
    proc.terminate()
    assert proc.wait(10) == 0, log_path.read_text()
    device.stop()


def test_rpc_sends_nothing_for_hostile_arguments(controller_over_proxy):
    client, device = controller_over_proxy
    check_channels(client.report(), "report")
    targets = client.get_pid()
    lines = device.proxy.lines
    before = len(lines)
    for method, args, kwargs in HOSTILE:
        with pytest.raises(ValueError):
            getattr(client, method)(*args, **kwargs)
        _assert_device_untouched(lines, before)
    assert client.get_pid() == targets
    for method, args, kwargs, wire in ACCEPTED:
        before = len(lines)
        getattr(client, method)(*args, **kwargs)
        assert lines[before:] == [wire]
    check_channels(_raw_report(device.port), "report")
    check_channels(client.report(), "report")


def test_served_target_exposes_only_public_methods():
    """What the controller serves: sipyco's ``getattr(target, name)`` finds
    the facade's public methods and nothing else."""
    facade = ThermostatRPC(Thermostat("127.0.0.1", 1))
    target = PublicMethods(facade)
    for name in ("__init__", "__setattr__", "__delattr__", "__class__", "__getattribute__",
                 "_call", "_driver", "_poll_interval", "__reduce_ex__", "__dict__"):
        with pytest.raises(AttributeError):
            getattr(target, name)
    with pytest.raises(AttributeError):
        target.report = None
    public = {n for n in dir(facade) if not n.startswith("_")}
    assert set(dir(target)) == public and "report" in public
    assert target.report == facade.report and target.__doc__ == ThermostatRPC.__doc__
