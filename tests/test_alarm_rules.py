"""The alarm rules, the regulation state, the alarm book and the rule
settings, on synthetic series (no device, no bridge)."""

import json
import math

import numpy as np
import pytest

from thermostat_ctrl.bridge.alarms import settings
from thermostat_ctrl.bridge.alarms.book import HISTORY_NAME, AlarmBook
from thermostat_ctrl.bridge.alarms.monitor import ChannelHistory
from thermostat_ctrl.bridge.alarms.rules import OK, RULES, UNKNOWN, ChannelWindow, DeviceWindow, Finding
from thermostat_ctrl.bridge.status import RegulationTracker

PERIOD = 0.5
RNG = np.random.default_rng(1)


def window(seconds: float, temperature=25.0, target=25.0, engaged=1.0, i_set=0.2, tec_i=None,
           noise=0.002, settled=True, settling_since=None, limits=(1.0, 1.0),
           settled_since=-1e9) -> ChannelWindow:
    """``seconds`` of samples every :data:`PERIOD` ending at t = 1000 s; each
    quantity a constant or a function of t."""
    t = np.arange(1000 - seconds, 1000 + 1e-9, PERIOD)

    def series(value):
        return np.asarray(value(t) if callable(value) else np.full(len(t), value), float)

    temperature = series(temperature) + RNG.normal(0, noise, len(t))
    i_set = series(i_set)
    tec_i = i_set + RNG.normal(0, 0.03, len(t)) if tec_i is None else series(tec_i)
    return ChannelWindow(t, temperature, series(target), series(engaged), i_set, tec_i,
                         i_set.copy(), t - 900, max_i_pos=limits[0], max_i_neg=limits[1],
                         settled=settled, settling_since=settling_since,
                         settled_since=settled_since if settled else None)


def params(name: str, **overrides) -> dict:
    return {**RULES[name].defaults, **overrides}


def check(name: str, w, active: bool = False, **overrides):
    return RULES[name].check(w, params(name, **overrides), active)


# ------------------------------------------------------------ channel rules

def test_sensor_open_raises_on_missing_temperatures_and_clears_on_a_reading():
    w = window(10, temperature=lambda t: np.where(t > 998, math.nan, 25.0))
    found = check("sensor_open", w)
    assert isinstance(found, Finding) and "thermistor open" in found.message
    assert check("sensor_open", window(10)) == OK
    # One missing reading is not yet an open sensor (samples = 2).
    assert check("sensor_open", window(10, temperature=lambda t: np.where(
        t == t[-1], math.nan, 25.0))) == OK


def test_sensor_implausible_on_a_shorted_reading_and_on_a_jump():
    shorted = check("sensor_implausible", window(20, temperature=lambda t: np.where(
        t > 995, 801.8, 25.0)))
    assert isinstance(shorted, Finding) and shorted.value == pytest.approx(801.8, abs=0.1)
    assert "shorted" in shorted.message
    jump = check("sensor_implausible", window(20, temperature=lambda t: np.where(
        t > 995, 29.0, 25.0)))  # 4 K in one 0.5 s sample: 8 K/s
    assert isinstance(jump, Finding) and jump.value == pytest.approx(8, rel=0.05)
    # A fast but physical change (0.5 K/s) is fine, so is the normal noise.
    assert check("sensor_implausible", window(20, temperature=lambda t: 25 + 0.5 * (t - 980),
                                              noise=0.0)) == OK
    assert check("sensor_implausible", window(20)) == OK
    # Polls bunched by a busy host (under a ms apart by the bridge's clock) read
    # the device's samples at their own times: the noise is no jump.
    bunched = window(20, noise=0.003)
    bunched.t = bunched.t[0] + np.arange(len(bunched.t)) * 0.0005
    assert check("sensor_implausible", bunched) == OK
    # The jump leaves the window (10 s) and the alarm's condition with it.
    assert check("sensor_implausible", window(30, temperature=lambda t: np.where(
        t > 985, 29.0, 25.0))) == OK


