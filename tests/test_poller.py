"""The poller: a drift-free schedule that skips the instants it missed, and
a failing device that never delays the others of a lab."""

import asyncio
import contextlib
import time

import numpy as np
import pytest

from harness import now_ms, polled, read_log, running_bridge, wait_for
from thermostat_ctrl.bridge.acquisition import poller as poller_module
from thermostat_ctrl.bridge.acquisition.bus import SampleBus
from thermostat_ctrl.bridge.acquisition.poller import Poller
from thermostat_ctrl.bridge.status import fresh_sample
from thermostat_ctrl.simulator import Simulator

NAMES = ["sim0", "sim1", "sim2"]


class _FakeDriver:
    """Answers report() after a delay chosen per call; records call times."""

    connected, firmware = True, "2025"

    def __init__(self, delays, pid_s=0.0):
        self.delays = delays
        self.pid_s = pid_s  # seconds get_pid() takes
        self.target = 25.0
        self.calls = []

    async def report(self):
        self.calls.append(time.monotonic())
        await asyncio.sleep(self.delays.get(len(self.calls), 0.0))
        return [{"channel": ch, "temperature": 25.0, "pid_engaged": True} for ch in (0, 1)]

    async def get_pid(self):
        await asyncio.sleep(self.pid_s)
        return [{"channel": ch, "target": self.target} for ch in (0, 1)]

    async def get_output(self):
        return [{"channel": ch, "max_i_pos": 1.0, "max_i_neg": 1.0, "max_v": 4.0}
                for ch in (0, 1)]

    async def get_hwrev(self):
        return {"rev": {"major": 2, "minor": 2}}

    async def close(self):
        pass


async def test_schedule_is_drift_free_and_skips_late_polls():
    period = 0.1
    driver = _FakeDriver({4: 2.3 * period})  # the 4th poll overruns two instants
    bus = SampleBus()
    published = bus.subscribe("test")
    poller = Poller("dev", bus, period)
    task = asyncio.ensure_future(poller.run(driver))
    try:
        await wait_for(lambda: len(driver.calls) >= 12, what="12 polls")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    samples = published.get(0)
    # Every successful poll was published once, in order, with the device's name.
    assert len(samples) == poller.polls_ok and {s.device for s in samples} == {"dev"}
    assert [s.ts for s in samples] == sorted({s.ts for s in samples})
    start = driver.calls[0]
    slots = [(t - start) / period for t in driver.calls]
    # Every poll starts on the grid start + n * period (no drift) ...
    assert all(abs(s - round(s)) < 0.4 for s in slots), slots
    ns = [round(s) for s in slots]
    # ... the late one made the loop skip the instants it missed, never bunch
    # (on a busy machine another poll may be late too: it skips the same way) ...
    assert all(b > a for a, b in zip(ns, ns[1:])), ns
    assert ns[4] - ns[3] >= 3, ns
    # ... and every instant without a poll is counted as skipped (the last
    # poll may have been late too when the test stopped the loop).
    assert poller.skipped >= ns[-1] + 1 - len(ns) >= 2
    assert poller.fields == ["temperature", "pid_engaged", "target"]
    # The targets are read with pid between polls: unknown (empty) in the
    # first row, known in every later one.
    assert np.isnan(samples[0].values[-2:]).all()
    assert all(s.values[-2:].tolist() == [25.0, 25.0] for s in samples[1:])


async def test_targets_that_never_fit_between_two_polls_are_still_read(monkeypatch):
    # get_pid takes 1.5 periods: more than any gap between two polls.
    period = 0.1
    monkeypatch.setattr(poller_module, "DETAILS_LATE_S", 0.5)
    driver = _FakeDriver({}, pid_s=1.5 * period)
    poller = Poller("dev", SampleBus(), period)
    task = asyncio.ensure_future(poller.run(driver))
    try:
        await wait_for(lambda: poller.targets == [25.0, 25.0], what="the first targets")
        driver.target = 26.0  # changed by another client
        await wait_for(lambda: poller.targets == [26.0, 26.0], what="the changed targets")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # They were read at the cost of polls skipped, never of the grid.
    start = driver.calls[0]
    slots = [(t - start) / period for t in driver.calls]
    assert all(abs(s - round(s)) < 0.4 for s in slots), slots
    assert poller.skipped >= 1


#: Poll period of the lab tests with misbehaving devices.
LAB_PERIOD = 0.1


@contextlib.asynccontextmanager
async def lab_of_simulators(data_dir, n: int = 3):
    """(bridge, client, sims): a bridge polling ``n`` simulators of this loop
    every :data:`LAB_PERIOD` s."""
    # A reset keeps a device off the network for 30 simulated s (1.5 s).
    sims = [Simulator(speed=20.0, seed=i, reboot_s=30.0) for i in range(n)]
    ports = [await sim.start("127.0.0.1", 0) for sim in sims]
    try:
        devices = ["{}=127.0.0.1:{}".format(name, port) for name, port in zip(NAMES, ports)]
        async with running_bridge(data_dir, devices=devices, poll_period=LAB_PERIOD) as (
                bridge, client):
            yield bridge, client, sims
    finally:
        for sim in sims:
            await sim.stop()


FAULTS = {
    "hang": (lambda sim: setattr(sim.faults, "hang", True),
             lambda sim: setattr(sim.faults, "hang", False)),
    "slow": (lambda sim: setattr(sim.faults, "delay_ms", 5000.0),
             lambda sim: setattr(sim.faults, "delay_ms", 0.0)),
    "cut": (lambda sim: setattr(sim.faults, "cut_replies", 10 ** 6),
            lambda sim: setattr(sim.faults, "cut_replies", 0)),
    "refuse": (lambda sim: (setattr(sim.faults, "refuse", True), sim.drop_connections()),
               lambda sim: setattr(sim.faults, "refuse", False)),
    "reset": (lambda sim: sim.reset(), lambda sim: None),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_failing_device_never_delays_the_others(tmp_path, fault):
    apply, clear = FAULTS[fault]
    async with lab_of_simulators(tmp_path) as (bridge, client, sims):
        await polled(bridge, 5)
        bad, good = bridge.devices[NAMES[0]], [bridge.devices[n] for n in NAMES[1:]]
        apply(sims[0])
        began, skipped = now_ms(), {d.name: d.poller.skipped for d in good}
        await wait_for(lambda: bad.poller.polls_failed >= 3, what="3 failed polls")
        during = {d.name: d.poller.polls_ok for d in good}
        await wait_for(lambda: all(d.poller.polls_ok >= during[d.name] + 10 for d in good),
                       what="10 more polls of the others")
        ended = now_ms()
        # While the fault lasted (the simulators share the test's loop: their own
        # start and recovery may be slow on a busy machine, the bridge's polls not).
        assert all(d.poller.skipped == skipped[d.name] for d in good), skipped
        clear(sims[0])
        await wait_for(lambda: fresh_sample(bad) is not None, timeout=15, what="recovery")
        for device in good:
            assert device.poller.polls_failed == 0
            rows = (await client.get("/series", params={
                "device": device.name, "from": began, "to": ended})).json()
            ts = np.array([r["ts"] for r in rows])
            # Their schedule held: a row every period, none missing.
            gaps = np.diff(ts)
            assert len(ts) >= 10 and gaps.max() < 2 * LAB_PERIOD * 1000, gaps
        assert bad.poller.failures, bad.poller.failures
    for name in NAMES:  # stopped: every polled row of every device is on disk
        device = bridge.devices[name]
        assert len(read_log(tmp_path / name)) == device.poller.polls_ok == \
            device.store.rows_written

