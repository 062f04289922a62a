"""Fault injection against the HTTP bridge, polling the simulator every 0.2 s.

For every fault the bridge must keep serving, never store a reply that
belongs to another command, resume polling within two poll periods of the
device's recovery (measured from the moment the fault is cleared, or the
device is back online, to the ``ts`` of the first new row), leave a visible
gap (no row stamped inside the outage, one row per successful poll), and
say what happened in its counters, /health and /metrics.

Most tests run the bridge app in-process with the simulator on the same
event loop; one runs the ``thermostat_bridge`` CLI as a subprocess.
"""

import contextlib
import itertools
import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

import httpx
import pytest

from harness import (BRIDGE, DOUBLE_BRACE, FIRST, INVALID_REPLIES, SERVING, Process, SimThread,
                     TamperProxy, bridge_config, check_channels, free_port, hold_all_slots,
                     now_ms, only, read_log, release, wait_for, wait_until)
from thermostat_ctrl.bridge.status import fresh_sample
from thermostat_ctrl.bridge.web.app import create_app
from thermostat_ctrl.simulator import Simulator

PERIOD = 0.2
PERIOD_MS = int(PERIOD * 1000)
#: Simulated seconds per real second; with REBOOT_S a reset keeps the device
#: off the network for 1.5 real seconds.
SPEED = 20.0
REBOOT_S = 30.0


