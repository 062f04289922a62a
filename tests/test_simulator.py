"""End-to-end tests of the Thermostat simulator over real loopback TCP (raw bytes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Awaitable, Callable

import pytest

from thermostat_ctrl.simulator import Faults, Simulator

INVALID = b'{ "error": "invalid input" }\n'
NOT_FOUND = b'{{"error": "flash config not found"}}\n'
REPORT_KEYS = ["channel", "time", "interval", "adc", "sens", "temperature", "pid_engaged",
               "i_set", "dac_value", "dac_feedback", "i_tec", "tec_i", "tec_u_meas",
               "pid_output"]


def run_sim(test: Callable[[Simulator], Awaitable[None]], timeout: float = 20.0,
            **kwargs) -> None:
    """Run ``test(sim)`` against a started simulator in a fresh event loop."""
    kwargs.setdefault("seed", 1)

    async def main() -> None:
        async with Simulator(**kwargs) as sim:
            await asyncio.wait_for(test(sim), timeout)

    asyncio.run(main())


class Client:
    """Minimal raw-bytes client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, sim: Simulator) -> "Client":
        return cls(*await asyncio.open_connection(sim.host, sim.port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = 3.0) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def cmd(self, text: str) -> bytes:
        """Send one command, return its reply line without the newline."""
        await self.send(text.encode() + b"\n")
        return (await self.line()).rstrip(b"\n")

    async def json(self, text: str):
        return json.loads(await self.cmd(text))

    async def closed_by_rst(self) -> bool:
        """Read to the end; True if the peer reset the connection."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), 3.0):
                pass
        except ConnectionResetError:
            return True
        return False

    def close(self) -> None:
        self.writer.close()


async def wait_until(sim: Simulator, cond: Callable[[], bool], sim_deadline: float) -> float:
    """Poll ``cond`` until true or until ``sim.now()`` passes ``sim_deadline``."""
    while not cond():
        if sim.now() > sim_deadline:
            raise AssertionError(f"condition not met by t={sim_deadline} s (simulated)")
        await asyncio.sleep(0.005)
    return sim.now()


async def power_limits(c: Client, ch: int) -> None:
    for lim, value in (("max_i_pos", 2), ("max_i_neg", 2), ("max_v", 4)):
        assert await c.cmd(f"output {ch} {lim} {value}") == b"{}"


# ---- grammar on the wire ------------------------------------------------------

CONSEQUENCES = {
    "2025": [
        ("output ", "["), ("pid ", "["), ("report ", "["), ("output 0 max_v 2.5 ", "{}"),
        ("pid 0 kp 0.5 ", None), ("b-p 0 r0 10000 ", None), ("postfilter 0 off ", None),
        ("ipv4 10.0.0.5/8 ", "{}"), ("ipv4 10.0.0.5/8 10.0.0.1 ", None), ("fan 50 ", None),
        ("fan auto ", None), ("fcurve 1 0 0 ", None), ("quit ", None), ("reset ", None),
        ("dfu ", None), ("hwrev ", None), ("PID", None), ("pid 2 kp 1", None),
        ("pid 0 kp 1e-3", None), ("output 0 i_set +1", None), ("center", None),
        ("fcurve", None), ("output 0", None), ("pid\t0 kp 1", None), ("report mode", None),
        ("report mode on", None), ("pwm", None), ("s-h", None), ("pwm 0 i_set 1", None),
        ("output 0 polarity normal", "{}"), ("b-p", "["),
    ],
    "2023": [
        ("pwm ", "["), ("pid ", "["), ("report ", "["), ("pwm 0 max_v 2.5 ", "{}"),
        ("pid 0 kp 0.5 ", None), ("s-h 0 r0 10000 ", None), ("postfilter 0 off ", None),
        ("ipv4 10.0.0.5/8 ", "{}"), ("ipv4 10.0.0.5/8 10.0.0.1 ", None), ("fan 50 ", None),
        ("fan auto ", None), ("fcurve 1 0 0 ", None), ("quit ", None), ("reset ", None),
        ("dfu ", None), ("hwrev ", None), ("report mode on ", None),
        ("report mode ", '{ "report": false }'), ("PID", None), ("pid 2 kp 1", None),
        ("pid 0 kp 1e-3", None), ("pwm 0 i_set +1", None), ("center", None), ("fcurve", None),
        ("pwm 0", None), ("pid\t0 kp 1", None), ("output", None), ("b-p", None),
        ("output 0 polarity normal", None), ("pwm 0 polarity normal", None), ("s-h", "["),
    ],
}


@pytest.mark.parametrize("firmware", ["2025", "2023"])
def test_consequences_table_on_the_wire(firmware):
    rows = CONSEQUENCES[firmware]

    async def test(sim):
        c = await Client.connect(sim)
        # Pipelined in one write: replies must come back in order, one line each.
        await c.send(b"".join(line.encode() + b"\n" for line, _ in rows))
        for line, expected in rows:
            reply = await c.line()
            if expected is None:
                assert reply == INVALID, line
            elif expected == "[":
                assert reply.startswith(b"[{\"channel\":0,") and reply.endswith(b"]\n"), line
            else:
                assert reply == expected.encode() + b"\n", line
        assert sim.connection_count == 1

    run_sim(test, firmware=firmware)


def test_line_terminators_and_empty_lines():
    async def test(sim):
        c = await Client.connect(sim)
        await c.send(b"\n\r\r\nipv4\rhwrev\r\npostfilter\n\n\r\n")
        assert (await c.line()).startswith(b'{"addr":')
        assert (await c.line()).startswith(b'{"rev":')
        assert (await c.line()).startswith(b'[{"channel":0,"rate":')
        # nothing was answered for the empty lines: the next reply is for this command
        assert await c.cmd("ipv4") == b'{"addr":"192.168.1.26/24"}'

    run_sim(test)


def test_partial_line_across_writes():
    async def test(sim):
        c = await Client.connect(sim)
        await c.send(b"pid 0 tar")
        await asyncio.sleep(0.05)
        await c.send(b"get 12.5")
        await asyncio.sleep(0.05)
        await c.send(b"\npid\n")
        assert await c.line() == b"{}\n"
        assert b'"target":1.25e1' in await c.line()

    run_sim(test)


def test_64_byte_truncation():
    async def test(sim):
        c = await Client.connect(sim)
        padded = b"output 0 max_v 1" + b" " * 48  # exactly 64 bytes
        assert len(padded) == 64
        await c.send(padded + b"garbage beyond the buffer\n")
        assert await c.line() == b"{}\n"  # truncated to a valid line
        kp = b"pid 0 kp 0." + b"0" * 53
        assert len(kp) == 64
        await c.send(kp + b"5\n")  # the 5 is dropped: kp = 0, not 5e-54
        assert await c.line() == b"{}\n"
        pid = await c.json("pid")
        assert pid[0]["parameters"]["kp"] == 0.0
        await c.send(b"x" * 100 + b"\n")
        assert await c.line() == INVALID
        out = await c.json("output")
        assert out[0]["max_v"] == 1.0

    run_sim(test)


# ---- reply bytes and shapes -------------------------------------------------------

def test_literals_and_number_format():
    async def test(sim):
        c = await Client.connect(sim)
        assert await c.cmd("bogus") + b"\n" == INVALID
        assert await c.cmd("pid 0 target 25") == b"{}"
        assert await c.cmd("pid 1 kp 0.3") == b"{}"
        assert await c.cmd("pid 1 ki 0.002") == b"{}"
        assert await c.cmd("pid 1 output_min -1") == b"{}"
        pid = await c.cmd("pid")
        assert pid == (b'[{"channel":0,"parameters":{"kp":0e0,"ki":0e0,"kd":0e0,'
                       b'"output_min":-2e0,"output_max":2e0},"target":2.5e1},'
                       b'{"channel":1,"parameters":{"kp":3e-1,"ki":2e-3,"kd":0e0,'
                       b'"output_min":-1e0,"output_max":2e0},"target":0e0}]')
        assert await c.cmd("b-p 1 t0 20") == b"{}"
        assert await c.cmd("b-p 1 b 3950") == b"{}"
        assert await c.cmd("b-p") == (b'[{"channel":0,"params":{"t0":2.9815e2,"r0":1e4,"b":3.8e3}},'
                                      b'{"channel":1,"params":{"t0":2.9315e2,"r0":1e4,"b":3.95e3}}]')
        assert await c.cmd("output 0 i_set -0.02") == b"{}"
        assert b'"i_set":-2e-2' in await c.cmd("output")
        assert await c.cmd("fan 50") == (
            b'{ "warning": "this fan doesn\'t have full PWM support. Use it at your own risk!" }')
        assert await c.cmd("load 0") + b"\n" == NOT_FOUND

    run_sim(test)


def test_reply_shapes_2025():
    async def test(sim):
        c = await Client.connect(sim)
        report = await c.json("report")
        assert [r["channel"] for r in report] == [0, 1]
        assert all(list(r) == REPORT_KEYS for r in report)
        output = await c.json("output")
        assert list(output[0]) == ["channel", "center", "i_set", "max_v", "max_i_pos",
                                   "max_i_neg", "polarity"]
        assert output[0]["center"] == "vref" and output[0]["polarity"] == "normal"
        assert await c.cmd("output 1 polarity reversed") == b"{}"
        assert await c.cmd("center 1 1.6") == b"{}"
        assert await c.cmd("output 1 max_v 9") == b"{}"  # clamped to 4.3
        assert await c.cmd("output 1 i_set -5") == b"{}"  # clamped to -2
        assert (await c.cmd("output")).endswith(
            b'{"channel":1,"center":1.6e0,"i_set":-2e0,"max_v":4.3e0,"max_i_pos":0e0,'
            b'"max_i_neg":0e0,"polarity":"reversed"}]')
        pid = await c.json("pid")
        assert list(pid[0]) == ["channel", "parameters", "target"]
        assert list(pid[0]["parameters"]) == ["kp", "ki", "kd", "output_min", "output_max"]
        assert await c.cmd("postfilter 0 rate 100") == b"{}"
        assert await c.cmd("postfilter 1 off") == b"{}"
        assert await c.cmd("postfilter") == b'[{"channel":0,"rate":2.727e1},{"channel":1,"rate":null}]'
        assert await c.cmd("postfilter 1 rate 21") == b"{}"
        assert await c.cmd("postfilter") == b'[{"channel":0,"rate":2.727e1},{"channel":1,"rate":2e1}]'
        assert await c.cmd("ipv4") == b'{"addr":"192.168.1.26/24"}'
        assert await c.cmd("ipv4 10.0.0.5/8 10.0.0.1") == b"{}"
        assert await c.cmd("ipv4") == b'{"addr":"10.0.0.5/8","gateway":"10.0.0.1"}'
        assert await c.cmd("hwrev") == (
            b'{"rev":{"major":2,"minor":2},"settings":{"fan_k_a":1e0,"fan_k_b":0e0,'
            b'"fan_k_c":0e0,"min_fan_pwm":4e-2,"max_fan_pwm":1e0,"fan_pwm_freq_hz":25000,'
            b'"fan_available":true,"fan_pwm_recommended":false}}')
        fan = await c.json("fan")
        assert list(fan) == ["fan_pwm", "abs_max_tec_i", "auto_mode", "k_a", "k_b", "k_c"]
        assert fan["auto_mode"] is True
        assert await c.cmd("fcurve 0.5 0.25 0") == b"{}"
        await c.cmd("fan 0")
        assert (await c.cmd("fan")).startswith(b'{"fan_pwm":1,')
        assert b'"k_a":5e-1,"k_b":2.5e-1,"k_c":0e0' in await c.cmd("fan")
        assert await c.cmd("fcurve default") == b"{}"
        await c.cmd("fan auto")
        assert (await c.json("fan"))["auto_mode"] is True

    run_sim(test)


def test_reply_shapes_2023():
    async def test(sim):
        c = await Client.connect(sim)
        assert await c.cmd("pwm") == (
            b'[{"channel":0,"center":"vref","i_set":{"value":0e0,"max":3e0},'
            b'"max_v":{"value":0e0,"max":5e0},"max_i_pos":{"value":0e0,"max":3e0},'
            b'"max_i_neg":{"value":0e0,"max":3e0}},{"channel":1,"center":"vref",'
            b'"i_set":{"value":0e0,"max":3e0},"max_v":{"value":0e0,"max":5e0},'
            b'"max_i_pos":{"value":0e0,"max":3e0},"max_i_neg":{"value":0e0,"max":3e0}}]')
        assert await c.cmd("pwm 0 max_v 10") == b"{}"  # no clamp on FW-2023
        assert (await c.json("pwm"))[0]["max_v"] == {"value": 10.0, "max": 5.0}
        assert await c.cmd("s-h") == (b'[{"channel":0,"params":{"t0":2.9815e2,"r0":1e4,"b":3.8e3}},'
                                      b'{"channel":1,"params":{"t0":2.9815e2,"r0":1e4,"b":3.8e3}}]')
        assert await c.cmd("postfilter") == b'[{"channel":0,"rate":1.667e1},{"channel":1,"rate":1.667e1}]'
        assert await c.cmd("postfilter 0 rate 22") == b"{}"
        assert b'"rate":2.125e1' in await c.cmd("postfilter")
        assert all(list(r) == REPORT_KEYS for r in await c.json("report"))
        assert await c.cmd("report mode") == b'{ "report": false }'

    run_sim(test, firmware="2023")


def test_report_timing():
    async def test(sim):
        c = await Client.connect(sim)
        r1 = await c.json("report")  # the ADC ran before the network came up
        r2 = await c.json("report")
        for a, b in zip(r1, r2):
            assert 0.11 < a["interval"] < 0.13
            assert b["time"] - a["time"] in (0.0, pytest.approx(a["interval"], abs=2e-3))
            assert round(a["time"] * 1000) == pytest.approx(a["time"] * 1000, abs=1e-6)
        offset = abs(r1[0]["time"] - r1[1]["time"])
        assert 0.04 < offset < 0.08  # channels sampled alternately, ≈ half an interval apart
        assert r1[0]["temperature"] == pytest.approx(25.0, abs=0.02)
        assert r1[0]["sens"] == pytest.approx(10_000, rel=1e-3)
        adc = r1[0]["adc"]
        assert r1[0]["sens"] == pytest.approx(10_200 * adc / (1.65 - adc))

    run_sim(test, speed=20)


# ---- save / load / flash ------------------------------------------------------------

def test_save_load(tmp_path):
    flash = str(tmp_path / "flash.json")

    async def test(sim):
        c = await Client.connect(sim)
        await c.send(b"load\n")
        assert await c.line() == NOT_FOUND
        assert await c.line() == NOT_FOUND
        assert await c.cmd("pid 0 target 25.3") == b"{}"
        assert await c.cmd("save 0") == b"{}"
        assert await c.cmd("pid 0 target 10") == b"{}"
        assert await c.cmd("load 0") == b"{}"
        assert b'"target":2.5299999237060547e1' in await c.cmd("pid")
        await c.send(b"load\n")
        assert await c.line() == b"{}\n"
        assert await c.line() == NOT_FOUND
        await c.send(b"save\nhwrev\n")
        assert await c.line() == b"{}\n"
        assert await c.line() == b"{}\n"
        assert (await c.line()).startswith(b'{"rev"')
        await c.send(b"load\n")
        assert await c.line() == b"{}\n"
        assert await c.line() == b"{}\n"

    run_sim(test, flash_path=flash)
    saved = json.load(open(flash))
    assert set(saved) == {"ch0", "ch1"}

    async def reload(sim):  # a new simulator boots from the persisted flash
        c = await Client.connect(sim)
        assert b'"target":2.5299999237060547e1' in await c.cmd("pid")

    run_sim(reload, flash_path=flash)


# ---- connections ----------------------------------------------------------------------

def test_fifth_connection_is_reset_and_quit_closes():
    async def test(sim):
        clients = [await Client.connect(sim) for _ in range(4)]
        for c in clients:
            assert (await c.cmd("hwrev")).startswith(b'{"rev"')
        assert sim.connection_count == 4
        fifth = await Client.connect(sim)
        assert await fifth.closed_by_rst()
        assert sim.connection_count == 4
        # shared state: a setter on one connection is visible on another
        assert await clients[0].cmd("pid 1 target 30") == b"{}"
        assert b'"target":3e1}]' in await clients[3].cmd("pid")
        await clients[0].send(b"quit\n")
        assert await clients[0].reader.read() == b""  # FIN, no reply
        await wait_until(sim, lambda: sim.connection_count == 3, sim.now() + 60)
        again = await Client.connect(sim)
        assert (await again.cmd("ipv4")).startswith(b'{"addr"')

    run_sim(test)


def test_half_close_still_answers():
    async def test(sim):
        c = await Client.connect(sim)
        await c.send(b"ipv4\n")
        c.writer.write_eof()
        assert await c.reader.read() == b'{"addr":"192.168.1.26/24"}\n'

    run_sim(test)


@pytest.mark.parametrize("word", ["reset", "dfu", "api"])
def test_reset_reboots_from_flash(word):
    async def test(sim):
        a, b = await Client.connect(sim), await Client.connect(sim)
        assert await a.cmd("pid 0 target 30") == b"{}"
        assert await a.cmd("output 0 max_v 3") == b"{}"
        assert await a.cmd("save 0") == b"{}"
        assert await a.cmd("pid 0 target 20") == b"{}"
        assert await a.cmd("pid 1 target 20") == b"{}"
        if word == "api":
            sim.reset()
        else:
            await a.send(word.encode() + b"\n")
        assert await a.closed_by_rst()  # no reply, RST
        assert await b.closed_by_rst()
        with pytest.raises(ConnectionRefusedError):
            await Client.connect(sim)
        await sim.wait_online()
        assert sim.now() < 5.0  # time since boot restarted
        c = await Client.connect(sim)
        pid = await c.json("pid")
        assert pid[0]["target"] == 30.0 and pid[1]["target"] == 0.0
        out = await c.json("output")
        assert out[0]["max_v"] == 3.0 and out[1]["max_v"] == 0.0

    run_sim(test, speed=100, reboot_s=30)


def test_drop_connections():
    async def test(sim):
        a = await Client.connect(sim)
        assert await a.cmd("pid 0 target 21") == b"{}"
        sim.drop_connections()
        assert await a.closed_by_rst()
        c = await Client.connect(sim)
        assert b'"target":2.1e1' in await c.cmd("pid")  # device stayed up, state kept

    run_sim(test)


# ---- physics ---------------------------------------------------------------------------

def test_boot_limits_zero_means_no_current():
    async def test(sim):
        c = await Client.connect(sim)
        assert await c.cmd("output 0 i_set 1") == b"{}"
        t_end = sim.now() + 60
        await wait_until(sim, lambda: sim.now() > t_end, t_end + 60)
        report = await c.json("report")
        assert report[0]["i_set"] == 1.0
        assert abs(report[0]["tec_i"]) < 0.01
        assert sim.true_temperature(0) == pytest.approx(25.0, abs=1e-9)
        await power_limits(c, 0)
        await wait_until(sim, lambda: sim.true_temperature(0) < 20.0, sim.now() + 300)
        report = await c.json("report")
        assert report[0]["tec_i"] == pytest.approx(1.0, abs=0.01)  # positive current cools
        assert await c.cmd("output 0 i_set -1") == b"{}"
        await wait_until(sim, lambda: sim.true_temperature(0) > 28.0, sim.now() + 300)

    run_sim(test, speed=500)


def test_reversed_polarity_swaps_direction():
    async def test(sim):
        c = await Client.connect(sim)
        await power_limits(c, 1)
        assert await c.cmd("output 1 polarity reversed") == b"{}"
        assert await c.cmd("output 1 i_set 1") == b"{}"
        await wait_until(sim, lambda: sim.true_temperature(1) > 27.0, sim.now() + 300)
        report = await c.json("report")
        assert report[1]["tec_i"] == pytest.approx(1.0, abs=0.01)
        assert report[1]["dac_value"] == pytest.approx(1.0)

    run_sim(test, speed=500)


def settle(sim: Simulator, ch: int, target: float, tol: float = 0.01, hold: float = 20.0):
    """Coroutine: wait until the plant stays within ``tol`` of ``target`` for ``hold`` s."""
    since = [None]

    def settled() -> bool:
        now = sim.now()
        if abs(sim.true_temperature(ch) - target) > tol:
            since[0] = None
            return False
        if since[0] is None:
            since[0] = now
        return now - since[0] >= hold

    return settled


@pytest.mark.parametrize("gains", [(0.45, 0.012, 4.3), (0.15, 0.004, 1.5)])
def test_closed_loop_settles(gains):
    kp, ki, kd = gains

    async def test(sim):
        c = await Client.connect(sim)
        for ch, target in ((0, 15), (1, 35)):
            await power_limits(c, ch)
            for name, value in (("kp", kp), ("ki", ki), ("kd", kd), ("target", target)):
                assert await c.cmd(f"pid {ch} {name} {value}") == b"{}"
            assert await c.cmd(f"output {ch} pid") == b"{}"
        t0 = sim.now()
        done0, done1 = settle(sim, 0, 15), settle(sim, 1, 35)
        await wait_until(sim, lambda: done0() and done1(), t0 + 600)
        report = await c.json("report")
        for ch, target in ((0, 15), (1, 35)):
            assert report[ch]["pid_engaged"] is True
            assert report[ch]["temperature"] == pytest.approx(target, abs=0.02)
            assert report[ch]["i_set"] == report[ch]["pid_output"]
        assert report[0]["tec_i"] > 0.5 > -0.5 > report[1]["tec_i"]
        # i_set disengages the PID
        assert await c.cmd("output 0 i_set 0") == b"{}"
        assert (await c.json("report"))[0]["pid_engaged"] is False

    run_sim(test, speed=500)


def test_pid_integrates_while_disengaged():
    async def test(sim):
        c = await Client.connect(sim)
        assert await c.cmd("pid 0 ki 0.01") == b"{}"
        assert await c.cmd("pid 0 target 30") == b"{}"  # 5 K below target -> heating output
        await wait_until(sim, lambda: sim.now() > 30, 120)
        report = await c.json("report")
        assert report[0]["pid_engaged"] is False
        assert report[0]["pid_output"] == -2.0  # clamped to output_min
        assert report[0]["i_set"] == 0.0

    run_sim(test, speed=500)


# ---- FW-2023 report mode ------------------------------------------------------------------

def test_report_mode_streaming_2023():
    async def test(sim):
        c = await Client.connect(sim)
        assert await c.cmd("report mode on") == b"{}"
        times = []
        for _ in range(6):
            report = json.loads(await c.line())
            assert [r["channel"] for r in report] == [0, 1]
            times.append(max(r["time"] for r in report))
        assert times == sorted(times) and times[-1] > times[0]
        # command replies are interleaved with report lines
        await c.send(b"report mode\n")
        while (line := await c.line()).startswith(b"[{"):
            pass
        assert line == b'{ "report": true }\n'
        other = await Client.connect(sim)  # the flag is per connection
        assert await other.cmd("report mode") == b'{ "report": false }'
        await c.send(b"report mode off\n")
        while (line := await c.line()).startswith(b"[{"):
            pass
        assert line == b"{}\n"
        assert (await c.cmd("hwrev")).startswith(b'{"rev"')  # streaming stopped

    run_sim(test, firmware="2023", speed=10)


def test_setpoint_kick_2023():
    async def test(sim):
        c = await Client.connect(sim)
        assert await c.cmd("pid 0 kp 0.1") == b"{}"
        t1 = sim.now() + 1
        await wait_until(sim, lambda: sim.now() > t1, t1 + 60)
        before = (await c.json("report"))[0]["pid_output"]
        assert await c.cmd("pid 0 target 10") == b"{}"
        t2 = sim.now() + 1
        await wait_until(sim, lambda: sim.now() > t2, t2 + 60)
        after = (await c.json("report"))[0]["pid_output"]
        assert after - before == pytest.approx(1.0, abs=0.05)  # kp * (target - previous)

    run_sim(test, firmware="2023", speed=20)


# ---- faults ---------------------------------------------------------------------------------

def test_fault_hang_and_delay():
    async def test(sim):
        c = await Client.connect(sim)
        sim.faults.hang = True
        await c.send(b"pid 0 target 20\n")
        with pytest.raises(asyncio.TimeoutError):
            await c.line(timeout=0.3)
        sim.faults.hang = False
        assert b'"target":0e0' in await c.cmd("pid")  # hung commands were discarded
        sim.faults.delay_ms = 150
        start = time.monotonic()
        assert (await c.cmd("ipv4")).startswith(b'{"addr"')
        assert time.monotonic() - start >= 0.15

    run_sim(test)


def test_fault_cut_and_garbage():
    async def test(sim):
        c = await Client.connect(sim)
        sim.faults.garbage_replies = 1
        await c.send(b"ipv4\n")
        assert await c.line() == b"#\x01garbage\n"
        assert await c.line() == b'{"addr":"192.168.1.26/24"}\n'
        assert await c.cmd("ipv4") == b'{"addr":"192.168.1.26/24"}'
        assert sim.faults.garbage_replies == 0
        sim.faults.cut_replies = 1
        await c.send(b"ipv4\n")
        data = b""
        with pytest.raises(ConnectionResetError):
            while chunk := await asyncio.wait_for(c.reader.read(100), 3):
                data += chunk
        assert b"\n" not in data
        assert sim.faults.cut_replies == 0
        c2 = await Client.connect(sim)
        assert await c2.cmd("ipv4") == b'{"addr":"192.168.1.26/24"}'

    run_sim(test)


def test_fault_refuse():
    async def test(sim):
        a = await Client.connect(sim)
        sim.faults.refuse = True
        with pytest.raises(ConnectionRefusedError):
            await Client.connect(sim)
        assert (await a.cmd("hwrev")).startswith(b'{"rev"')  # existing connection untouched
        sim.faults.refuse = False
        await sim.wait_online()
        b = await Client.connect(sim)
        assert (await b.cmd("hwrev")).startswith(b'{"rev"')

    run_sim(test)


def test_fault_unplugged():
    async def test(sim):
        sim.faults.unplugged.add(1)
        c = await Client.connect(sim)
        await power_limits(c, 1)
        assert await c.cmd("output 1 i_set 1") == b"{}"
        t1 = sim.now() + 1
        await wait_until(sim, lambda: sim.now() > t1, t1 + 60)
        report = await c.json("report")
        assert report[1]["adc"] is None and report[1]["sens"] is None
        assert report[1]["temperature"] is None
        assert report[0]["temperature"] is not None
        assert await c.cmd("output 1 pid") == b"{}"  # engaging without thermistor powers down
        report = await c.json("report")
        assert report[1]["i_set"] == 0.0 and abs(report[1]["tec_i"]) < 0.01
        sim.faults.unplugged = set()
        t2 = sim.now() + 1
        await wait_until(sim, lambda: sim.now() > t2, t2 + 60)
        measured = (await c.json("report"))[1]["temperature"]
        assert measured == pytest.approx(sim.sensor_temperature(1), abs=0.05)

    run_sim(test, speed=10)


def test_faults_defaults():
    f = Faults()
    assert (f.hang, f.delay_ms, f.cut_replies, f.garbage_replies, f.refuse, f.unplugged) == (
        False, 0.0, 0, 0, False, set())


# ---- CLI ------------------------------------------------------------------------------------

def test_cli_listening_line_and_clean_exit():
    proc = subprocess.Popen(
        [sys.executable, "-m", "thermostat_ctrl.simulator.cli", "--port", "0", "--speed", "50",
         "--seed", "3", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on 127.0.0.1:") and line.endswith("\n")
        port = int(line.rsplit(":", 1)[1])

        async def talk():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"report\n")
            reply = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            return reply

        assert asyncio.run(talk()).startswith(b'[{"channel":0,"time":')
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out == b""
    assert b"Traceback" not in err


def test_cli_rejects_bad_arguments():
    result = subprocess.run(
        [sys.executable, "-m", "thermostat_ctrl.simulator.cli", "--speed", "-1"],
        capture_output=True, timeout=10)
    assert result.returncode == 2
    assert b"usage:" in result.stderr and result.stdout == b""