def test_tec_open_needs_the_set_current_without_measured_current_for_the_hold_time():
    open_ = check("tec_open", window(15, i_set=0.8, tec_i=lambda t: RNG.normal(0, 0.02, len(t))))
    assert isinstance(open_, Finding) and "TEC disconnected" in open_.message
    # Readback error of old hardware (about ±100 mA) on a small set current: no alarm.
    assert check("tec_open", window(15, i_set=0.15, tec_i=0.0)) == OK
    assert check("tec_open", window(15, i_set=0.8)) == OK
    # The fault only began 5 s ago: not yet held for hold_s = 10 s.
    assert check("tec_open", window(15, i_set=0.8, tec_i=lambda t: np.where(
        t > 995, 0.0, 0.8))) == OK
    assert check("tec_open", window(5, i_set=0.8, tec_i=0.0)) == UNKNOWN


def test_runaway_when_the_output_is_pinned_and_the_error_does_not_shrink():
    pinned = dict(i_set=1.0, limits=(1.0, 1.0))
    stuck = check("runaway", window(70, temperature=lambda t: 27 + 0.001 * (t - 930), **pinned))
    assert isinstance(stuck, Finding) and "cannot carry the heat" in stuck.message
    # Pinned while the error shrinks fast enough: a big step being settled.
    assert check("runaway", window(70, temperature=lambda t: 27 - 0.02 * (t - 930),
                                   **pinned)) == OK
    assert check("runaway", window(70, temperature=27.0, i_set=0.6)) == OK
    assert check("runaway", window(70, temperature=27.0, i_set=0.6, limits=(None, None))) \
        == UNKNOWN
    assert check("runaway", window(70, temperature=27.0, engaged=0.0, **pinned)) == OK


def test_out_of_band_after_settling_with_hysteresis_on_clearing():
    off = window(80, temperature=lambda t: np.where(t > 930, 25.2, 25.0), noise=0.0005)
    found = check("out_of_band", off)
    assert isinstance(found, Finding)
    assert found.message.startswith("200 mK above its setpoint (25.000 °C)")
    # While settling (a target change), it is not this rule's business.
    assert check("out_of_band", window(80, temperature=25.2, settled=False,
                                       settling_since=930)) == OK
    # Not above the band for the whole hold time: no alarm yet.
    assert check("out_of_band", window(80, temperature=lambda t: np.where(
        t > 960, 25.2, 25.0), noise=0.0005)) == OK
    # Active: back at 0.045 K (inside the band, not inside 80 % of it) stays raised...
    assert isinstance(check("out_of_band", window(5, temperature=25.045, noise=0),
                            active=True), Finding)
    # ...and clears well inside.
    assert check("out_of_band", window(5, temperature=25.01, noise=0), active=True) == OK


def test_not_settled_after_the_timeout_only():
    late = check("not_settled", window(10, temperature=26.0, settled=False,
                                       settling_since=300.0))
    assert isinstance(late, Finding) and late.value == pytest.approx(700)
    assert check("not_settled", window(10, temperature=26.0, settled=False,
                                       settling_since=700.0)) == OK
    assert check("not_settled", window(10, settled=True)) == OK


def test_drift_on_a_slow_ramp_of_the_error_only():
    ramp = check("drift", window(3700, temperature=lambda t: 25 + 0.05 * (t - 1000) / 3600))
    assert isinstance(ramp, Finding) and ramp.value == pytest.approx(0.05, rel=0.1)
    assert check("drift", window(3700)) == OK
    assert check("drift", window(600)) == OK  # too short to say
    # Settled only within the window: the ramp may be the end of its settling.
    assert check("drift", window(3700, temperature=lambda t: 25 + 0.05 * (t - 1000) / 3600,
                                 settled_since=900.0)) == OK


