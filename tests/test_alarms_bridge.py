"""Alarms end to end: each simulator fault raises its alarm in /alarms,
/metrics and /health and clears when the fault goes; notifications reach
real receivers (an HTTP webhook, an SMTP server); a receiver that is down is
retried and delays no poll; a bad rule stops the bridge before it starts."""

import contextlib
import json
import re
import socket
import subprocess
import sys

import httpx
import pytest

from harness import BRIDGE, Process, SERVING, free_port, running_bridge, wait_for, wait_until
from receivers import MailReceiver, WebhookReceiver
from thermostat_ctrl import procedures
from thermostat_ctrl.bridge.alarms.book import AlarmBook
from thermostat_ctrl.bridge.alarms.notify import Notifier
from thermostat_ctrl.bridge.alarms.rules import Finding
from thermostat_ctrl.driver import Thermostat
from thermostat_ctrl.simulator import Simulator

SPEED = 20.0
POLL = 0.1


def scaled(speed: float) -> dict:
    """The rules' default times scaled to the simulated time (wall seconds =
    simulated / speed)."""
    return {"out_of_band": {"hold_s": 60 / speed},
            "not_settled": {"settle_timeout_s": 600 / speed},
            "tec_open": {"hold_s": 10 / speed}, "runaway": {"hold_s": 60 / speed},
            "sensor_implausible": {"window_s": 10 / speed},
            "drift": {"window_s": 3600 / speed, "max_k_per_h": 0.01 * speed}}


SCALED = scaled(SPEED)
TARGET = 20.0  # 5 K below ambient: the TEC carries a steady current


@contextlib.asynccontextmanager
async def regulated_bridge(tmp_path, alarms=SCALED, speed=SPEED):
    """(bridge, client, sim): a bridge polling a simulator whose two channels
    hold :data:`TARGET`, once both are in band."""
    sim = Simulator(speed=speed, seed=3)
    port = await sim.start("127.0.0.1", 0)
    try:
        async with Thermostat("127.0.0.1", port) as driver:
            for ch in (0, 1):
                await procedures.power_up(driver, ch, TARGET, kp=0.45, ki=0.012, kd=4.3,
                                          max_i_pos=1.0, max_i_neg=1.0, max_v=4.0)
        async with running_bridge(tmp_path, devices=["cavity=127.0.0.1:{}".format(port)],
                                  poll_period=POLL, alarms=alarms) as (bridge, client):
            await wait_for(lambda: all(bridge.monitor.tracker("cavity", ch).state == "in_band"
                                       for ch in (0, 1)), timeout=120, what="both in band")
            yield bridge, client, sim
    finally:
        await sim.stop()


async def active(client) -> dict:
    return {(a["channel"], a["rule"]): a for a in (await client.get("/alarms")).json()}


async def alarm_metrics(client) -> set:
    text = (await client.get("/metrics")).text
    return set(re.findall(r'thermostat_alarm_active\{channel="(\d?)",device="cavity",'
                          r'rule="(\w+)",severity="(\w+)"\} 1\.0', text))


def set_fault(name, ch):
    def apply(sim, on):
        channels = getattr(sim.faults, name)
        (channels.add if on else channels.discard)(ch)
    return apply


FAULTS = {
    "sensor_open": (set_fault("unplugged", 1), 1, "critical"),
    "sensor_implausible": (set_fault("shorted", 0), 0, "critical"),
    "tec_open": (set_fault("tec_open", 0), 0, "critical"),
    "runaway": (set_fault("overheat", 1), 1, "critical"),
}


@pytest.mark.parametrize("rule", FAULTS)
async def test_a_device_fault_raises_its_alarm_and_clears_when_it_goes(tmp_path, rule):
    fault, ch, severity = FAULTS[rule]
    async with regulated_bridge(tmp_path) as (bridge, client, sim):
        assert await active(client) == {}
        fault(sim, True)
        alarm = (await wait_for(lambda: _get(client, ch, rule), timeout=60,
                                what=rule + " raised"))
        assert alarm["severity"] == severity and alarm["message"].startswith(
            "cavity ch{}: ".format(ch))
        assert (str(ch), rule, severity) in await alarm_metrics(client)
        health = (await client.get("/health")).json()
        assert health["alarms"] >= 1
        status = health["devices"][0]["channels"][ch]
        assert status["state"] == "fault" and rule in status["alarms"]
        fault(sim, False)
        await wait_for(lambda: _none_left(client), timeout=90, what="every alarm cleared")
        assert await alarm_metrics(client) == set()
        log = [(e["event"], e["rule"]) for e in (await client.get("/alarms/history")).json()]
        assert ("raised", rule) in log and ("cleared", rule) in log


async def _get(client, ch, rule):
    return (await active(client)).get((ch, rule))


async def _none_left(client):
    return await active(client) == {}


