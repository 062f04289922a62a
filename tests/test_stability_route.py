"""``/stability`` and ``/stability.csv`` on a running bridge: the same Allan
deviation as allantools on the rows of ``/data.csv``, gaps, a channel without
a recorded setpoint, bad parameters."""

import csv
import json
import importlib.util
import io
from pathlib import Path

import allantools
import numpy as np
import pytest

from harness import FIRST, PERIOD, now_ms, only, polled, run_cli, running_bridge, wait_for
from thermostat_ctrl.bridge.storage.csvlog import CsvLog

ROOT = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000


def _gen_history():
    spec = importlib.util.spec_from_file_location("gen_history", ROOT / "scripts" / "gen_history.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _longest_run(rows):
    """(first ts, last ts, temperatures) of the longest run of CSV rows with a
    temperature (an empty cell is a gap marker)."""
    best, run = [], []
    for row in rows:
        if row["temperature_ch0"] == "":
            run = []
            continue
        run.append(row)
        if len(run) > len(best):
            best = list(run)
    return int(best[0]["ts"]), int(best[-1]["ts"]), np.array(
        [float(r["temperature_ch0"]) for r in best])


async def test_ten_simulated_minutes_give_allantools_figures_on_the_csv_rows(tmp_path):
    # 600 polls at 0.05 s of a simulation running 20 times faster: 10 simulated minutes.
    async with running_bridge(tmp_path, memory_s=120.0) as (bridge, client):
        store = only(bridge).store
        await wait_for(lambda: store.rows_written >= 620, timeout=120, what="620 rows")
        end = now_ms()
        r = await client.get("/data.csv", params={"from": end - 60_000, "to": end,
                                                  "fields": "temperature"})
        rows = list(csv.DictReader(io.StringIO(r.text)))
        first, last, values = _longest_run(rows)
        assert len(values) >= 400, "too few polls in a row on this machine"
        r = await client.get("/stability", params={"channel": 0, "from": first, "to": last})
        assert r.status_code == 200, r.text
        answer = r.json()
    assert answer["n"] == len(values) and answer["segments"] == 1
    assert answer["period_s"] == PERIOD and answer["from"] == first and answer["device"] == FIRST
    taus = np.array([p["tau_s"] for p in answer["allan"]])
    assert taus[0] == PERIOD and taus[-1] <= (last - first) / 1000 / 10 < 2 * taus[-1]
    expected_taus, devs, _, ns = allantools.oadev(values, rate=1 / PERIOD, data_type="freq",
                                                  taus=taus)
    assert list(expected_taus) == pytest.approx(list(taus))
    assert [p["adev_k"] for p in answer["allan"]] == pytest.approx(list(devs), rel=1e-9)
    assert [p["terms"] for p in answer["allan"]] == list(ns)
    assert answer["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert answer["std"] == pytest.approx(values.std(), rel=1e-9)
    assert answer["p2p"] == pytest.approx(np.ptp(values), rel=1e-9)
    assert all(p["lo_k"] < p["adev_k"] < p["hi_k"] for p in answer["allan"])


async def test_gaps_split_segments_and_the_command_line_agrees(tmp_path):
    gen = _gen_history()
    day = now_ms() // DAY_MS - 1
    (tmp_path / FIRST).mkdir()
    gen.write_day(str(tmp_path / FIRST), day)
    ts, values = gen.day_rows(day)
    column = gen.COLUMNS.index("temperature_ch1")
    # The bridge polls every second, as the history was: a gap is > 3 s.
    async with running_bridge(tmp_path, poll_period=1.0) as (bridge, client):
        params = {"channel": 1, "from": day * DAY_MS, "to": (day + 1) * DAY_MS - 1}
        answer = (await client.get("/stability", params=params)).json()
        table = await client.get("/stability.csv", params=params)
    # Channel 1's sensor is unplugged for an hour: two segments, no row of it used.
    assert answer["segments"] == 2
    assert answer["n"] == int(np.isfinite(values[:, column]).sum())
    assert answer["error"]["n"] == answer["n"] and answer["engaged_fraction"] == 1.0
    assert answer["allan"][0]["tau_s"] == 1.0
    assert answer["allan"][-1]["tau_s"] == 8192.0  # a tenth of a day, in octaves
    assert table.status_code == 200 and "attachment" in table.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(table.text)))
    assert lines[0] == ["tau_s", "adev_k", "lo_k", "hi_k", "terms", "alpha"]
    assert [float(line[1]) for line in lines[1:]] == [p["adev_k"] for p in answer["allan"]]
    # The command line reads the same samples from the folder: the same answer.
    done = run_cli("stability", "--data-dir", str(tmp_path), "--device", FIRST, "--channel", "1",
                   "--from", str(params["from"]), "--to", str(params["to"]), "--json",
                   timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == answer
    table_text = run_cli("stability", "--data-dir", str(tmp_path), "--device", FIRST,
                         "--channel", "1", "--from", str(params["from"]), "--to",
                         str(params["to"]), timeout=120).stdout
    assert "in 2 segment(s), every 1 s" in table_text and "8192" in table_text


@pytest.mark.parametrize("args, message", [
    (["--channel", "0"], "no folder"),
    (["--channel", "2"], "--channel"),
    (["--channel", "0", "--from", "yesterday"], "--from"),
    (["--channel", "0", "--from", "2026-12-02", "--to", "2026-12-01"], "--from"),
    (["--channel", "0", "--band-mk", "-1"], "--band-mk"),
    (["--channel", "0", "--poll-period", "0"], "--poll-period"),
])
def test_command_line_refuses_bad_arguments_in_one_line(tmp_path, args, message):
    done = run_cli("stability", "--data-dir", str(tmp_path), "--device", FIRST, *args)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


async def test_a_range_with_the_pid_off_has_no_error_figures_and_says_so(tmp_path):
    start = (now_ms() // DAY_MS - 1) * DAY_MS
    log = CsvLog(str(tmp_path / FIRST), ["temperature_ch0", "target_ch0", "pid_engaged_ch0"])
    rng = np.random.default_rng(8)
    for i in range(600):  # ten minutes at 1 s, the PID off, the setpoint known
        log.append(start + 1000 * i, np.array([24.0 + rng.normal(0, 1e-3), 25.0, 0.0]))
    log.close()
    async with running_bridge(tmp_path, poll_period=1.0) as (bridge, client):
        answer = (await client.get("/stability", params={
            "channel": 0, "from": start, "to": start + 599_000})).json()
    assert answer["n"] == 600 and answer["segments"] == 1 and answer["allan"]
    assert answer["error"] is None and answer["in_band_fraction"] is None
    assert answer["engaged_fraction"] == 0
    assert answer["notes"] == ["the PID was not engaged in this range: no error figures"]


async def test_a_setpoint_not_recorded_is_said_so(tmp_path):
    async with running_bridge(tmp_path, fields=("temperature", "pid_engaged")) as (bridge,
                                                                                   client):
        await polled(bridge, 20)
        answer = (await client.get("/stability", params={"channel": 1})).json()
    assert answer["n"] >= 20 and answer["error"] is None
    assert answer["notes"] == ["the setpoint or pid_engaged is not recorded: no error figures"]


async def test_the_memory_window_by_default(bridge_client):
    bridge, client = bridge_client
    device = only(bridge)
    await wait_for(lambda: device.store.rows_written >= 10, what="10 rows")
    r = await client.get("/stability", params={"channel": 0})
    assert r.status_code == 200
    assert r.json()["to"] - r.json()["from"] == int(device.memory_s * 1000)
    assert r.json()["n"] >= 10


@pytest.mark.parametrize("params, name", [
    ({}, "channel"),
    ({"channel": 2}, "channel"),
    ({"channel": "a"}, "channel"),
    ({"channel": 0, "band_mk": -1}, "band_mk"),
    ({"channel": 0, "band_mk": "nan"}, "band_mk"),
    ({"channel": 0, "from": 2000, "to": 1000}, "from"),
    ({"channel": 0, "from": -5}, "from"),
    ({"channel": 0, "from": 0}, "from"),  # decades of polls: more samples than one answer
    ({"channel": 0, "to": "soon"}, "to"),
])
@pytest.mark.parametrize("path", ["/stability", "/stability.csv"])
async def test_bad_parameters_are_a_422_naming_them(bridge_client, path, params, name):
    _, client = bridge_client
    r = await client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [["query", name]]


async def test_an_unknown_device_is_a_404(bridge_client):
    _, client = bridge_client
    r = await client.get("/stability", params={"channel": 0, "device": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