# ------------------------------------------------------------- device rules

def test_offline_after_the_periods_and_flapping_on_repeated_gaps():
    assert isinstance(check("offline", DeviceWindow(np.array([]), 1.0, 11.0)), Finding)
    assert check("offline", DeviceWindow(np.array([]), 1.0, 9.0)) == OK
    assert check("offline", DeviceWindow(np.array([]), 1.0, None)) == UNKNOWN
    t = np.concatenate([np.arange(0, 50), np.arange(60, 100), np.arange(110, 150),
                        np.arange(160, 200)]).astype(float)
    flap = check("flapping", DeviceWindow(t, 1.0, 0.5, now=200.0))
    assert isinstance(flap, Finding) and flap.value == 3
    assert check("flapping", DeviceWindow(np.arange(0, 200.0), 1.0, 0.5, now=200.0)) == OK


# ------------------------------------------------------ regulation tracker

def test_regulation_states_through_a_target_change():
    tracker = RegulationTracker()
    states = []

    def feed(t0, t1, temperature, target, engaged=True):
        for t in np.arange(t0, t1, 1.0):
            states.append(tracker.update(t, temperature(t), target, engaged, 0.05, 10.0))

    feed(0, 5, lambda t: 25.0, 25.0, engaged=False)
    assert states[-1] == "off"
    feed(5, 30, lambda t: 25.0 + 2 * math.exp(-(t - 5) / 3), 25.0)
    assert "settling" in states and states[-1] == "in_band" and tracker.settled
    feed(30, 35, lambda t: 25.3, 25.0)
    assert states[-1] == "out_of_band"
    feed(35, 40, lambda t: 25.3, 26.0)  # a new target: settling again
    assert states[-1] == "settling" and tracker.settling_since == 35
    feed(40, 45, lambda t: math.nan, 26.0)
    assert states[-1] == "fault"


def test_the_history_ring_keeps_the_latest_rows_in_order():
    ring = ChannelHistory(5)
    for i in range(12):
        ring.append(np.full(15, float(i)))
    assert ring.rows()[:, 0].tolist() == [7, 8, 9, 10, 11]


# ------------------------------------------------------------ the book

def test_lifecycle_with_hysteresis_acknowledgement_and_log(tmp_path):
    clock = [1000.0]
    book = AlarmBook(str(tmp_path), clear_s=3.0, clock=lambda: clock[0])
    events = []
    book.listen(lambda event, alarm: events.append((event, alarm["rule"])))
    book.observe("cavity", 1, "out_of_band", "warning", Finding(0.38, "0.38 K above"))
    [alarm] = book.active()
    assert alarm.message == "cavity ch1: 0.38 K above" and alarm.first_seen == 1_000_000
    clock[0] += 1
    book.observe("cavity", 1, "out_of_band", "warning", OK)  # ok for 0 s
    clock[0] += 2
    book.observe("cavity", 1, "out_of_band", "warning", Finding(0.4, "0.4 K above"))
    clock[0] += 2
    book.observe("cavity", 1, "out_of_band", "warning", OK)
    clock[0] += 2
    book.observe("cavity", 1, "out_of_band", "warning", OK)  # ok for 2 s: still active
    assert len(book.active()) == 1 and book.active()[0].value == 0.4
    book.acknowledge(alarm.id, "alice")
    assert book.active()[0].acknowledged_by == "alice"
    # Acknowledgement survives a restart.
    again = AlarmBook(str(tmp_path), clear_s=3.0, clock=lambda: clock[0])
    assert [(a.rule, a.acknowledged_by) for a in again.active()] == [("out_of_band", "alice")]
    clock[0] += 2
    book.observe("cavity", 1, "out_of_band", "warning", OK)  # ok for 4 s: cleared
    assert book.active() == []
    assert events == [("raised", "out_of_band"), ("acknowledged", "out_of_band"),
                      ("cleared", "out_of_band")]
    log = [json.loads(line)["event"] for line in (tmp_path / HISTORY_NAME).open()]
    assert log == ["raised", "acknowledged", "cleared"]
    assert [e["event"] for e in book.history(device="cavity")] == log
    assert book.history(device="laser") == []


