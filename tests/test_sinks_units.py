"""The sink's parts without a database: line protocol, the spool (torn
records, restart, the bound), the settings and the command line, and the
answers of a stub server (Retry-After, 413, a refusal)."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from harness import fill, free_port, polled, run_cli, running_bridge, wait_for, wait_until
from thermostat_ctrl.bridge import config
from thermostat_ctrl.bridge import schema
from thermostat_ctrl.bridge.acquisition.sample import Sample
from thermostat_ctrl.bridge.sinks.influx import InfluxSink, retry_after
from thermostat_ctrl.bridge.sinks.lineproto import PointEncoder
from thermostat_ctrl.bridge.sinks.settings import SPOOL_DIR, InfluxSettings, sinks_from, spool_dir
from thermostat_ctrl.bridge.sinks.spool import HEADER, Spool

TS = 1_795_759_540_123


def sample(ts=TS, device="laser", temperature=(25.0, 26.5), engaged=(True, False),
           tec_i=(0.125, None), targets=(25.0, None)):
    report = [{"channel": ch, "time": 12.5, "temperature": temperature[ch],
               "pid_engaged": engaged[ch], "tec_i": tec_i[ch], "name": "text, ignored"}
              for ch in range(2)]
    fields = schema.recordable_fields(report)
    return Sample(device, ts, 0.0, report, tuple(schema.columns_for(fields)),
                  schema.row_values(report, fields, targets=targets))


# ------------------------------------------------------------ line protocol

def test_points_of_a_sample():
    lines, points = PointEncoder().encode(sample())
    assert points == 2
    assert lines.decode().splitlines() == [
        "thermostat,channel=0,device=laser device_time=12.5,temperature=25,pid_engaged=1i,"
        "tec_i=0.125,target=25 1795759540123",
        "thermostat,channel=1,device=laser device_time=12.5,temperature=26.5,pid_engaged=0i"
        " 1795759540123",  # null tec_i and unknown target left out, never 0
    ]


def test_same_sample_same_bytes_and_nulls_left_out():
    encoder = PointEncoder("lab_tec")
    first = encoder.encode(sample(targets=(24.0, 26.0)))
    assert first == encoder.encode(sample(targets=(24.0, 26.0)))
    assert first[0].startswith(b"lab_tec,channel=0,device=laser ")
    empty = sample(temperature=(None, None), engaged=(None, None), tec_i=(None, None))
    empty.values[:] = np.nan
    assert encoder.encode(empty) == (b"", 0)
    precise = sample(temperature=(24.999999999999996, 1e-7))
    text = encoder.encode(precise)[0].decode()
    assert "temperature=24.999999999999996" in text and "temperature=1e-07" in text


@pytest.mark.parametrize("name", ["", "9lab", "a b", "x,y", "ü", "a" * 65])
def test_bad_measurement(name):
    with pytest.raises(ValueError, match="measurement"):
        PointEncoder(name)


# -------------------------------------------------------------------- spool

def records(n, start=0):
    return [(TS + i, "p{} 1 {}\n".format(i, TS + i).encode(), 1) for i in range(start, start + n)]


def append_until_dropped(spool) -> int:
    """Append records 100 at a time until the spool drops some; how many were appended."""
    n = 0
    while spool.stats().dropped_points == 0:
        spool.append(records(100, start=n))
        n += 100
        assert n < 100_000
    return n


def drain(spool, max_points=1000):
    out = []
    while True:
        batch = spool.read(max_points, 1 << 20)
        if batch is None:
            return out
        out.extend(batch.payload.decode().splitlines())
        assert spool.ack(batch)


def test_spool_survives_a_restart_and_resumes_after_the_ack(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(records(10))
    batch = spool.read(4, 1 << 20)
    assert batch.points == 4 and spool.ack(batch)
    unacked = spool.read(3, 1 << 20)  # read, never acknowledged: sent again after a restart
    spool.close()
    spool = Spool(tmp_path, 1 << 20)
    stats = spool.stats()
    assert stats.backlog_points == 6 and stats.oldest_unsent_ts == TS + 4
    assert spool.read(100, 1 << 20).payload.startswith(unacked.payload)
    assert drain(spool) == ["p{} 1 {}".format(i, TS + i) for i in range(4, 10)]
    assert spool.stats().backlog_points == 0 and spool.stats().oldest_unsent_ts is None


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size + 3])
def test_a_torn_record_is_cut_off_never_sent(tmp_path, cut):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(records(3))
    spool.close()
    segment = next(p for p in tmp_path.iterdir() if p.suffix == ".spool")
    whole = segment.stat().st_size
    with open(segment, "ab") as f:  # a crash in the middle of the next append
        f.write(b"".join(HEADER.pack(20, 1, TS, 1) + b"x" * 20 for _ in range(1))[:cut])
    spool = Spool(tmp_path, 1 << 20)
    assert segment.stat().st_size == whole
    assert spool.stats().backlog_points == 3
    spool.append(records(1, start=3))
    assert drain(spool) == ["p{} 1 {}".format(i, TS + i) for i in range(4)]


def test_a_corrupt_record_stops_the_segment_there(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(records(3))
    spool.close()
    segment = next(p for p in tmp_path.iterdir() if p.suffix == ".spool")
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # the last record's payload no longer matches its CRC
    segment.write_bytes(bytes(data))
    assert drain(Spool(tmp_path, 1 << 20)) == ["p0 1 {}".format(TS), "p1 1 {}".format(TS + 1)]


def test_full_spool_drops_the_oldest_and_counts_them(tmp_path, caplog):
    limit = 8 * 64 * 1024
    spool = Spool(tmp_path, limit)
    n = append_until_dropped(spool)
    stats = spool.stats()
    assert stats.size_bytes <= limit
    assert stats.backlog_points + stats.dropped_points == n
    assert "spool" in caplog.text and "dropped its oldest" in caplog.text
    lines = drain(spool)
    assert len(lines) == stats.backlog_points
    first = int(lines[0].split()[-1]) - TS
    assert first == stats.dropped_points  # exactly the oldest ones went
    assert lines == ["p{} 1 {}".format(i, TS + i) for i in range(first, n)]


def test_wait_due_by_count_and_by_age(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    assert not spool.wait_due(5, 0.2, timeout=0.01)
    spool.append(records(5))
    assert spool.wait_due(5, 100, timeout=0)  # by count
    spool.append(records(1, start=5))
    began = time.monotonic()
    assert spool.wait_due(1000, 0.2, timeout=5)  # by age
    assert time.monotonic() - began <= 0.3


# ----------------------------------------------------------------- settings

URL = "http://127.0.0.1:8086/write?db=lab"


@pytest.mark.parametrize("url, message", [
    ("ftp://h/write?db=x", "must be http"),
    ("http://h:8086/query?db=x", "write endpoint"),
    ("http://h:8086/api/v2/write?org=x", "needs bucket"),
    ("http://h:8086/write?db=x&precision=s", "precision=ms"),
    ("http://h:8086/write?db=x&u=a", "THERMOSTAT_INFLUX_USER"),
    ("http://h:8086/write?db=x&p=a", "THERMOSTAT_INFLUX_PASSWORD"),
    ("http://h:99999/write", "Port out of range"),
])
def test_bad_urls(url, message):
    with pytest.raises(ValueError, match=message):
        InfluxSettings(url)


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(ValueError) as error:
        InfluxSettings("http://admin:s3cret@h:8086/write?db=x")
    assert "s3cret" not in str(error.value) and "THERMOSTAT_INFLUX_PASSWORD" in str(error.value)


def test_settings_and_credentials(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc123\n")
    (v2,) = sinks_from(["http://h:8086/api/v2/write?org=o&bucket=b"],
                       {"token_file": str(token), "batch_points": 10})
    assert v2.v2 and v2.token == "abc123" and v2.headers() == {"Authorization": "Token abc123"}
    assert v2.write_url == "http://h:8086/api/v2/write?org=o&bucket=b&precision=ms"
    assert "abc123" not in repr(v2)
    (v1,) = sinks_from(URL, {"user": "u", "password": "pw"})
    assert v1.auth() == ("u", "pw") and not v1.v2
    with pytest.raises(ValueError, match="not both"):
        sinks_from(URL, {"token": "t", "user": "u", "password": "pw"})
    with pytest.raises(ValueError, match="needs a password"):
        sinks_from(URL, {"user": "u"})
    with pytest.raises(ValueError, match="cannot read"):
        sinks_from(URL, {"password_file": str(tmp_path / "missing"), "user": "u"})
    with pytest.raises(ValueError, match="more than once"):
        sinks_from([URL, URL], {})
    with pytest.raises(ValueError, match="batch_s given without an influx URL"):
        sinks_from([], {"batch_s": 2, "token": "from the environment"})
    assert sinks_from([], {"token": "from the environment"}) == ()
    for option, value in [("batch_points", 0), ("batch_points", 1.5), ("batch_s", -1),
                          ("spool_mb", 0.5), ("timeout_s", float("nan"))]:
        with pytest.raises(ValueError, match=option):
            sinks_from(URL, {option: value})
    a, b = sinks_from([URL, URL.replace("lab", "other")], {})
    assert spool_dir(str(tmp_path), a) != spool_dir(str(tmp_path), b)
    assert spool_dir(str(tmp_path), a).startswith(str(tmp_path / ".spool" / "127.0.0.1-8086-"))


def test_toml_and_environment(tmp_path):
    password = tmp_path / "pw"
    password.write_text("from-a-file")
    toml = tmp_path / "bridge.toml"
    toml.write_text('simulation = 1\ninflux = ["{}"]\ninflux_spool_mb = 8\n'
                    'influx_user = "writer"\ninflux_password_file = "{}"\n'.format(URL, password))
    cfg = config.from_env({"THERMOSTAT_CONFIG": str(toml), "THERMOSTAT_DATA_DIR": str(tmp_path)})
    (sink,) = cfg.influx
    assert sink.url == URL and sink.spool_mb == 8 and sink.auth() == ("writer", "from-a-file")
    cfg = config.from_env({"THERMOSTAT_SIMULATION": "1", "THERMOSTAT_INFLUX_TOKEN": "tok",
                           "THERMOSTAT_INFLUX": URL + ", http://h/api/v2/write?bucket=b"})
    assert [s.token for s in cfg.influx] == ["tok", "tok"]
    assert config.build(simulation=1).influx == ()


@pytest.mark.parametrize("args, message", [
    (["--influx", "http://h:8086/query"], "write endpoint"),
    (["--influx", URL, "--influx-batch-points", "0"], "batch_points"),
    (["--influx", URL, "--influx-measurement", "a b"], "measurement"),
    (["--influx", "http://u:pw@h:8086/write?db=x"], "credentials"),
])
def test_cli_refuses_bad_sink_options_with_one_line(tmp_path, args, message):
    r = run_cli("--simulation", "--data-dir", str(tmp_path), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr
    assert "pw" not in r.stderr.replace("password", "")


def test_retry_after_header():
    assert retry_after("3") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10.0
    assert retry_after("999999") == 600.0
    assert retry_after("soon") is None and retry_after(None) is None


# ------------------------------------------------------- answers of a stub

class Stub:
    """An HTTP server answering each POST with the next of ``answers``
    (status, headers), the last one repeatedly; records request times."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                stub.requests.append((time.monotonic(), self.path))
                status, headers = stub.answers[min(len(stub.requests), len(stub.answers)) - 1]
                body = json.dumps({"error": "stub says {}".format(status)}).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:{}/write?db=lab".format(self.server.server_address[1])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_sink(tmp_path):
    made = []

    def make(answers, **options):
        stub = Stub(answers)
        settings = InfluxSettings(stub.url, batch_s=0.05, backoff_max_s=0.4, **options)
        sink = InfluxSink(settings, str(tmp_path / "spool"))
        made.append((stub, sink))
        return stub, sink.start()

    yield make
    for stub, sink in made:
        sink.stop()
        stub.close()


