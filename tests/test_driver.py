"""The asyncio driver against the simulator over loopback TCP, both dialects."""

import asyncio
import time

import pytest

from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.protocol import DeviceError, FlashConfigNotFound, UnsupportedCommand
from thermostat_ctrl.simulator import Simulator

REPORT_KEYS = ["channel", "time", "interval", "adc", "sens", "temperature", "pid_engaged", "i_set",
               "dac_value", "dac_feedback", "i_tec", "tec_i", "tec_u_meas", "pid_output"]


@pytest.fixture(params=["2025", "2023"])
def firmware(request):
    return request.param


@pytest.fixture
async def sim(firmware):
    async with Simulator(firmware=firmware, speed=50, seed=1, reboot_s=2.0) as s:
        yield s


@pytest.fixture
async def dev(sim):
    async with Thermostat("127.0.0.1", sim.port, timeout=1.0) as t:
        yield t


async def eventually(condition, timeout=20.0, interval=0.02):
    """Wait until ``condition()`` (sync or async) returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
        except (ConnectionError, TimeoutError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in {} s".format(timeout)
        await asyncio.sleep(interval)


async def test_dialect_is_detected(firmware, dev):
    assert dev.firmware == firmware
    assert dev.connected


async def test_report_shape(dev):
    report = await dev.report()
    assert [ch["channel"] for ch in report] == [0, 1]
    for ch in report:
        assert list(ch) == REPORT_KEYS
        assert isinstance(ch["temperature"], float) and isinstance(ch["pid_engaged"], bool)


async def test_boot_defaults_have_zero_limits(dev):
    for ch in await dev.get_output():
        assert (ch["max_i_pos"], ch["max_i_neg"], ch["max_v"]) == (0, 0, 0)


async def test_output_round_trips(sim, dev):
    await dev.set_output_limits(1, max_i_pos=1.5, max_i_neg=1.25, max_v=2.5)
    await dev.set_current(1, -0.5)
    await dev.set_center(0, 1.25)
    out = (await dev.get_output())
    assert out[1]["max_i_pos"] == pytest.approx(1.5, abs=2e-3)  # 2023 read-back is duty-quantised
    assert out[1]["max_i_neg"] == pytest.approx(1.25, abs=2e-3)
    assert out[1]["max_v"] == pytest.approx(2.5, abs=1e-2)
    assert out[1]["i_set"] == pytest.approx(-0.5, abs=1e-2)
    assert out[0]["center"] == 1.25 and out[1]["center"] == "vref"
    assert all(not isinstance(v, dict) for v in out[1].values())
    await dev.set_center(0, "vref")
    assert (await dev.get_output())[0]["center"] == "vref"


async def test_pid_round_trips(dev):
    await dev.set_pid_params(0, kp=0.45, ki=0.012, kd=4.3, output_min=-1.5, output_max=1.5)
    await dev.set_target(0, 25.3)
    pid = (await dev.get_pid())[0]
    assert pid["parameters"] == pytest.approx(
        {"kp": 0.45, "ki": 0.012, "kd": 4.3, "output_min": -1.5, "output_max": 1.5}, rel=1e-6)
    assert pid["target"] == 25.3
    await dev.engage_pid(0)
    assert (await dev.report())[0]["pid_engaged"] is True
    await dev.set_current(0, 0.0)
    assert (await dev.report())[0]["pid_engaged"] is False


async def test_thermistor_and_postfilter_round_trips(sim, dev):
    await dev.set_b_parameter(1, t0=20, r0=5000, b=3950)
    assert (await dev.get_b_parameter())[1]["params"] == pytest.approx(
        {"t0": 293.15, "r0": 5000.0, "b": 3950.0})
    await dev.set_postfilter(0, None)
    await dev.set_postfilter(1, 20)
    rates = [ch["rate"] for ch in await dev.get_postfilter()]
    assert rates[0] is None and rates[1] == pytest.approx(20)


async def test_polarity_only_on_2025(firmware, dev):
    if firmware == "2023":
        with pytest.raises(UnsupportedCommand, match="2025"):
            await dev.set_polarity(0, "reversed")
    else:
        await dev.set_polarity(0, "reversed")
        assert (await dev.get_output())[0]["polarity"] == "reversed"


async def test_fan_hwrev_ipv4(dev):
    hw = await dev.get_hwrev()
    assert hw["rev"] == {"major": 2, "minor": 2}
    await dev.set_fan(50)
    fan = await dev.get_fan()
    assert fan["fan_pwm"] == 50 and fan["auto_mode"] is False
    await dev.set_fcurve(0.5, 0.25, 0.125)
    await dev.set_fan("auto")
    fan = await dev.get_fan()
    assert fan["auto_mode"] is True and (fan["k_a"], fan["k_b"], fan["k_c"]) == (0.5, 0.25, 0.125)
    assert (await dev.get_ipv4())["addr"] == "192.168.1.26/24"


async def test_load_without_saved_config_leaves_no_stale_line(dev):
    with pytest.raises(FlashConfigNotFound):
        await dev.load_config()  # two error lines, both consumed
    with pytest.raises(FlashConfigNotFound):
        await dev.load_config(1)
    assert len(await dev.get_postfilter()) == 2
    assert (await dev.get_pid())[0]["channel"] == 0


async def test_save_and_load_both_channels(dev):
    await dev.set_target(1, 30.5)
    await dev.save_config()
    await dev.set_target(1, 10)
    await dev.load_config()
    assert (await dev.get_pid())[1]["target"] == 30.5
    await dev.set_target(0, 12.5)
    await dev.save_config(0)
    await dev.load_config(0)
    assert [p["target"] for p in await dev.get_pid()] == [12.5, 30.5]


async def test_device_error_is_a_runtime_error(dev):
    with pytest.raises(RuntimeError):
        await dev.load_config(0)
    assert issubclass(FlashConfigNotFound, DeviceError)


async def test_bad_arguments_never_reach_the_wire(sim, dev):
    for call in (dev.set_target(2, 20), dev.set_pid_params(0), dev.set_output_limits(0),
                 dev.set_current(0, float("nan")), dev.set_target(0, 1e300),
                 dev.set_pid_params(0, output_min=1, output_max=-1)):
        with pytest.raises(ValueError):
            await call
    assert (await dev.get_pid())[0]["target"] == 0


async def test_reset_then_reconnect(sim, dev):
    await dev.set_target(0, 33)
    await dev.save_config(0)
    await dev.set_target(0, 20)
    await dev.reset()
    assert not dev.connected
    pid = await eventually(dev.get_pid)
    assert pid[0]["target"] == 33  # state reloaded from flash after the reboot


async def test_connection_limit_and_fifth_client(sim):
    clients = [await asyncio.open_connection("127.0.0.1", sim.port) for _ in range(4)]
    await eventually(lambda: sim.connection_count == 4)
    dev = Thermostat("127.0.0.1", sim.port, timeout=1.0)
    with pytest.raises(ConnectionError):
        await dev.connect()
    clients[0][1].close()
    assert len(await eventually(dev.report)) == 2
    for _, writer in clients[1:]:
        writer.close()
    await dev.close()


async def test_hang_times_out_then_recovers_without_stale_reply(sim):
    dev = Thermostat("127.0.0.1", sim.port, timeout=0.3)
    await dev.connect()
    sim.faults.hang = True
    with pytest.raises(TimeoutError):
        await dev.get_pid()
    assert not dev.connected
    sim.faults.hang = False
    postfilter = await eventually(dev.get_postfilter)
    assert set(postfilter[0]) == {"channel", "rate"}
    await dev.close()


async def test_slow_reply_is_never_handed_to_the_next_command(sim):
    dev = Thermostat("127.0.0.1", sim.port, timeout=0.2)
    await dev.connect()
    sim.faults.delay_ms = 600
    with pytest.raises(TimeoutError):
        await dev.report()
    sim.faults.delay_ms = 0
    pid = await eventually(dev.get_pid)
    assert set(pid[0]) == {"channel", "parameters", "target"}
    await dev.close()


async def test_reply_cut_mid_line_then_in_step(sim, dev):
    sim.faults.cut_replies = 1
    with pytest.raises(ConnectionError):
        await dev.report()
    hw = await eventually(dev.get_hwrev)
    assert "rev" in hw
    assert [ch["channel"] for ch in await dev.report()] == [0, 1]


async def test_garbage_line_drops_the_connection_then_in_step(sim, dev):
    sim.faults.garbage_replies = 1
    with pytest.raises(ConnectionError, match="not a valid reply"):
        await dev.get_pid()
    ipv4 = await eventually(dev.get_ipv4)
    assert "addr" in ipv4
    assert "parameters" in (await dev.get_pid())[0]


async def test_refused_connections_back_off_then_recover(sim):
    sim.faults.refuse = True
    dev = Thermostat("127.0.0.1", sim.port, timeout=0.5, backoff_max=0.2)
    with pytest.raises(ConnectionError):
        await dev.report()
    with pytest.raises(ConnectionError, match="unreachable"):
        await dev.report()  # inside the backoff window: fails fast without a new attempt
    sim.faults.refuse = False
    await sim.wait_online()
    assert len(await eventually(dev.report)) == 2
    await dev.close()


async def test_concurrent_commands_are_serialised(dev):
    results = await asyncio.gather(dev.report(), dev.get_pid(), dev.get_postfilter(),
                                   dev.get_output(), dev.get_b_parameter(), dev.report())
    assert "temperature" in results[0][0] and "parameters" in results[1][0]
    assert "rate" in results[2][0] and "max_v" in results[3][0] and "params" in results[4][0]
    assert "temperature" in results[5][1]


async def test_a_polling_loop_stops_at_the_first_cancel(dev):
    """A reply already read when the task is cancelled: the cancellation
    still wins (asyncio.wait_for before Python 3.12 returned the reply and
    dropped it, and a loop of polls ran on)."""
    stop = asyncio.Event()  # ends a loop whose cancellation was dropped

    async def polls():
        while not stop.is_set():
            await dev.report()
    for tenths_ms in range(20):  # cancelled at different points of an exchange
        stop.clear()
        task = asyncio.ensure_future(polls())
        await asyncio.sleep(tenths_ms / 10000)
        task.cancel()
        await asyncio.wait([task], timeout=5)
        dropped = not task.done()
        stop.set()
        await asyncio.wait([task], timeout=5)
        assert not dropped and task.cancelled(), \
            "a cancellation was dropped after {} ms".format(tenths_ms / 10)
    assert "temperature" in (await dev.report())[0]  # and the driver is in step again


async def test_closed_loop_settles_on_target(firmware):
    async with Simulator(firmware=firmware, speed=400, seed=2) as sim, \
            Thermostat("127.0.0.1", sim.port, timeout=1.0) as dev:
        await _settle(sim, dev, target=27.0)


async def _settle(sim, dev, target):
    for ch in (0, 1):
        await dev.set_output_limits(ch, max_i_pos=2, max_i_neg=2, max_v=4)
        await dev.set_pid_params(ch, kp=0.45, ki=0.012, kd=4.3)
        await dev.set_target(ch, target)
        await dev.engage_pid(ch)
    settled_since = None

    async def settled():
        nonlocal settled_since
        temps = [ch["temperature"] for ch in await dev.report()]
        if all(abs(t - target) < 0.02 for t in temps):
            settled_since = settled_since or sim.now()
            return sim.now() - settled_since > 30  # stays within tolerance for 30 simulated s
        settled_since = None
        return False

    await eventually(settled, timeout=60, interval=0.01)
    assert sim.now() < 600, "took more than 10 simulated minutes"

