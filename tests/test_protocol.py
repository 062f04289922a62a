"""The pure protocol layer: command lines, validation, reply parsing."""

import logging
import math

import pytest
from hypothesis import given, strategies as st

from thermostat_ctrl import protocol as p


@pytest.mark.parametrize("firmware, word", [("2023", "pwm"), ("2025", "output")])
def test_output_word_follows_dialect(firmware, word):
    assert p.show("output", firmware).line == word.encode() + b"\n"
    assert p.set_current(firmware, 1, -0.5).line == word.encode() + b" 1 i_set -0.5\n"
    assert p.engage_pid(firmware, 0).line == word.encode() + b" 0 pid\n"
    assert p.set_output_limit(firmware, 0, "max_v", 2.5).line == word.encode() + b" 0 max_v 2.5\n"


@pytest.mark.parametrize("firmware, word", [("2023", "s-h"), ("2025", "b-p")])
def test_thermistor_word_follows_dialect(firmware, word):
    assert p.show("b_parameter", firmware).line == word.encode() + b"\n"
    assert p.set_b_param(firmware, 1, "r0", 10000).line == word.encode() + b" 1 r0 10000\n"


def test_command_lines():
    assert p.set_pid_param(0, "target", 25.3).line == b"pid 0 target 25.3\n"
    assert p.set_pid_param(1, "ki", 0.012).line == b"pid 1 ki 0.012\n"
    assert p.set_center(0, "vref").line == b"center 0 vref\n"
    assert p.set_center(1, 1.5).line == b"center 1 1.5\n"
    assert p.set_postfilter("2025", 0, None).line == b"postfilter 0 off\n"
    assert p.set_postfilter("2025", 0, 16.667).line == b"postfilter 0 rate 16.667\n"
    assert p.set_fan("auto").line == b"fan auto\n"
    assert p.set_fan(None).line == b"fan auto\n"
    assert p.set_fan(42).line == b"fan 42\n"
    assert p.set_fcurve(1, 0, 0.5).line == b"fcurve 1 0 0.5\n"
    assert p.set_polarity("2025", 1, "reversed").line == b"output 1 polarity reversed\n"
    assert p.reset() == p.Command(b"reset\n", 0)


def test_bare_save_and_load_expect_two_lines():
    assert p.save() == p.Command(b"save\n", 2)
    assert p.load() == p.Command(b"load\n", 2)
    assert p.save(1) == p.Command(b"save 1\n", 1)
    assert p.load(0) == p.Command(b"load 0\n", 1)


@pytest.mark.parametrize("value, text", [
    (0, "0"), (0.0, "0"), (-0.0, "0"), (25, "25"), (1e-3, "0.001"), (1e-9, "0.000000001"),
    (-0.25, "-0.25"), (1e20, "100000000000000000000"), (0.1 + 0.2, "0.30000000000000004"),
    (3.0, "3"), (12.5, "12.5"),
])
def test_numbers_are_plain_decimal(value, text):
    assert p.format_number(value, "x") == text


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_number_format_round_trips_without_exponent(x):
    text = p.format_number(x, "x")
    assert "e" not in text.lower() and "+" not in text
    assert float(text) == x


@pytest.mark.parametrize("build, name", [
    (lambda: p.format_number(math.nan, "kp"), "kp"),
    (lambda: p.format_number(math.inf, "target"), "target"),
    (lambda: p.format_number("1", "amps"), "amps"),
    (lambda: p.format_number(True, "amps"), "amps"),
    (lambda: p.set_pid_param(0, "kp", 1e-50), "kp"),
    (lambda: p.set_pid_param(0, "kd", 1e39), "kd"),
    (lambda: p.set_pid_param(0, "target", 1e300), "line buffer"),
    (lambda: p.set_pid_param(0, "integral_min", 1), "PID parameter"),
    (lambda: p.set_current("2025", 0, 2.5), "amps"),
    (lambda: p.set_current("2023", 0, -3.5), "amps"),
    (lambda: p.set_output_limit("2025", 0, "max_v", 5), "max_v"),
    (lambda: p.set_output_limit("2025", 0, "max_i_pos", -1), "max_i_pos"),
    (lambda: p.set_output_limit("2025", 0, "i_set", 1), "limit"),
    (lambda: p.set_b_param("2025", 0, "r0", 0), "r0"),
    (lambda: p.set_postfilter("2025", 0, 21.25), "rate_hz"),
    (lambda: p.set_fan(0), "fan power"),
    (lambda: p.set_fan(101), "fan power"),
    (lambda: p.set_fan("50"), "fan power"),
    (lambda: p.set_polarity("2025", 0, "inverted"), "polarity"),
    (lambda: p.show("report mode", "2025"), "topic"),
    (lambda: p.check_firmware("2024"), "firmware"),
])
def test_bad_values_raise_value_error_naming_the_argument(build, name):
    with pytest.raises(ValueError, match=name):
        build()