def test_retry_after_is_honoured(stub_sink):
    stub, sink = stub_sink([(429, {"Retry-After": "1"}), (204, {})])
    sink.accept([sample(TS + i) for i in range(3)])
    wait_until(lambda: sink.state().points_sent == 6, what="sent after the 429")
    (first, _), (second, path) = stub.requests[:2]
    assert second - first >= 0.95 and "precision=ms" in path
    state = sink.state()
    assert state.retries == 1 and state.status == "ok" and state.last_error is None


def test_too_large_is_sent_in_halves(stub_sink):
    stub, sink = stub_sink([(413, {}), (204, {})], batch_points=100)
    sink.accept([sample(TS + i) for i in range(10)])
    wait_until(lambda: sink.state().points_sent == 20, what="sent in halves")
    assert sink.state().retries == 0


def test_a_refusal_is_logged_once_and_retried_slowly(stub_sink, caplog):
    stub, sink = stub_sink([(404, {})])
    sink.accept([sample()])
    wait_until(lambda: sink.state().refused >= 3, what="three refused requests")
    times = [t for t, _ in stub.requests]
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.35  # backoff_max_s, not a loop
    state = sink.state()
    assert state.status == "refused" and state.refused >= 3 and state.backlog_points == 2
    assert "stub says 404" in state.last_error and state.points_sent == 0
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "HTTP 404" in errors[0].getMessage()