def test_silences_cover_matching_alarms_expire_and_survive_a_restart(tmp_path):
    clock = [1000.0]
    book = AlarmBook(str(tmp_path), clock=lambda: clock[0])
    silence = book.silence(600, "bob", "realigning", device="cavity", rule="out_of_band")
    book.observe("cavity", 0, "out_of_band", "warning", Finding(0.1, "off"))
    book.observe("cavity", 0, "sensor_open", "critical", Finding(math.nan, "open"))
    book.observe("laser", 0, "out_of_band", "warning", Finding(0.1, "off"))
    silenced = {(a.device, a.rule): a.silenced for a in book.active()}
    assert silenced == {("cavity", "out_of_band"): True, ("cavity", "sensor_open"): False,
                        ("laser", "out_of_band"): False}
    assert book.active()[1].value is None  # NaN is no JSON number
    again = AlarmBook(str(tmp_path), clock=lambda: clock[0])
    assert [s.id for s in again.silences()] == [silence.id]
    clock[0] += 601
    assert again.silences() == [] and not any(a.silenced for a in again.active())
    with pytest.raises(ValueError, match="duration_s"):
        book.silence(0, "bob")


# ---------------------------------------------------------- the settings

def test_settings_merge_bridge_device_and_channel_layers():
    bridge = settings.check({"out_of_band": {"band_k": 0.02}, "drift": {"enabled": True}},
                            "bridge.toml: alarms")
    device = settings.check({"out_of_band": {"hold_s": 30},
                             "ch1": {"out_of_band": {"band_k": 0.005, "severity": "critical"},
                                     "tec_open": {"enabled": False}}},
                            "[[device]] 1 (cavity) alarms", channels=True)
    ch0 = {c.name: c for c in settings.resolve(bridge, device, 0)}
    ch1 = {c.name: c for c in settings.resolve(bridge, device, 1)}
    assert ch0["out_of_band"].params == {"band_k": 0.02, "hold_s": 30, "hysteresis": 0.2}
    assert ch1["out_of_band"].params["band_k"] == 0.005
    assert ch1["out_of_band"].severity == "critical" and ch0["out_of_band"].severity == "warning"
    assert ch0["drift"].enabled and ch0["tec_open"].enabled and not ch1["tec_open"].enabled
    assert {c.name for c in settings.resolve(bridge, device)} == {"offline", "flapping"}


@pytest.mark.parametrize("table, message", [
    ({"out_of_bands": {}}, "alarms: unknown rule 'out_of_bands'; known: "),
    ({"out_of_band": {"band": 0.1}}, "alarms.out_of_band: unknown key 'band'; known: band_k"),
    ({"out_of_band": {"band_k": "0.1"}}, "alarms.out_of_band.band_k must be a number"),
    ({"out_of_band": {"band_k": -1}}, "alarms.out_of_band.band_k must be positive"),
    ({"offline": {"periods": 2.5}}, "alarms.offline.periods must be a whole number"),
    ({"drift": {"enabled": "yes"}}, "alarms.drift.enabled must be true or false"),
    ({"tec_open": {"severity": "fatal"}}, "alarms.tec_open.severity must be one of"),
    ({"sensor_implausible": {"min_c": 50, "max_c": 40}}, "min_c must be below max_c"),
    ({"out_of_band": 3}, "alarms.out_of_band must be a table"),
])
def test_bad_settings_name_the_key(table, message):
    with pytest.raises(ValueError) as e:
        settings.check(table, "bridge.toml: alarms")
    assert message in str(e.value)
    assert str(e.value).startswith("bridge.toml: alarms")