async def test_a_device_off_the_network_raises_offline_and_clears_on_return(tmp_path):
    async with regulated_bridge(tmp_path) as (bridge, client, sim):
        sim.faults.refuse = True
        sim.drop_connections()
        alarm = await wait_for(lambda: _get(client, None, "offline"), timeout=30,
                               what="offline raised")
        assert alarm["message"].startswith("cavity: no answer for")
        status = (await client.get("/health")).json()["devices"][0]
        assert status["connection"] in ("stale", "disconnected")
        sim.faults.refuse = False
        await wait_for(lambda: _none_left(client), timeout=30, what="offline cleared")


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_no_false_alarm_over_a_long_normal_run_with_setpoint_changes(tmp_path):
    """Every rule on (drift too, over half an hour), an hour of simulated
    time with noise and two setpoint changes: not one alarm.

    At this speed the bridge's reading of the target (once a wall second)
    lags the device by 40 simulated seconds, still within the hold time."""
    speed = 40.0
    every_rule = scaled(speed)
    every_rule["drift"].update(enabled=True, window_s=1800 / speed)
    async with regulated_bridge(tmp_path, every_rule, speed) as (bridge, client, sim):
        raised = []
        bridge.alarms.listen(lambda event, alarm: raised.append((event, alarm["message"])))
        async with Thermostat(*bridge.devices["cavity"].address) as driver:
            for target in (TARGET + 2, TARGET):
                await driver.set_target(0, target)
                began = sim.now()
                await wait_for(lambda: sim.now() - began > 600, timeout=60,
                               what="10 simulated minutes")
                assert bridge.monitor.tracker("cavity", 0).state == "in_band"
        began = sim.now()
        await wait_for(lambda: sim.now() - began > 2400, timeout=120, what="40 more minutes")
        assert [message for event, message in raised] == [] and await active(client) == {}
        assert bridge.monitor.evaluations > 2_000


# ---------------------------------------------------------- notifications

def notified(book, notifier):
    book.listen(notifier.on_alarm)
    return book


def test_raise_and_clear_reach_a_webhook_and_a_mailbox_once_each():
    with WebhookReceiver() as hook, MailReceiver() as mail:
        notifier = Notifier([hook.url, mail.url], min_interval_s=60)
        notifier.start()
        try:
            book = notified(AlarmBook(None, clear_s=0), notifier)
            book.observe("cavity", 1, "sensor_open", "critical",
                         Finding(float("nan"), "no temperature reading"))
            for _ in range(5):  # the same condition seen again: no new message
                book.observe("cavity", 1, "sensor_open", "critical",
                             Finding(float("nan"), "no temperature reading"))
            book.observe("cavity", 1, "sensor_open", "critical", "ok")
            wait_until(lambda: len(hook.bodies) == 2 and len(mail.messages) == 2
                       and all(s.sent == 2 for s in notifier.states()), what="two messages each")
            assert hook.titles() == ["[CRITICAL] cavity ch1: no temperature reading",
                                     "[CLEARED] cavity ch1: no temperature reading"]
            assert [b["type"] for b in hook.bodies] == ["failure", "success"]
            assert mail.subjects() == hook.titles()
            assert "Rule sensor_open" in mail.messages[0].get_body(("plain",)).get_content()
            # A raise again within the rate limit: suppressed, and its clear too.
            book.observe("cavity", 1, "sensor_open", "critical", Finding(1.0, "again"))
            book.observe("cavity", 1, "sensor_open", "critical", "ok")
            states = notifier.states()
            assert [s.suppressed for s in states] == [1, 1]
            assert [(s.sent, s.failed, s.pending) for s in states] == [(2, 0, 0), (2, 0, 0)]
            assert len(hook.bodies) == 2
        finally:
            notifier.stop()


def test_a_receiver_that_is_down_is_retried_until_it_answers():
    port = free_port()
    notifier = Notifier(["json://127.0.0.1:{}/hook".format(port)], backoff_s=0.05)
    notifier.start()
    try:
        book = notified(AlarmBook(None), notifier)
        book.observe("laser", None, "offline", "critical", Finding(12.0, "no answer for 12 s"))
        wait_until(lambda: notifier.states()[0].retries >= 2, what="two retries")
        state = notifier.states()[0]
        assert state.sent == 0 and state.pending == 1 and state.last_error
        with WebhookReceiver(port) as hook:
            wait_until(lambda: hook.bodies, timeout=30, what="the message delivered")
            assert hook.titles() == ["[CRITICAL] laser: no answer for 12 s"]
            wait_until(lambda: notifier.states()[0].sent == 1, what="counted as sent")
        assert notifier.states()[0].pending == 0 and notifier.states()[0].last_error is None
    finally:
        notifier.stop()


