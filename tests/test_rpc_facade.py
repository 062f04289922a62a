"""The RPC facade (thermostat_ctrl.rpc) against the in-process simulator.

No sipyco needed: the facade is called directly, and the rules sipyco imposes
(JSON-able returns, builtin exception classes, plain annotations) are checked
here.
"""

import asyncio
import builtins
import inspect
import json
import math
import types
from typing import NamedTuple

import pytest

from thermostat_ctrl import rpc as rpc_module
from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.rpc import ThermostatRPC
from thermostat_ctrl.simulator import Simulator

FIRMWARES = ["2025", "2023"]
both_dialects = pytest.mark.parametrize("rig", FIRMWARES, indirect=True)

PUBLIC_METHODS = sorted(name for name, _ in inspect.getmembers(ThermostatRPC, callable)
                        if not name.startswith("_"))


class Rig(NamedTuple):
    sim: Simulator
    driver: Thermostat
    rpc: ThermostatRPC


@pytest.fixture
async def rig(request):
    """Simulator at 50x speed, driver and facade; firmware 2025 unless parametrized."""
    sim = Simulator(firmware=getattr(request, "param", "2025"), speed=50, seed=1)
    await sim.start(host="127.0.0.1", port=0)
    driver = Thermostat("127.0.0.1", sim.port, timeout=0.5, backoff_max=0.1)
    yield Rig(sim, driver, ThermostatRPC(driver))
    await driver.close()
    await sim.stop()