@pytest.mark.parametrize("ch", [2, -1, "0", 0.0, True, None])
def test_channel_must_be_0_or_1(ch):
    with pytest.raises(ValueError, match="channel"):
        p.set_pid_param(ch, "kp", 1)


@pytest.mark.parametrize("smuggled", ["1\nreset", "1 2", "vref\r", "1;reset", "\u00b5", ""])
def test_no_argument_can_smuggle_a_second_command(smuggled):
    with pytest.raises(ValueError):
        p.set_center(0, smuggled)


def test_every_built_line_is_one_short_ascii_line():
    commands = [p.set_pid_param(1, "target", -123456.123456789), p.set_fcurve(-1.5, 2.25, 1e-3),
                p.set_current("2025", 1, -1.999999999)]
    for c in commands:
        assert c.line.endswith(b"\n") and c.line.count(b"\n") == 1
        assert b"\r" not in c.line and len(c.line) - 1 <= p.LINE_BUFFER
        c.line.decode("ascii")


def test_dialect_specific_commands_name_the_firmware_they_need():
    with pytest.raises(p.UnsupportedCommand, match="firmware 2025"):
        p.set_polarity("2023", 0, "normal")


def test_parse_reply_plain_values():
    line = b'[{"channel":0,"rate":1.6667e1},{"channel":1,"rate":null}]\n'
    assert p.parse_reply(line) == [{"channel": 0, "rate": 16.667}, {"channel": 1, "rate": None}]
    assert p.parse_reply(b"{}\n") == {}
    assert p.parse_reply(b"null\n") is None


def test_error_reply_becomes_device_error_with_the_device_text():
    with pytest.raises(p.DeviceError) as info:
        p.parse_reply(b'{ "error": "invalid input" }\n', "pid 0 kp x")
    assert info.value.text == "invalid input"
    assert isinstance(info.value, RuntimeError)
    assert "pid 0 kp x" in str(info.value)


def test_flash_config_not_found_is_recognised_despite_invalid_json():
    with pytest.raises(p.FlashConfigNotFound, match="save_config"):
        p.parse_reply(b'{{"error": "flash config not found"}}\n', "load 0")


def test_other_doubled_brace_error_keeps_its_text():
    with pytest.raises(p.DeviceError, match="unable to choose postfilter rate"):
        p.parse_reply(b'{{"error": "unable to choose postfilter rate"}}\n')


def test_warning_is_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING):
        reply = p.parse_reply(b'{ "warning": "this thermostat doesn\'t have a fan!" }\n', "fan 50")
    assert reply == {"warning": "this thermostat doesn't have a fan!"}
    assert "have a fan" in caplog.text


@pytest.mark.parametrize("line", [b"#\x01garbage\n", b"[{\"channel\":0\n", b"NaN\n", b"\xff\xfe\n",
                                  b'{"a":Infinity}\n'])
def test_garbage_is_a_protocol_error_quoting_the_line(line):
    with pytest.raises(p.ProtocolError) as info:
        p.parse_reply(line)
    assert isinstance(info.value, ConnectionError)
    quoted = repr(line.rstrip(b"\n")) if b"\xff" in line else repr(line.rstrip(b"\n").decode())
    assert quoted in str(info.value)


def test_flatten_output_of_firmware_2023():
    summary = {"channel": 0, "center": "vref", "i_set": {"value": -0.02, "max": 3.0},
               "max_v": {"value": 1.5, "max": 5.0}}
    assert p.flatten_output(summary) == {"channel": 0, "center": "vref", "i_set": -0.02,
                                         "max_v": 1.5}


def test_channel_list_sorts_and_checks():
    assert p.channel_list([{"channel": 1}, {"channel": 0}]) == [{"channel": 0}, {"channel": 1}]
    with pytest.raises(p.ProtocolError):
        p.channel_list({})