async def test_a_receiver_that_never_answers_delays_no_poll(tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        hook = "json://127.0.0.1:{}/hook".format(silent.getsockname()[1])
        async with running_bridge(tmp_path, poll_period=POLL, notify=[hook]) as (bridge, client):
            device = next(iter(bridge.devices.values()))
            await wait_for(lambda: device.poller.polls_ok >= 5, what="5 polls")
            device.simulation.sim.faults.unplugged = {0}
            await wait_for(lambda: bridge.alarms.active(), what="the alarm")
            await wait_for(lambda: bridge.notifier.states()[0].pending == 1, what="a message out")
            polls = device.poller.polls_ok
            await wait_for(lambda: device.poller.polls_ok >= polls + 30, what="30 more polls")
            assert device.poller.skipped == 0
            state = bridge.notifier.states()[0]
            assert state.sent == 0 and state.pending == 1
            notifiers = (await client.get("/health")).json()["notifiers"]
            assert notifiers[0]["pending"] == 1 and "hook" in notifiers[0]["url"]


# ---------------------------------------------------------- the command line

def test_a_bad_rule_is_one_line_and_exit_2_before_anything_is_written(tmp_path):
    config = tmp_path / "bridge.toml"
    config.write_text('[[device]]\nname = "cavity"\naddress = "127.0.0.1:1"\n'
                      '[device.alarms.ch1.out_of_band]\nband = 0.1\n')
    data = tmp_path / "data"
    result = subprocess.run(BRIDGE + ["--config", str(config), "--data-dir", str(data),
                                      "--port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "thermostat_bridge: error: {}: [[device]] 1 (cavity) alarms.ch1.out_of_band: unknown"
        " key 'band'; known: band_k, enabled, hold_s, hysteresis, severity".format(config)]
    assert not data.exists()


def test_a_notification_url_apprise_cannot_use_is_refused(tmp_path):
    result = subprocess.run(BRIDGE + ["--simulation", "--notify", "nosuch://secret@host",
                                      "--data-dir", str(tmp_path / "d"), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "secret" not in result.stderr
    assert "--notify: not a notification URL Apprise can use (nosuch://...)" in result.stderr
    assert not (tmp_path / "d").exists()


def test_unplugged_sensor_and_stopped_device_reach_page_api_metrics_webhook_and_mail(tmp_path):
    """The acceptance run: thermostat_sim --unplug 1 watched by
    thermostat_bridge --notify json://... --notify mailto://...; the fault
    switched off at run time; then the simulator stopped and started again."""
    sim_port = free_port()
    sim_argv = [sys.executable, "-m", "thermostat_ctrl.simulator.cli", "--port", str(sim_port),
                "--speed", "20", "--control-port", "0"]

    def start_sim(*extra):
        proc = subprocess.Popen(sim_argv + list(extra), stdout=subprocess.PIPE, text=True)
        control = int(re.search(r":(\d+)$", proc.stdout.readline().strip()).group(1))
        assert proc.stdout.readline().startswith("listening on")
        return proc, control

    sim, control = start_sim("--unplug", "1")
    with WebhookReceiver() as hook, MailReceiver() as mail:
        bridge = Process(BRIDGE + ["-d", "cavity=127.0.0.1:{}".format(sim_port), "--port", "0",
                                   "--data-dir", str(tmp_path), "--poll-period", "0.2",
                                   "--notify", hook.url, "--notify", mail.url])
        try:
            url = bridge.wait_for_line(SERVING).group(1)
            wait_until(lambda: any("no temperature" in t for t in hook.titles()), timeout=30,
                       what="the webhook")
            wait_until(lambda: mail.messages, what="the mail")
            assert mail.subjects()[0] == "[CRITICAL] cavity ch1: no temperature reading:" \
                " thermistor open or unplugged (the firmware has switched the output off)"
            [alarm] = httpx.get(url + "/alarms").json()
            assert (alarm["rule"], alarm["channel"]) == ("sensor_open", 1)
            assert 'rule="sensor_open"' in httpx.get(url + "/metrics").text
            page = httpx.get(url + "/")
            assert "alarms.js" in page.text
            with socket_to(control) as (reader, writer):
                writer.write(b"unplugged 1 off\n")
                writer.flush()
                assert json.loads(reader.readline()) == {"faults": {}}
            wait_until(lambda: any(t.startswith("[CLEARED]") for t in hook.titles()),
                       timeout=30, what="the clear by webhook")
            wait_until(lambda: len(mail.messages) == 2, what="the clear by mail")
            assert httpx.get(url + "/alarms").json() == []
            sim.send_signal(2)
            sim.wait(timeout=15)
            wait_until(lambda: any("offline" in a["rule"] for a in httpx.get(
                url + "/alarms").json()), timeout=30, what="offline raised")
            wait_until(lambda: any("no answer" in t for t in hook.titles()), what="its webhook")
            sim, control = start_sim()
            wait_until(lambda: httpx.get(url + "/alarms").json() == [], timeout=30,
                       what="offline cleared")
            wait_until(lambda: len(hook.bodies) == 4, what="its clear")
            assert bridge.stop() == 0
        finally:
            bridge.stop()
            sim.send_signal(2)
            sim.wait(timeout=15)


@contextlib.contextmanager
def socket_to(port):
    """(reader, writer) of a line connection to a loopback port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with sock.makefile("rb") as reader, sock.makefile("wb") as writer:
            yield reader, writer