async def call(rpc: ThermostatRPC, name: str, *args, **kwargs):
    """Call a facade method as sipyco would and check its result is plain JSON."""
    result = getattr(rpc, name)(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    json.dumps(result, allow_nan=False)
    return result


async def eventually(condition, timeout: float = 10.0):
    """Poll an async condition until it is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def assert_builtin(exc_info, cls):
    """The exception is exactly the builtin class sipyco carries unchanged."""
    assert type(exc_info.value) is cls
    assert getattr(builtins, cls.__name__) is cls


# ------------------------------------------------------------ introspection

def test_public_methods_are_the_intended_ones():
    assert set(PUBLIC_METHODS) == {
        "ping", "status", "firmware", "report", "get_temperature", "get_output", "get_pid",
        "get_b_parameter", "get_postfilter", "get_fan", "get_hwrev", "get_ipv4",
        "set_current", "set_output_limits", "set_pid_params", "set_target", "engage_pid",
        "set_b_parameter", "set_postfilter", "set_center", "set_polarity", "set_fan",
        "set_fcurve", "save_config", "load_config", "reset", "power_up", "wait_settled",
        "autotune", "autotune_progress", "abort", "step_response", "ramp", "safe_window",
        "channel_state"}


def test_no_postponed_annotations_in_facade_module():
    # `from __future__ import annotations` binds the name `annotations`
    assert not hasattr(rpc_module, "annotations")


@pytest.mark.parametrize("name", PUBLIC_METHODS)
def test_annotations_are_sipyco_safe(name):
    spec = inspect.getfullargspec(getattr(ThermostatRPC, name))
    for arg, annotation in spec.annotations.items():
        assert not isinstance(annotation, str), (arg, annotation)
        assert not isinstance(annotation, types.UnionType), (arg, annotation)
        assert annotation is not None and annotation is not type(None), arg
        assert isinstance(annotation.__name__, str)  # what sipyco's listing reads


@pytest.mark.parametrize("name", PUBLIC_METHODS)
def test_public_methods_have_docstrings(name):
    assert (inspect.getdoc(getattr(ThermostatRPC, name)) or "").strip()


def test_sipyco_method_listing_accepts_the_facade():
    pc_rpc = pytest.importorskip("sipyco.pc_rpc", reason="sipyco not installed")
    for name in PUBLIC_METHODS:
        argspec, doc = pc_rpc.Server._document_function(getattr(ThermostatRPC, name))
        json.dumps(argspec)
        assert doc


# ------------------------------------------------------------------ getters

@both_dialects
async def test_getters_return_plain_json(rig):
    r = rig.rpc
    assert await call(r, "ping") is True
    fw = await call(r, "firmware")
    assert fw["firmware"] == rig.sim.firmware and isinstance(fw["hwrev"], dict)
    assert await call(r, "status") == {"connected": True, "host": "127.0.0.1",
                                       "port": rig.sim.port, "firmware": rig.sim.firmware}
    report = await call(r, "report")
    assert [o["channel"] for o in report] == [0, 1]
    for ch in (0, 1):
        async def sampled():  # None until the channel's first ADC sample
            return await call(r, "get_temperature", ch) is not None
        await eventually(sampled)
        t = await call(r, "get_temperature", ch)
        assert isinstance(t, float) and abs(t - rig.sim.true_temperature(ch)) < 1
    for name in ("get_output", "get_pid", "get_b_parameter", "get_postfilter"):
        assert [o["channel"] for o in await call(r, name)] == [0, 1], name
    assert "max_i_pos" in (await call(r, "get_output"))[0]
    await call(r, "get_fan")
    assert "rev" in await call(r, "get_hwrev")
    assert "addr" in await call(r, "get_ipv4")


async def test_temperature_is_none_without_thermistor(rig):
    rig.sim.faults.unplugged = {1}

    async def unplugged():
        return await call(rig.rpc, "get_temperature", 1) is None
    await eventually(unplugged)


# ------------------------------------------------------------------ setters

@both_dialects
async def test_setter_round_trips(rig):
    r = rig.rpc
    assert await call(r, "set_output_limits", 0, max_i_pos=1.5, max_i_neg=1.0, max_v=3.0) is None
    out = (await call(r, "get_output"))[0]
    assert out["max_i_pos"] == pytest.approx(1.5, abs=0.01)
    assert out["max_i_neg"] == pytest.approx(1.0, abs=0.01)
    assert out["max_v"] == pytest.approx(3.0, abs=0.01)

    await call(r, "set_current", 1, 0.25)
    out = (await call(r, "get_output"))[1]
    assert out["i_set"] == pytest.approx(0.25, abs=0.01)

    await call(r, "set_pid_params", 0, kp=0.5, ki=0.01, kd=2.0, output_min=-1.0, output_max=1.5)
    await call(r, "set_target", 0, 27.5)
    pid = (await call(r, "get_pid"))[0]
    assert pid["target"] == pytest.approx(27.5)
    assert pid["parameters"] == pytest.approx(
        {"kp": 0.5, "ki": 0.01, "kd": 2.0, "output_min": -1.0, "output_max": 1.5})

    await call(r, "engage_pid", 0)
    assert (await call(r, "report"))[0]["pid_engaged"] is True

    await call(r, "set_b_parameter", 1, t0=20.0, r0=12000.0, b=3950.0)
    params = (await call(r, "get_b_parameter"))[1]["params"]
    assert params == pytest.approx({"t0": 20.0, "r0": 12000.0, "b": 3950.0})  # t0 as set, degC

    await call(r, "set_postfilter", 0, 20.0)
    assert (await call(r, "get_postfilter"))[0]["rate"] == pytest.approx(20.0, abs=0.01)
    await call(r, "set_postfilter", 0, None)
    assert (await call(r, "get_postfilter"))[0]["rate"] is None

    await call(r, "set_center", 1, 1.5)
    assert (await call(r, "get_output"))[1]["center"] == pytest.approx(1.5)
    await call(r, "set_center", 1, "vref")
    assert (await call(r, "get_output"))[1]["center"] == "vref"

    await call(r, "set_fan", 50)
    await call(r, "set_fan", "auto")
    await call(r, "set_fcurve", 1.0, 0.0, 0.0)


@both_dialects
async def test_save_and_load_config(rig):
    r = rig.rpc
    await call(r, "set_target", 1, 31.0)
    await call(r, "save_config", 1)
    await call(r, "set_target", 1, 20.0)
    await call(r, "load_config", 1)
    assert (await call(r, "get_pid"))[1]["target"] == pytest.approx(31.0)
    await call(r, "save_config")
    await call(r, "load_config")


async def test_set_polarity_on_2025(rig):
    await call(rig.rpc, "set_polarity", 0, "reversed")
    assert (await call(rig.rpc, "get_output"))[0]["polarity"] == "reversed"


@pytest.mark.parametrize("rig", ["2023"], indirect=True)
async def test_set_polarity_on_2023_is_not_implemented(rig):
    with pytest.raises(NotImplementedError, match="2025") as e:
        await rig.rpc.set_polarity(0, "reversed")
    assert_builtin(e, NotImplementedError)


async def test_reset_then_reconnect(rig):
    await call(rig.rpc, "set_target", 0, 33.0)
    assert await call(rig.rpc, "reset") is None

    async def back():
        return await rig.rpc.ping()
    await eventually(back)
    assert (await call(rig.rpc, "get_pid"))[0]["target"] == 0.0  # nothing was saved


# ------------------------------------------------------------- validation

BAD_CALLS = [
    ("get_temperature", (2,), {}, "channel"),
    ("set_current", (0, "x"), {}, "amps"),
    ("set_current", (0, math.nan), {}, "amps"),
    ("set_current", (0, 9.0), {}, "amps"),
    ("set_current", (True, 0.1), {}, "channel"),
    ("set_output_limits", (0,), {}, "max_i_pos"),
    ("set_output_limits", (0,), {"max_v": -1.0}, "max_v"),
    ("set_pid_params", (0,), {"kp": math.inf}, "kp"),
    ("set_pid_params", (0,), {"output_min": 1.0, "output_max": -1.0}, "output_min"),
    ("set_target", (0, None), {}, "target"),
    ("engage_pid", (-1,), {}, "channel"),
    ("set_b_parameter", (0,), {"r0": 0.0}, "r0"),
    ("set_postfilter", (0, 100.0), {}, "rate_hz"),
    ("set_center", (0, "abc"), {}, "center"),
    ("set_polarity", (0, "up"), {}, "polarity"),
    ("set_fan", (0,), {}, "fan power"),
    ("set_fcurve", (1.0, "b", 0.0), {}, "b"),
    ("save_config", (3,), {}, "channel"),
    ("load_config", ("0",), {}, "channel"),
    ("power_up", (5, 25.0), {}, "channel"),
    ("power_up", (0, "hot"), {}, "target"),
    ("power_up", (0, 25.0), {"kp": 1.0, "max_i_pos": -1.0}, "max_i_pos"),
    ("power_up", (0, 25.0), {"kd": math.nan}, "kd"),
    ("wait_settled", (0,), {"tolerance": 0}, "tolerance"),
    ("wait_settled", (0,), {"settle_s": -1}, "settle_s"),
    ("wait_settled", (0,), {"timeout_s": 0}, "timeout_s"),
    ("wait_settled", (0,), {"timeout_s": "long"}, "timeout_s"),
    ("wait_settled", (0,), {"settle_s": 20, "timeout_s": 10}, "settle_s"),
    ("power_up", (0, 95.0), {}, "target"),
    ("power_up", (0, -20.0), {}, "safe window"),
    ("autotune", (0, 120.0), {}, "target"),
    ("autotune", (0, 25.0), {"rule": "magic"}, "rule"),
    ("autotune", (0, 25.0), {"amplitude": -1}, "amplitude"),
    ("autotune", (0, 25.0), {"engage": True}, "apply"),
    ("autotune", (2, 25.0), {}, "channel"),
    ("autotune", (0, 25.0), {}, "output limits"),  # still the boot default of 0
    ("step_response", (0, 0.0), {}, "delta"),
    ("step_response", (0, 200.0), {}, "target"),
    ("abort", (3,), {}, "channel"),
    ("autotune_progress", (-1,), {}, "channel"),
]


@pytest.mark.parametrize("name,args,kwargs,word", BAD_CALLS,
                         ids=["{}-{}".format(c[0], c[3]) for c in BAD_CALLS])
async def test_bad_arguments_raise_value_error_naming_them(rig, name, args, kwargs, word):
    with pytest.raises(ValueError, match=word) as e:
        result = getattr(rig.rpc, name)(*args, **kwargs)
        if inspect.isawaitable(result):
            await result
    assert_builtin(e, ValueError)


async def test_power_up_sends_nothing_when_an_argument_is_bad(rig):
    with pytest.raises(ValueError):
        await rig.rpc.power_up(0, 30.0, kp=1.0, max_i_pos=5.0, max_v=-1.0)
    assert (await rig.rpc.get_pid())[0]["parameters"]["kp"] == 0.0
    assert (await rig.rpc.get_pid())[0]["target"] == 0.0


# ------------------------------------------------------------- exceptions

async def test_device_error_reply_is_runtime_error(rig):
    with pytest.raises(RuntimeError, match="save_config") as e:
        await rig.rpc.load_config(0)
    assert_builtin(e, RuntimeError)


async def test_device_down_is_connection_error_and_ping_false(rig):
    await rig.sim.stop()
    for _ in range(2):  # the open connection fails, then connecting fails
        with pytest.raises(ConnectionError) as e:
            await rig.rpc.report()
        assert_builtin(e, ConnectionError)
    assert await rig.rpc.ping() is False
    with pytest.raises(ConnectionError):
        await rig.rpc.firmware()
    assert (await call(rig.rpc, "status"))["connected"] is False


async def test_hung_device_is_timeout_error_and_ping_false(rig):
    await rig.rpc.report()
    rig.sim.faults.hang = True
    with pytest.raises(TimeoutError, match="did not answer") as e:
        await rig.rpc.get_pid()
    assert_builtin(e, TimeoutError)
    assert await rig.rpc.ping() is False
    rig.sim.faults.hang = False
    await eventually(rig.rpc.ping)


async def test_garbage_reply_is_plain_connection_error(rig):
    await rig.rpc.report()
    rig.sim.faults.garbage_replies = 1
    with pytest.raises(ConnectionError, match="not a valid reply") as e:
        await rig.rpc.get_pid()
    assert_builtin(e, ConnectionError)
    await eventually(rig.rpc.ping)


async def test_cut_reply_is_plain_connection_error(rig):
    await rig.rpc.report()
    rig.sim.faults.cut_replies = 1
    with pytest.raises(ConnectionError) as e:
        await rig.rpc.report()
    assert type(e.value).__module__ == "builtins"
    await eventually(rig.rpc.ping)


# ------------------------------------------------------ experiment helpers

@both_dialects
async def test_power_up_then_wait_settled(rig):
    r = rig.rpc
    state = await call(r, "power_up", 0, 30.0, kp=0.45, ki=0.012, kd=4.3,
                       max_i_pos=1.5, max_i_neg=1.5, max_v=4.0)
    assert state["pid"]["target"] == pytest.approx(30.0)
    assert state["pid"]["parameters"]["kp"] == pytest.approx(0.45)
    assert state["output"]["max_i_pos"] == pytest.approx(1.5, abs=0.01)
    assert (await r.report())[0]["pid_engaged"] is True
    done = await call(r, "wait_settled", 0, tolerance=0.1, settle_s=10, timeout_s=600)
    assert done["target"] == pytest.approx(30.0)
    assert abs(done["temperature"] - 30.0) <= 0.1
    assert done["waited_s"] >= 10
    assert abs(rig.sim.true_temperature(0) - 30.0) < 0.3


async def test_wait_settled_times_out_on_unreachable_target(rig):
    await rig.rpc.power_up(0, 80.0, kp=0.45, ki=0.012, kd=4.3,
                           max_i_pos=0.1, max_i_neg=0.1, max_v=1.0)
    with pytest.raises(TimeoutError, match="not settled within 20") as e:
        await rig.rpc.wait_settled(0, tolerance=0.1, settle_s=5, timeout_s=20)
    assert_builtin(e, TimeoutError)


async def test_wait_settled_needs_an_engaged_pid(rig):
    with pytest.raises(RuntimeError, match="not engaged") as e:
        await rig.rpc.wait_settled(1, settle_s=1, timeout_s=5)
    assert_builtin(e, RuntimeError)


async def test_wait_settled_when_device_is_gone(rig):
    await rig.rpc.power_up(0, 30.0, kp=0.45, ki=0.012, kd=4.3,
                           max_i_pos=1.5, max_i_neg=1.5, max_v=4.0)
    await rig.sim.stop()
    with pytest.raises(ConnectionError):
        await rig.rpc.wait_settled(0, timeout_s=60)


async def test_ping_answers_while_wait_settled_runs(rig):
    await rig.rpc.power_up(0, 45.0, kp=0.45, ki=0.012, kd=4.3,
                           max_i_pos=1.5, max_i_neg=1.5, max_v=4.0)
    waiting = asyncio.ensure_future(rig.rpc.wait_settled(0, tolerance=0.01, settle_s=1e6,
                                                         timeout_s=1e6))
    try:
        for _ in range(5):
            assert await asyncio.wait_for(rig.rpc.ping(), 1.0) is True
        assert not waiting.done()
    finally:
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
