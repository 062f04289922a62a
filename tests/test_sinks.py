"""Sinks against real databases: InfluxDB 1.x (``influxd``) and
VictoriaMetrics, started on free loopback ports with temporary data.

* every sample of the CSV log arrives exactly once, values and timestamps
  equal (InfluxQL ``/query``; VictoriaMetrics ``/api/v1/export``);
* both databases down for 30 s while the bridge polls every 0.1 s: every
  sample arrives, in order on the wire, none twice;
* the bridge SIGKILLed while the database is down, restarted: every point
  acknowledged to the spool arrives;
* a wrong database or password: one clear error, counted, no tight retry
  loop, polling and the CSV log untouched;
* a database that answers slowly does not delay the polls.
"""

import logging
import shutil
import signal

import httpx
import pytest

from harness import (bridge_process, polled, read_log, running_bridge, wait_for,
                     wait_until)
from sinks_kit import (ADMIN, DelayProxy, Influxd, VictoriaMetrics, needs_influxd,
                       needs_victoria, wire_order)
from thermostat_ctrl.bridge.sinks.settings import sinks_from, spool_dir
from thermostat_ctrl.bridge.sinks.spool import Spool

DEVICES = ("sim0", "sim1")
SINK_LOGGER = "thermostat_ctrl.bridge.sinks.influx"


@pytest.fixture
def influxd(tmp_path):
    server = Influxd(tmp_path / "influxd").start()
    server.create_db("lab")
    yield server
    server.stop()


@pytest.fixture
def victoria(tmp_path):
    server = VictoriaMetrics(tmp_path / "victoria").start()
    yield server
    server.stop()


def csv_samples(data_dir, devices=DEVICES) -> dict:
    """``{(device, channel, ts): {field: value}}`` of every CSV row with a
    value in that channel."""
    out = {}
    for device in devices:
        for _, header, row in read_log(data_dir / device):
            ts = int(row[1])
            for column, cell in zip(header[2:], row[2:]):
                if cell != "":
                    field, _, ch = column.rpartition("_ch")
                    out.setdefault((device, ch, ts), {})[field] = float(cell)
    return out


def influx_samples(points: list) -> dict:
    """The same shape from InfluxDB points."""
    out = {}
    for point in points:
        key = (point.pop("device"), point.pop("channel"), point.pop("time"))
        assert key not in out, "point {} twice".format(key)
        out[key] = {k: float(v) for k, v in point.items()}
    return out


def victoria_samples(series: list, measurement: str = "thermostat") -> dict:
    """The same shape from VictoriaMetrics' export, checking that no sample
    is there twice."""
    out = {}
    for s in series:
        field = s["metric"]["__name__"][len(measurement) + 1:]
        assert len(set(s["timestamps"])) == len(s["timestamps"]), \
            "{} has a sample twice".format(s["metric"])
        for ts, value in zip(s["timestamps"], s["values"]):
            key = (s["metric"]["device"], s["metric"]["channel"], ts)
            out.setdefault(key, {})[field] = float(value)
    return out


#: VictoriaMetrics keeps 12 significant decimal digits of a value.
VICTORIA_DIGITS = 1e-11


def victoria_found(victoria, expected: dict) -> dict:
    """:func:`victoria_samples` once the export holds every key of
    ``expected`` (or after 30 s): VictoriaMetrics makes what it acknowledged
    searchable a little later, new series especially."""
    found: dict = {}

    def complete() -> bool:
        found.clear()
        found.update(victoria_samples(victoria.export()))
        return set(expected) <= set(found)

    try:
        wait_until(complete, timeout=30, interval=0.5, what="VictoriaMetrics to show every point")
    except AssertionError:
        pass  # same() tells what is missing
    return found