@contextlib.asynccontextmanager
async def bridge_at(port: int, data_dir):
    """Yield (bridge, client): the bridge app polling 127.0.0.1:``port``."""
    app = create_app(bridge_config(data_dir, devices=["{}=127.0.0.1:{}".format(FIRST, port)],
                                   poll_period=PERIOD, memory_s=120.0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield app.state.bridge, client


@dataclass
class Fault:
    """One way for the device to fail: ``apply`` starts it, ``clear`` ends it
    and returns once the device is able to answer again; ``reason`` is the
    poll-failure counter it must raise."""

    name: str
    apply: Callable[[Simulator, TamperProxy], Awaitable[None]]
    clear: Callable[[Simulator, TamperProxy], Awaitable[None]]
    reason: str
    proxied: bool = False  #: poll through the proxy (to replace replies)


def _setting(name: str, on, off) -> tuple:
    async def apply(sim: Simulator, proxy: TamperProxy) -> None:
        setattr(sim.faults, name, on)

    async def clear(sim: Simulator, proxy: TamperProxy) -> None:
        setattr(sim.faults, name, off)
    return apply, clear


def _mangling(make: Callable[[], Callable[[bytes], Optional[bytes]]]) -> tuple:
    async def apply(sim: Simulator, proxy: TamperProxy) -> None:
        proxy.mangle = make()

    async def clear(sim: Simulator, proxy: TamperProxy) -> None:
        proxy.mangle = None
    return apply, clear


def _invalid_lines() -> Callable[[bytes], bytes]:
    lines = itertools.cycle(INVALID_REPLIES)
    return lambda line: next(lines)


async def _refuse(sim: Simulator, proxy: TamperProxy) -> None:
    sim.faults.refuse = True
    sim.drop_connections()  # `refuse` keeps open connections


async def _accept(sim: Simulator, proxy: TamperProxy) -> None:
    sim.faults.refuse = False
    await sim.wait_online()


async def _reset(sim: Simulator, proxy: TamperProxy) -> None:
    sim.reset()


async def _rebooted(sim: Simulator, proxy: TamperProxy) -> None:
    await sim.wait_online()


_held: list = []


async def _take_slots(sim: Simulator, proxy: TamperProxy) -> None:
    _held[:] = await hold_all_slots(sim)


async def _free_one_slot(sim: Simulator, proxy: TamperProxy) -> None:
    await release(_held, sim, keep=3)


FAULTS = [
    Fault("refused", _refuse, _accept, "connection"),
    Fault("hang", *_setting("hang", True, False), "timeout"),
    Fault("cut_mid_line", *_setting("cut_replies", 10 ** 9, 0), "connection"),
    Fault("garbage_lines", *_setting("garbage_replies", 10 ** 9, 0), "protocol"),
    Fault("invalid_json", *_mangling(_invalid_lines), "protocol", proxied=True),
    Fault("double_brace", *_mangling(lambda: lambda line: DOUBLE_BRACE), "device_error",
          proxied=True),
    Fault("reset", _reset, _rebooted, "connection"),
    Fault("slots_taken", _take_slots, _free_one_slot, "connection"),
    Fault("slower_than_timeout", *_setting("delay_ms", 1000.0, 0.0), "timeout"),
]


async def _rows(client: httpx.AsyncClient, start: int, end: Optional[int] = None) -> list:
    params = {"from": start} if end is None else {"from": start, "to": end}
    r = await client.get("/series", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _gap_mark(row: dict) -> bool:
    """True for the row an answer puts inside a gap: no values at all."""
    return all(v is None for k, v in row.items() if k not in ("time", "ts"))


async def _check_serving_during_outage(client: httpx.AsyncClient, reason: str) -> dict:
    """The endpoints answer while the device is away; return /health's body."""
    r = await client.get("/health", params={"device": FIRST})
    assert r.status_code == 503 and r.json()["status"] == "stale", r.text
    health = r.json()
    assert health["poll_errors"].get(reason, 0) >= 1 and health["last_error"], health
    r = await client.get("/report")
    assert r.status_code == 503 and "stale" in r.json()["detail"], r.text
    metrics = (await client.get("/metrics")).text
    assert 'thermostat_up{device="%s"} 0.0' % FIRST in metrics
    assert re.search(r'thermostat_poll_errors_total\{device="%s",reason="%s"\} [1-9]'
                     % (FIRST, reason), metrics)
    assert "thermostat_temperature_celsius{" not in metrics  # stale values not exported
    assert (await client.get("/data.csv")).status_code == 200
    return health


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_bridge_survives_and_recovers(fault: Fault, tmp_path):
    async with Simulator(speed=SPEED, reboot_s=REBOOT_S, seed=1) as sim:
        proxy = TamperProxy(sim.port)
        await proxy.start()
        try:
            port = proxy.port if fault.proxied else sim.port
            async with bridge_at(port, tmp_path) as (bridge, client):
                await _outage_and_recovery(fault, sim, proxy, bridge, client, tmp_path)
        finally:
            await proxy.stop()


async def _outage_and_recovery(fault, sim, proxy, bridge, client, tmp_path) -> None:
    poller = only(bridge).poller
    await wait_for(lambda: poller.polls_ok >= 5, what="5 polls")
    began = now_ms()
    await fault.apply(sim, proxy)
    # The outage lasts until /health turns stale (3 poll periods without a row)
    # and at least three polls have failed for the expected reason.
    await wait_for(lambda: poller.failures[fault.reason] >= 3, what="3 failed polls")
    await wait_for(lambda: fresh_sample(only(bridge)) is None, what="stale data")
    during = await _check_serving_during_outage(client, fault.reason)
    await fault.clear(sim, proxy)
    cleared = now_ms()
    recovered = await wait_for(lambda: _rows(client, cleared), what="a row after recovery")
    recovery_ms = recovered[0]["ts"] - cleared
    print("bridge {}: outage {} ms, {} failed polls ({}), recovery {} ms".format(
        fault.name, cleared - began, poller.polls_failed, dict(poller.failures), recovery_ms))
    assert recovery_ms <= 2 * PERIOD_MS, recovery_ms

    # The gap is visible: no sample stamped inside the outage, only the row
    # that marks the gap (every value null) ...
    rows = await _rows(client, 0)
    inside = [r for r in rows if began + PERIOD_MS <= r["ts"] < cleared]
    assert len(inside) == 1 and _gap_mark(inside[0]), inside
    rows = [r for r in rows if not _gap_mark(r)]
    ts = [r["ts"] for r in rows]
    assert max(b - a for a, b in zip(ts, ts[1:])) >= cleared - began - 2 * PERIOD_MS
    # ... the rows are spaced by the schedule (never bunched) ...
    assert min(b - a for a, b in zip(ts, ts[1:])) >= PERIOD_MS // 2
    # ... and there is exactly one row per successful poll, in memory and on disk.
    await wait_for(lambda: poller.polls_ok >= len(rows) + 2, what="2 more polls")
    # The store writes on its own thread: it catches up with every poll.
    await wait_for(lambda: only(bridge).store.rows_written == poller.polls_ok,
                   what="every polled row written")
    logged = read_log(tmp_path / FIRST)
    assert [int(row[1]) for _, _, row in logged][:len(ts)] == ts

    # No reply of another command was taken for a report.
    r = await client.get("/report")
    assert r.status_code == 200
    check_channels(r.json()["channels"], "report")
    assert all(r["temperature_ch0"] is not None and r["device_time_ch0"] is not None
               for r in rows)
    # Only the bridge's own commands ever reached the device.
    assert not fault.proxied or proxy.lines
    assert set(proxy.lines) <= {b"report", b"pid", b"hwrev", b"output"}, set(proxy.lines)

    r = await client.get("/health", params={"device": FIRST})
    assert r.status_code == 200
    health = r.json()
    assert health["status"] == "ok" and health["connected"] and health["last_error"] is None
    assert health["poll_errors"][fault.reason] >= during["poll_errors"][fault.reason]
    assert health["polls_ok"] == poller.polls_ok and health["rows_refused"] == 0


async def test_device_absent_at_start(tmp_path):
    port = free_port()
    async with bridge_at(port, tmp_path) as (bridge, client):
        poller = only(bridge).poller
        await wait_for(lambda: poller.failures["connection"] >= 3, what="3 failed polls")
        r = await client.get("/health", params={"device": FIRST})
        assert r.status_code == 503
        health = r.json()
        assert health["status"] == "no data" and not health["connected"]
        assert health["firmware"] is None and "127.0.0.1:{}".format(port) in health["last_error"]
        r = await client.get("/report")
        assert r.status_code == 503 and "no reading yet" in r.json()["detail"]
        assert (await client.get("/series")).json() == []
        assert (await client.get("/metrics")).status_code == 200
        sim = Simulator(speed=SPEED)
        await sim.start("127.0.0.1", port)
        try:
            cleared = now_ms()
            rows = await wait_for(lambda: _rows(client, 0), what="a first row")
            recovery_ms = rows[0]["ts"] - cleared
            print("bridge absent_at_start: {} failed polls, recovery {} ms".format(
                poller.polls_failed, recovery_ms))
            assert recovery_ms <= 2 * PERIOD_MS
            await wait_for(lambda: poller.polls_ok >= 3, what="3 polls")
            health = (await client.get("/health", params={"device": FIRST})).json()
            assert health["status"] == "ok" and health["firmware"] == "2025"
            await wait_for(lambda: len(read_log(tmp_path / FIRST)) == poller.polls_ok,
                           what="every polled row in the log")
        finally:
            await sim.stop()


def test_cli_process_stays_up_through_faults(tmp_path):
    """The real ``thermostat_bridge`` process through a hang, a reset and a
    refusal of the simulator (run in a thread of this process)."""
    device = SimThread(speed=SPEED, reboot_s=REBOOT_S)
    process = Process(BRIDGE + ["-d", "{}=127.0.0.1:{}".format(FIRST, device.port), "--port", "0",
                                "--data-dir", str(tmp_path), "--poll-period", str(PERIOD)])
    try:
        url = process.wait_for_line(SERVING).group(1)
        with httpx.Client(base_url=url, timeout=5) as client:
            def health() -> dict:
                return client.get("/health", params={"device": FIRST}).json()

            def fresh_rows(after: int) -> list:
                return client.get("/series", params={"from": after}).json()

            wait_until(lambda: health()["polls_ok"] >= 3, what="3 polls")
            outages = [
                ("hang", lambda: device.set_fault("hang", True),
                 lambda: device.set_fault("hang", False), "timeout"),
                ("reset", lambda: device.call(device.sim.reset),
                 lambda: device.run(device.sim.wait_online()), "connection"),
                ("refused", lambda: device.call(lambda: (_refuse_now(device.sim))),
                 lambda: (device.set_fault("refuse", False),
                          device.run(device.sim.wait_online())), "connection"),
            ]
            for name, apply, clear, reason in outages:
                failed = health()["poll_errors"].get(reason, 0)
                apply()
                wait_until(lambda: health()["poll_errors"].get(reason, 0) >= failed + 2,
                           what=name + " failures")
                wait_until(lambda: health()["status"] == "stale", what=name + " stale")
                clear()
                cleared = now_ms()
                rows = wait_until(lambda: fresh_rows(cleared), what=name + " recovery")
                print("bridge CLI {}: recovery {} ms".format(name, rows[0]["ts"] - cleared))
                assert rows[0]["ts"] - cleared <= 2 * PERIOD_MS
            assert process.proc.poll() is None
            final = wait_until(lambda: (lambda h: h["polls_ok"] == h["csv_rows_written"] and h)(
                health()), what="every polled row written")
        assert process.stop() == 0
    finally:
        process.stop()
        device.stop()
    assert len(read_log(tmp_path / FIRST)) >= final["csv_rows_written"]


def _refuse_now(sim: Simulator) -> None:
    sim.faults.refuse = True
    sim.drop_connections()