def test_spool_dir_holds_nothing_but_the_spool(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    spool.append(records(2))
    drain(spool)
    assert sorted(os.listdir(tmp_path)) == ["000000000001.spool", "ack"]


def test_a_full_disk_holds_the_points_and_writes_them_in_order_once_space_returns(
        small_disk, caplog):
    spool = Spool(small_disk / "spool", 8 * 64 * 1024)
    assert spool.append(records(10))
    filler = fill(small_disk)
    written = [spool.append(records(1, start=10 + i)) for i in range(200)]
    assert not all(written)  # a few may fit in the page the segment already has
    stats = spool.stats()
    assert "No space left on device" in stats.error and stats.held_points == written.count(False)
    assert stats.dropped_points == 0 and "holding the points in memory" in caplog.text
    os.unlink(filler)
    assert spool.append(records(1, start=210))
    stats = spool.stats()
    assert (stats.error, stats.held_points, stats.dropped_points) == (None, 0, 0)
    assert stats.caught_up_points == written.count(False)
    assert drain(spool) == ["p{} 1 {}".format(i, TS + i) for i in range(211)]


def test_what_a_full_disk_makes_it_hold_beyond_a_segment_is_counted_dropped(small_disk):
    spool = Spool(small_disk / "spool", 8 * 64 * 1024)
    filler = fill(small_disk)
    n = append_until_dropped(spool)
    stats = spool.stats()
    assert stats.held_points + stats.dropped_points == n
    os.unlink(filler)
    assert spool.append(records(1, start=n))
    lines = drain(spool)
    first = int(lines[0].split()[-1]) - TS
    assert first == stats.dropped_points  # the oldest went, the newest were kept, in order
    assert lines == ["p{} 1 {}".format(i, TS + i) for i in range(first, n + 1)]


async def test_health_fails_while_a_sinks_spool_cannot_be_written(tmp_path, small_disk):
    data = tmp_path / "data"
    data.mkdir()
    (data / SPOOL_DIR).symlink_to(small_disk)  # only the spools live on the small disk
    url = "http://127.0.0.1:{}/write?db=lab".format(free_port())  # nobody answers
    async with running_bridge(data, influx=[url]) as (bridge, client):
        await polled(bridge, 3)
        filler = fill(small_disk)
        response = await wait_for(lambda: _spool(client, failing=True), what="the spool failing")
        (sink,) = response.json()["sinks"].values()
        assert response.status_code == 503 and response.json()["status"] == "failed"
        assert "No space left on device" in sink["spool_error"] and sink["held_points"] > 0
        os.unlink(filler)
        response = await wait_for(lambda: _spool(client, failing=False), what="the spool writing")
        (sink,) = response.json()["sinks"].values()
        assert response.json()["status"] != "failed" and sink["caught_up_points"] > 0
        assert sink["held_points"] == 0 and sink["dropped_points"] == 0


async def _spool(client, failing: bool):
    response = await client.get("/health")
    (sink,) = response.json()["sinks"].values()
    return response if (sink["spool_error"] is not None) == failing else None