def same(expected: dict, found: dict, rel: float = 0.0) -> None:
    """Assert two ``{(device, channel, ts): fields}`` maps are equal, values
    within ``rel`` (exactly by default)."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    assert not missing and not extra, "missing {} (of {}), extra {}".format(
        missing[:5], len(missing), extra[:5])
    for key, fields in expected.items():
        if rel:
            assert found[key] == pytest.approx(fields, rel=rel, abs=1e-300), key
        else:
            assert found[key] == fields, key


def caught_up(state) -> bool:
    """The sink writes and holds no sample older than a second (while the
    bridge polls, a few newer ones always wait for their batch)."""
    return state.status == "ok" and (state.oldest_unsent_age_s is None
                                     or state.oldest_unsent_age_s < 1.0)


async def sent_everything(bridge) -> None:
    """Wait until every sink has caught up (the rest is sent when the bridge stops)."""
    await wait_for(lambda: all(caught_up(s.state()) for s in bridge.sinks), timeout=60,
                   what="sinks caught up")


@needs_influxd
@needs_victoria
async def test_every_csv_sample_arrives_exactly_once(tmp_path, influxd, victoria):
    urls = [influxd.base + "/write?db=lab",
            victoria.base + "/api/v2/write?org=lab&bucket=thermostat"]
    async with running_bridge(tmp_path / "data", simulation=2, influx=urls,
                              influx_batch_s=0.2, influx_batch_points=50) as (bridge, client):
        await polled(bridge, 40)
        await wait_for(lambda: all(s.state().points_sent > 0 for s in bridge.sinks),
                       what="first batches")
        health = (await client.get("/health")).json()["sinks"]
        metrics = (await client.get("/metrics")).text
    assert set(health) == set(urls) and all(h["status"] == "ok" for h in health.values())
    for url in urls:
        assert 'thermostat_sink_points_sent_total{{sink="{}"}}'.format(url) in metrics
        assert 'thermostat_sink_backlog_points{{sink="{}"}}'.format(url) in metrics
    # Stopping the bridge sent what was left.
    assert all(s.state().backlog_points == 0 for s in bridge.sinks)
    expected = csv_samples(tmp_path / "data")
    assert len(expected) >= 2 * 2 * 40
    points = influxd.points("lab")
    assert any(p.get("target") in (24.0, 26.0) for p in points)  # the setpoint, where known
    assert {type(p["pid_engaged"]) for p in points} == {int}
    same(expected, influx_samples(points))
    same(expected, victoria_found(victoria, expected), rel=VICTORIA_DIGITS)
    assert [s.state().points_sent for s in bridge.sinks] == [len(expected)] * 2


@needs_influxd
@needs_victoria
async def test_a_30_s_outage_loses_nothing_and_replays_in_order(tmp_path, influxd, victoria):
    influxd.create_db("wire")
    proxy = DelayProxy(influxd.base)  # records what reaches the database, in order
    urls = [influxd.base + "/write?db=lab", victoria.base + "/write?db=lab",
            proxy.base + "/write?db=wire"]
    try:
        async with running_bridge(tmp_path / "data", simulation=2, influx=urls,
                                  poll_period=0.1, influx_backoff_max_s=2.0) as (bridge, _):
            await wait_for(lambda: all(s.state().points_sent >= 20 for s in bridge.sinks),
                           what="sinks writing")
            influxd.stop()
            victoria.stop()
            polls = bridge.devices[DEVICES[0]].poller.polls_ok
            await wait_for(lambda: bridge.devices[DEVICES[0]].poller.polls_ok >= polls + 300,
                           timeout=60, what="30 s of polls at 0.1 s")
            states = [s.state() for s in bridge.sinks]
            assert all(s.status == "retrying" and s.backlog_points >= 2 * 2 * 250
                       for s in states), states
            assert all(s.oldest_unsent_age_s > 25 for s in states), states
            assert all(s.retries >= 5 for s in states)
            influxd.start()
            victoria.start()
            await sent_everything(bridge)
        for device in bridge.devices.values():
            assert device.poller.skipped == 0 and device.store.write_errors == 0
        expected = csv_samples(tmp_path / "data")
        same(expected, influx_samples(influxd.points("lab")))
        same(expected, victoria_found(victoria, expected), rel=VICTORIA_DIGITS)
        order = wire_order(proxy.bodies)
        for series, stamps in order.items():
            assert stamps == sorted(set(stamps)), "{}: out of order or twice".format(series)
        assert sum(len(s) for s in order.values()) == len(expected)
        assert all(s.state().dropped_points == 0 for s in bridge.sinks)
    finally:
        proxy.close()


def sink_health(url: str) -> dict:
    try:
        return next(iter(httpx.get(url + "/health", timeout=2).json()["sinks"].values()))
    except (httpx.TransportError, StopIteration, KeyError, ValueError):
        return {}


@needs_influxd
def test_sigkill_during_an_outage_then_restart_delivers_the_spool(tmp_path):
    server = Influxd(tmp_path / "influxd").start()
    server.create_db("lab")
    server.stop()  # down from the start
    data = tmp_path / "data"
    sink = server.base + "/write?db=lab"
    extra = ["--influx", sink, "--influx-batch-s", "0.2"]
    try:
        with bridge_process(data, *extra) as (process, url):
            wait_until(lambda: sink_health(url).get("backlog_points", 0) >= 200,
                       what="a backlog in the spool")
            assert sink_health(url)["status"] == "retrying"
            process.proc.send_signal(signal.SIGKILL)
            process.proc.wait(10)
        first_run = csv_samples(data, DEVICES[:1])
        # What the spool holds now: a copy, read with the bridge's own reader.
        folder = spool_dir(str(data), sinks_from(sink, {})[0])
        copy = tmp_path / "spool-copy"
        shutil.copytree(folder, copy)
        spooled = Spool(str(copy), 1 << 30)
        lines = []
        while (batch := spooled.read(10_000, 1 << 24)) is not None:
            lines.extend(batch.payload.decode().splitlines())
            spooled.ack(batch)
        assert len(lines) >= 200
        spooled_keys = set()
        for line in lines:
            head, _, ts = line.rpartition(" ")
            tags = dict(t.split("=") for t in head.split(" ")[0].split(",")[1:])
            spooled_keys.add((tags["device"], tags["channel"], int(ts)))
        server.start()
        with bridge_process(data, *extra) as (process, url):
            wait_until(lambda: sink_health(url).get("points_sent", 0) >= len(lines),
                       timeout=60, what="the spool replayed")
        arrived = influx_samples(server.points("lab"))
        assert spooled_keys <= set(arrived)
        for key in spooled_keys:
            assert arrived[key] == first_run[key], key
        # The samples of the first run that never reached the spool are only
        # the last few the bus had not yet handed to the sink when it was killed.
        lost = sorted(set(first_run) - set(arrived))
        assert len(lost) <= 2 * 10 and all(k[2] > max(t for _, _, t in spooled_keys)
                                           for k in lost), lost
        everything = csv_samples(data, DEVICES[:1])
        assert set(everything) - set(arrived) == set(lost)
    finally:
        server.stop()


@needs_influxd
@pytest.mark.parametrize("case", ["no such database", "wrong password"])
async def test_a_wrong_database_or_password_is_refused_clearly_once(tmp_path, caplog, case):
    server = Influxd(tmp_path / "influxd", auth=True).start()
    try:
        server.create_db("lab")
        db, password = ("nodb", ADMIN[1]) if case == "no such database" else ("lab", "wrong")
        url = server.base + "/write?db=" + db
        caplog.set_level(logging.INFO, logger=SINK_LOGGER)
        async with running_bridge(tmp_path / "data", influx=[url], influx_user=ADMIN[0],
                                  influx_password=password, influx_batch_s=0.1,
                                  influx_backoff_max_s=1.5) as (bridge, client):
            (sink,) = bridge.sinks
            await wait_for(lambda: sink.state().refused >= 1, what="a refusal")
            polls = bridge.devices[DEVICES[0]].poller.polls_ok
            await polled(bridge, polls + 40)  # 2 s of polls at 0.05 s
            state = sink.state()
            assert state.status == "refused" and state.points_sent == 0
            assert 1 <= state.refused <= 3, "a tight retry loop: {}".format(state)
            assert state.backlog_points >= 2 * polls  # kept, not thrown away
            message = ('database not found: \\"nodb\\"' if db == "nodb"
                       else "authorization failed")
            assert "HTTP {}".format(404 if db == "nodb" else 401) in state.last_error
            assert message in state.last_error
            health = (await client.get("/health")).json()
            assert health["status"] == "ok"  # the devices are fine
            assert health["sinks"][url]["status"] == "refused"
            errors = [r for r in caplog.records
                      if r.name == SINK_LOGGER and r.levelno >= logging.ERROR]
            assert len(errors) == 1 and message in errors[0].getMessage()
            device = bridge.devices[DEVICES[0]]
            assert device.poller.skipped == 0
            assert device.store.rows_written >= device.poller.polls_ok - 1
            if db == "nodb":
                server.create_db("nodb")  # fixed: the backlog follows, nothing lost
                await sent_everything(bridge)
        if db == "nodb":
            same(csv_samples(tmp_path / "data", DEVICES[:1]),
                 influx_samples(server.points("nodb")))
    finally:
        server.stop()


@needs_influxd
async def test_a_slow_database_does_not_delay_polls(tmp_path, influxd):
    proxy = DelayProxy(influxd.base, delay=1.5)
    try:
        async with running_bridge(tmp_path / "data", influx=[proxy.base + "/write?db=lab"],
                                  influx_batch_s=0.1) as (bridge, _):
            (sink,) = bridge.sinks
            device = bridge.devices[DEVICES[0]]
            await polled(bridge, 10)
            start = device.poller.polls_ok
            await wait_for(lambda: sink.state().batches_sent >= 3, timeout=30,
                           what="three slow batches")
            polls = device.poller.polls_ok - start
            slow = sink.state()
            assert slow.points_sent / slow.batches_sent >= 10  # batches grew meanwhile
            assert device.poller.skipped == 0
            # Each write took 1.5 s; polls went on at 0.05 s meanwhile.
            assert polls >= 3 * 1.5 / 0.05 * 0.8, polls
            proxy.delay = 0  # fast again: the backlog drains
            await sent_everything(bridge)
        rows = read_log(tmp_path / "data" / DEVICES[0])
        stamps = [int(row[1]) for _, _, row in rows]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        assert max(gaps) < 3 * 50, max(gaps)  # no poll waited for the database
        assert sink.state().backlog_points == 0
        same(csv_samples(tmp_path / "data", DEVICES[:1]), influx_samples(influxd.points("lab")))
    finally:
        proxy.close()

