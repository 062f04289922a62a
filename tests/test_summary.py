"""The stability summary: its times, its line, its figures (those of
/stability), the alarms of the period, the files and the notification."""

import importlib.util
import json
from pathlib import Path

import pytest

from harness import FIRST, bridge_config, now_ms, running_bridge, wait_for
from receivers import WebhookReceiver
from thermostat_ctrl.bridge.cli import get_argparser, settings_from_args
from thermostat_ctrl.bridge.summary import (JSON_NAME, TEXT_NAME, alarms_from, check_at, line,
                                            next_due, summarize)

ROOT = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000
DAY_S = 86_400


def test_times():
    assert check_at("07:30") == 7 * 3600 + 1800 and check_at("00:00") == 0
    for bad in ("7:30", "24:00", "07:60", "noon", 730, None):
        with pytest.raises(ValueError, match="summary_at"):
            check_at(bad)
    midnight = 20_000 * DAY_S
    assert next_due(midnight + 3600, 7 * 3600, DAY_S) == midnight + 7 * 3600
    assert next_due(midnight + 7 * 3600, 7 * 3600, DAY_S) == midnight + DAY_S + 7 * 3600
    assert next_due(midnight + 8 * 3600, 7 * 3600, 12 * 3600) == midnight + 19 * 3600


def test_config_refuses_bad_summary_settings(tmp_path):
    with pytest.raises(ValueError, match="summary_at"):
        bridge_config(tmp_path, summary_at="25:00")
    with pytest.raises(ValueError, match="summary_period_s"):
        bridge_config(tmp_path, summary_at="07:00", summary_period_s=0)
    args = get_argparser().parse_args(["--simulation", "--summary-at", "07:00",
                                       "--summary-period-s", "3600"])
    settings = settings_from_args(args)
    assert (settings["summary_at"], settings["summary_period_s"]) == ("07:00", 3600)
    assert bridge_config(tmp_path).summary_at is None  # off by default


def test_the_line_reads_at_a_glance():
    figures = {"n": 86_400, "std": 0.00031, "p2p": 0.0021, "drift_k_per_h": 0.0001,
               "band_mk": 10.0, "in_band_fraction": 0.998,
               "allan": [{"tau_s": 1.0, "adev_k": 0.0003}, {"tau_s": 100.0, "adev_k": 42e-6},
                         {"tau_s": 1000.0, "adev_k": 15e-6}]}
    alarms = [{"rule": "out_of_band"}, {"rule": "drift"}, {"rule": "out_of_band"}]
    assert line("cavity", 0, figures, alarms) == (
        "cavity ch0: std 0.31 mK, p2p 2.1 mK, drift +0.100 mK/h, ADEV(1 s) 0.3 mK,"
        " ADEV(100 s) 42 µK, ADEV(1000 s) 15 µK, in band (±10 mK) 99.8 %,"
        " alarms: 3 (drift, out_of_band)")
    off = dict(figures, in_band_fraction=None, engaged_fraction=0.0, allan=[])
    assert "in band (±10 mK) — (PID not engaged)" in line("laser", 1, off, [])
    unknown = dict(off, engaged_fraction=None)
    assert "in band (±10 mK) — (setpoint not recorded)" in line("laser", 1, unknown, [])
    assert "ADEV(100 s) —" in line("laser", 1, off, []) and "alarms: none" in line("laser", 1, off, [])
    assert line("laser", 1, {"n": 0}, []) == "laser ch1: no samples"


async def test_the_summary_of_a_day_has_the_figures_of_stability_and_its_alarms(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_history", ROOT / "scripts" / "gen_history.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    day = now_ms() // DAY_MS - 1
    (tmp_path / FIRST).mkdir()
    gen.write_day(str(tmp_path / FIRST), day)
    end = (day + 1) * DAY_MS
    alarm = {"event": "raised", "ts": end - 3_600_000, "device": FIRST, "channel": 0,
             "rule": "out_of_band", "severity": "warning", "message": "m"}
    earlier = dict(alarm, ts=end - 2 * DAY_MS)  # the day before: not in this summary
    (tmp_path / "alarms.jsonl").write_text(json.dumps(alarm) + "\n" + json.dumps(earlier) + "\n")
    async with running_bridge(tmp_path, poll_period=1.0) as (bridge, client):
        summary = summarize(bridge.devices, end, DAY_S, alarms_from(bridge.alarms))
        answers = [(await client.get("/stability", params={
            "channel": ch, "from": end - DAY_MS, "to": end})).json() for ch in (0, 1)]
    for figures, answer in zip(summary["channels"], answers):
        for key in ("n", "std", "p2p", "drift_k_per_h", "in_band_fraction", "segments"):
            assert figures[key] == answer[key], key
        assert figures["allan"][0] == answer["allan"][0]  # τ = 1 s
        assert [p["tau_s"] for p in figures["allan"]] == [1.0, 100.0, 1000.0]
    assert summary["channels"][0]["alarms"] == [alarm] and summary["channels"][1]["alarms"] == []
    assert summary["lines"][0].startswith("{} ch0: std ".format(FIRST))
    assert summary["lines"][0].endswith("alarms: 1 (out_of_band)")
    assert summary["lines"][1].endswith("alarms: none")


async def test_summaries_are_written_and_sent_at_their_times(tmp_path):
    with WebhookReceiver() as hook:
        # Every 2 s: the scheduler's times, the files and the notifier, quickly.
        async with running_bridge(tmp_path, summary_at="00:00", summary_period_s=2,
                                  notify=(hook.url,)) as (bridge, client):
            await wait_for(lambda: bridge.summaries.made >= 2 and len(hook.bodies) >= 2,
                           timeout=30, what="two summaries sent")
        entries = [json.loads(l) for l in (tmp_path / JSON_NAME).read_text().splitlines()]
        text = (tmp_path / TEXT_NAME).read_text()
    assert len(entries) >= 2 and all(e["to"] - e["from"] == 2000 for e in entries)
    assert all(e["to"] % 2000 == 0 for e in entries)  # at the times of day asked for
    assert entries[1]["to"] - entries[0]["to"] == 2000
    assert text.count("== stability ") == len(entries)
    for entry in entries:
        assert all(l in text for l in entry["lines"])
    body = hook.bodies[0]
    assert body["title"].startswith("Stability, ") and body["type"] == "info"
    assert body["message"] == "\n".join(entries[0]["lines"])
