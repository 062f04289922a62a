"""Pure unit tests of the simulator's wire number format and line grammar."""

import math

import numpy as np
import pytest

from thermostat_ctrl.simulator.grammar import parse
from thermostat_ctrl.simulator.numfmt import F32, encode, fmt_f32, fmt_f64


@pytest.mark.parametrize("value, text", [
    (0.0, "0e0"), (-0.0, "-0e0"), (25.0, "2.5e1"), (298.15, "2.9815e2"), (10000.0, "1e4"),
    (0.12, "1.2e-1"), (-0.02, "-2e-2"), (1.5, "1.5e0"), (3523.442, "3.523442e3"),
    (1e300, "1e300"), (5e-324, "5e-324"),
])
def test_fmt_f64(value, text):
    assert fmt_f64(value) == text


@pytest.mark.parametrize("value, text", [(16.667, "1.6667e1"), (0.3, "3e-1"), (0.002, "2e-3"),
                                         (25.3, "2.53e1"), (-2.0, "-2e0")])
def test_fmt_f32(value, text):
    assert fmt_f32(value) == text


def test_f32_width_matters():
    stored = float(np.float32(0.3))
    assert fmt_f32(stored) == "3e-1"
    assert fmt_f64(stored) == "3.0000001192092896e-1"
    assert fmt_f64(float(np.float32(25.3))) == "2.5299999237060547e1"


def test_non_finite_never_emitted():
    assert fmt_f64(math.inf) == "null" and fmt_f64(math.nan) == "null"
    assert fmt_f32(1e300) == "null"


def test_encode_compact():
    obj = {"channel": 0, "rate": F32(16.667), "t": 0.1, "x": None, "ok": True, "s": "vref"}
    assert encode([obj]) == '[{"channel":0,"rate":1.6667e1,"t":1e-1,"x":null,"ok":true,"s":"vref"}]'


BOTH = ("2023", "2025")

# (line, firmwares where it is accepted); everything else must be rejected.
TABLE = [
    # consequences of the grammar's rules
    ("output ", ("2025",)), ("pwm ", ("2023",)), ("pid ", BOTH), ("report ", BOTH),
    ("output 0 max_v 2.5 ", ("2025",)), ("pwm 0 max_v 2.5 ", ("2023",)),
    ("pid 0 kp 0.5 ", ()), ("b-p 0 r0 10000 ", ()), ("s-h 0 r0 10000 ", ()),
    ("postfilter 0 off ", ()),
    ("ipv4 10.0.0.5/8 ", BOTH), ("ipv4 10.0.0.5/8 10.0.0.1 ", ()),
    ("fan 50 ", ()), ("fan auto ", ()), ("fcurve 1 0 0 ", ()), ("quit ", ()), ("reset ", ()),
    ("dfu ", ()), ("hwrev ", ()),
    ("report mode on ", ()), ("report mode ", ("2023",)),
    ("PID", ()), ("pid 2 kp 1", ()), ("pid 0 kp 1e-3", ()), ("output 0 i_set +1", ()),
    ("pwm 0 i_set +1", ()),
    ("center", ()), ("fcurve", ()), ("output 0", ()), ("pwm 0", ()),
    ("pid\t0 kp 1", ()),
    ("report mode", ("2023",)), ("pwm", ("2023",)), ("s-h", ("2023",)),
    ("output", ("2025",)), ("b-p", ("2025",)), ("output 0 polarity normal", ("2025",)),
    ("pwm 0 polarity normal", ()),
    # lexical rules
    ("pid 0 kp 1.", BOTH), ("pid 0 kp .5", BOTH), ("pid 0 kp -0.25", BOTH),
    ("pid 0 kp --0.25", BOTH), ("pid 0 kp .", ()), ("pid 0 kp 1.2.3", ()), ("pid 0 kp -", ()),
    ("pid 0 kp inf", ()), ("pid 0 kp nan", ()), ("pid  0   kp    1", BOTH),
    ("pid 01 kp 1", ()), ("pid 0 KP 1", ()), ("report\t", BOTH), ("report\tmode", ()),
    (" report", ()), ("report x", ()),
    ("output 0 pid ", ("2025",)), ("output 0 polarity reversed\t", ("2025",)),
    ("center 0 vref ", BOTH), ("center 1 1.5", BOTH), ("load ", BOTH), ("load 1 ", BOTH),
    ("save 0", BOTH), ("save 2", ()), ("postfilter 1 rate 20", BOTH), ("postfilter 1 rate 20 ", ()),
    ("fan", BOTH), ("fan 0", BOTH), ("fan auto", BOTH), ("fan -1", ()),
    ("fcurve default", BOTH), ("fcurve 1 -0.5 0.", BOTH), ("fcurve 1 0", ()),
    ("ipv4 1.2.3.4", ()), ("ipv4 300.2.3.4/24", BOTH), ("ipv4 1.2.3.4/24 1.2.3", ()),
    ("ipv4 99999999999.2.3.4/24", ()), ("report mode on", ("2023",)),
    ("report mode off", ("2023",)), ("report mode off ", ()), ("quit", BOTH), ("hwrev", BOTH),
]


@pytest.mark.parametrize("firmware", BOTH)
@pytest.mark.parametrize("line, accepted", TABLE)
def test_grammar_table(line, accepted, firmware):
    result = parse(line.encode(), firmware)
    assert (result is not None) == (firmware in accepted), (line, firmware, result)


def test_parsed_values():
    assert parse(b"pid 0 kp --0.25") == ("pid", 0, "kp", -0.25)
    assert parse(b"output 1 i_set 1.") == ("output", 1, "i_set", 1.0)
    assert parse(b"output 1 polarity reversed") == ("output", 1, "polarity", True)
    assert parse(b"ipv4 300.2.3.4/280 10.0.0.1") == ("ipv4", (44, 2, 3, 4), 24, (10, 0, 0, 1))
    assert parse(b"fan 99999999999") == ("fan", 0)
    assert parse(b"postfilter 0 off") == ("postfilter", 0, None)
    assert parse(b"report mode on", "2023") == ("report_mode", True)
    assert parse(b"center 0 vref") == ("center", 0, None)
    assert parse(b"load") == ("load", None)
    assert parse("pid 0 kp 1\xe9".encode("latin-1")) is None
