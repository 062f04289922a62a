"""Global state of the simulated Thermostat: ADC timeline, command execution, flash.

:class:`Device` is synchronous and clock-agnostic: every entry point takes the
*plant time* ``t`` (simulated seconds since the simulator was created) and
first advances the model up to it. Device time (``time`` in reports) counts
from the last boot on a millisecond grid.

ADC timeline: one AD7172 converts the two channels alternately; a conversion of
channel *c* takes half of *c*'s per-channel sample period (8.4 / 9.1 / 10 /
10.41 Hz for the four postfilter rates, 5 Hz with the postfilter off), so each
channel's ``interval`` is the sum of both conversion times and the channels are
offset by about half an interval. On every sample the PID of that channel is
updated (engaged or not) and, if engaged, drives the output.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .numfmt import F32, encode, to_f32
from .faults import OVERHEAT_K, SHORT_OHMS, Faults
from .physics import (
    AMBIENT_C, DAC_V_PER_A, ITEC_V_PER_A, KELVIN, NOISE_K, TEC_RESISTANCE, VREF, Pid, Plant, PlantParams,
    adc_from_resistance, sens_from_adc, tec_current, temperature_from_sens,
    thermistor_resistance,
)

__all__ = ["Device", "Flash", "Session", "INVALID_INPUT", "FLASH_NOT_FOUND"]

INVALID_INPUT = '{ "error": "invalid input" }'
FLASH_NOT_FOUND = '{{"error": "flash config not found"}}'
_OK = "{}"
_NO_FAN = {
    "2023": '{ "warning": "this thermostat doesn\'t have fan!" }',
    "2025": '{ "warning": "this thermostat doesn\'t have a fan!" }',
}
_FAN_PWM_WARNING = '{ "warning": "this fan doesn\'t have full PWM support. Use it at your own risk!" }'

POSTFILTER_RATES = {"2023": (16.67, 20.0, 21.25, 27.0), "2025": (16.667, 20.0, 25.0, 27.27)}
_CHANNEL_RATES = (8.4, 9.1, 10.0, 10.41)
_CHANNEL_RATE_OFF = 5.0
NETWORK_UP_S = 1.0  # device seconds from MCU start to the TCP port being up
_DEFAULT_IPV4: dict[str, Any] = {"addr": [192, 168, 1, 26], "len": 24, "gateway": None}

# FW-2025 software clamps; FW-2023 stores values unchecked.
_CLAMPS_2025 = {"i_set": (-2.0, 2.0), "max_i_pos": (0.0, 2.0), "max_i_neg": (0.0, 2.0),
                "max_v": (0.0, 4.3)}
_PWM_MAX_2023 = {"i_set": 3.0, "max_v": 5.0, "max_i_pos": 3.0, "max_i_neg": 3.0}


class Flash:
    """Config flash: a dict (keys ``ch0``, ``ch1``, ``ipv4``), optionally mirrored to JSON."""

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.data = json.load(f)

    def get(self, key: str) -> Optional[Any]:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        if self.path:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.data, f, indent=1)
            os.replace(tmp, self.path)


@dataclass
class Session:
    """Per-connection firmware state (reset on disconnect)."""

    report_mode: bool = False
    pending_reports: set[int] = field(default_factory=set)


@dataclass
class Channel:
    """Firmware state of one channel plus its last ADC sample and output stage."""

    firmware: str
    i_set: float = 0.0
    max_v: float = 0.0
    max_i_pos: float = 0.0
    max_i_neg: float = 0.0
    center: Optional[float] = None  # None = measured VREF
    reversed: bool = False
    pid_engaged: bool = False
    pid: Pid = field(init=False)
    t0_k: float = 25.0 + KELVIN
    r0: float = 10_000.0
    b: float = 3800.0
    postfilter: Optional[int] = 0  # index into POSTFILTER_RATES, None = off
    time_ms: int = 0
    interval: float = 0.1
    adc: Optional[float] = None
    sens: Optional[float] = None
    temperature: Optional[float] = None
    dac: float = VREF
    current: float = 0.0  # physical TEC current (A), + cools

    def __post_init__(self) -> None:
        self.pid = Pid(setpoint_kick=self.firmware == "2023")

    def conversion_time(self) -> float:
        rate = _CHANNEL_RATE_OFF if self.postfilter is None else _CHANNEL_RATES[self.postfilter]
        return 0.5 / rate

    def apply_output(self) -> None:
        self.dac, self.current = tec_current(self.i_set, self.center, self.reversed,
                                             self.max_i_pos, self.max_i_neg, self.max_v)

    def config(self) -> dict[str, Any]:
        """Per-channel flash record (target saved as f32)."""
        p = self.pid
        cfg: dict[str, Any] = {
            "center": self.center, "kp": p.kp, "ki": p.ki, "kd": p.kd,
            "output_min": p.output_min, "output_max": p.output_max,
            "target": to_f32(p.target), "pid_engaged": self.pid_engaged,
            "t0_k": self.t0_k, "r0": self.r0, "b": self.b, "max_v": self.max_v,
            "max_i_pos": self.max_i_pos, "max_i_neg": self.max_i_neg,
            "postfilter": self.postfilter,
        }
        if self.firmware == "2025":
            cfg["i_set"] = 0.0 if self.pid_engaged else self.i_set
            cfg["reversed"] = self.reversed
        return cfg

    def restore(self, cfg: dict[str, Any]) -> None:
        self.center = cfg["center"]
        p = self.pid
        p.kp, p.ki, p.kd = cfg["kp"], cfg["ki"], cfg["kd"]
        p.output_min, p.output_max, p.target = cfg["output_min"], cfg["output_max"], cfg["target"]
        self.pid_engaged = cfg["pid_engaged"]
        self.t0_k, self.r0, self.b = cfg["t0_k"], cfg["r0"], cfg["b"]
        self.max_v, self.max_i_pos, self.max_i_neg = cfg["max_v"], cfg["max_i_pos"], cfg["max_i_neg"]
        self.postfilter = cfg["postfilter"]
        if self.firmware == "2025":
            self.i_set = cfg.get("i_set", 0.0)
            self.reversed = cfg.get("reversed", False)
        self.apply_output()


class Device:
    """The simulated Thermostat: two plants, firmware state and command execution.

    ``faults`` are the device and plant faults in force (see :mod:`.faults`). ``on_sample(ch)`` is called after every ADC sample while online.
    ``plants`` gives each channel's thermal parameters.
    """

    def __init__(self, firmware: str, rng: random.Random, flash: Flash,
                 faults: Optional[Faults] = None,
                 plants: tuple[PlantParams, PlantParams] = (PlantParams(), PlantParams())) -> None:
        if firmware not in POSTFILTER_RATES:
            raise ValueError(f"unknown firmware {firmware!r}")
        self.firmware = firmware
        self.rng = rng
        self.flash = flash
        self.faults = Faults() if faults is None else faults
        self._drift_k = 0.0  # ambient offset accumulated by the ambient_drift fault
        self.on_sample: Optional[Callable[[int], None]] = None
        self.hwrev = (2, 2)
        self.fan_pwm_recommended = False
        self.plants = [Plant(plants[0]), Plant(plants[1])]
        self.channels = [Channel(firmware), Channel(firmware)]
        self.online = False
        self.boot_t = 0.0
        self._t = 0.0
        self._next_t = math.inf
        self._next_ch = 0
        self._fan_auto = True
        self._fan_level = 100
        self._fan_k = (1.0, 0.0, 0.0)

    # ---- time line -------------------------------------------------------

    def boot(self, t: float) -> None:
        """Power up so that the network is up at plant time ``t``: defaults, then
        the saved config from flash."""
        self.advance(t)
        self.channels = [Channel(self.firmware), Channel(self.firmware)]
        for ch, channel in enumerate(self.channels):
            cfg = self.flash.get(f"ch{ch}")
            if cfg is not None:
                channel.restore(cfg)
        self._fan_auto, self._fan_level, self._fan_k = True, 100, (1.0, 0.0, 0.0)
        self.online = True
        # The ADC has been running for a while when the network comes up, so the
        # first client already sees data (uptime ≈ NETWORK_UP_S).
        self.boot_t = t - NETWORK_UP_S
        self._next_ch = 0
        self._next_t = self.boot_t + self.channels[0].conversion_time()
        self.advance(t)

    def shutdown(self, t: float) -> None:
        """Go off the network at plant time ``t``: outputs off, ADC stopped."""
        self.advance(t)
        self.online = False
        self._next_t = math.inf
        for channel in self.channels:
            channel.current = 0.0

    @property
    def next_sample_t(self) -> float:
        """Plant time of the next ADC sample (``inf`` while offline)."""
        return self._next_t

    def uptime(self, t: float) -> float:
        """Device seconds since the last boot."""
        return t - self.boot_t

    def advance(self, t: float) -> None:
        """Run plants, ADC samples and PIDs up to plant time ``t``."""
        channels = self.channels
        while self._next_t <= t:
            te = self._next_t
            dt = te - self._t
            if dt > 0:
                self._step_plants(dt)
                self._t = te
            ch = self._next_ch
            self._sample(ch, te)
            self._next_ch = ch ^ 1
            self._next_t = te + channels[ch ^ 1].conversion_time()
        if t > self._t:
            self._step_plants(t - self._t)
            self._t = t

    def _step_plants(self, dt: float) -> None:
        faults = self.faults
        self._drift_k += faults.ambient_drift * dt / 3600.0
        for ch, (plant, channel) in enumerate(zip(self.plants, self.channels)):
            ambient = AMBIENT_C + self._drift_k + (OVERHEAT_K if ch in faults.overheat else 0.0)
            plant.step(dt, self.flowing(ch), ambient)

    def flowing(self, ch: int) -> float:
        """The current through channel ``ch``'s TEC (A): none when it is disconnected."""
        return 0.0 if ch in self.faults.tec_open else self.channels[ch].current

    def _sample(self, ch: int, te: float) -> None:
        c = self.channels[ch]
        ms = int(round((te - self.boot_t) * 1000.0))
        c.interval = (ms - c.time_ms) / 1000.0
        c.time_ms = ms
        if ch in self.faults.unplugged:
            c.adc = c.sens = c.temperature = None
        else:
            measured = self.plants[ch].sensor + self.rng.gauss(0.0, NOISE_K)
            resistance = SHORT_OHMS if ch in self.faults.shorted else \
                thermistor_resistance(measured)
            c.adc = adc_from_resistance(resistance)
            c.sens = sens_from_adc(c.adc)
            c.temperature = temperature_from_sens(c.sens, c.t0_k, c.r0, c.b)
        if c.temperature is not None:
            y = c.pid.update(c.temperature)
            if c.pid_engaged:
                c.i_set = min(max(y, -2.0), 2.0) if self.firmware == "2025" else y
                c.apply_output()
        elif c.pid_engaged:
            c.i_set = 0.0
            c.apply_output()
        if self.on_sample is not None:
            self.on_sample(ch)

    # ---- commands --------------------------------------------------------

    def execute(self, cmd: tuple, t: float, session: Session) -> tuple[list[str], Optional[str]]:
        """Run a parsed command; returns (reply lines, action) with action in
        ``None``, ``"quit"``, ``"reset"``, ``"dfu"``."""
        self.advance(t)
        name = cmd[0]
        if name in ("quit", "reset", "dfu"):
            return [], name
        handler: Callable[[tuple, Session], list[str]] = getattr(self, f"_cmd_{name}")
        return handler(cmd, session), None

    def report_line(self) -> str:
        """The ``report`` reply (both channels, current state)."""
        return encode([self._report(ch) for ch in (0, 1)])

    def _report(self, ch: int) -> dict[str, Any]:
        c = self.channels[ch]
        gauss = self.rng.gauss
        sign = -1.0 if c.reversed else 1.0
        current = self.flowing(ch)
        i_tec = VREF + ITEC_V_PER_A * current + gauss(0.0, 0.4e-3)
        return {
            "channel": ch, "time": c.time_ms / 1000.0, "interval": c.interval,
            "adc": c.adc, "sens": c.sens, "temperature": c.temperature,
            "pid_engaged": c.pid_engaged, "i_set": self._i_set_shown(c),
            "dac_value": c.dac, "dac_feedback": c.dac + gauss(0.0, 0.5e-3),
            "i_tec": i_tec, "tec_i": sign * (i_tec - VREF) / ITEC_V_PER_A,
            "tec_u_meas": current * TEC_RESISTANCE + gauss(0.0, 2e-3),
            "pid_output": c.pid.y1,
        }

    def _i_set_shown(self, c: Channel) -> float:
        if self.firmware == "2025":
            return c.i_set
        # FW-2023 recomputes the setpoint from the (range-limited) DAC value.
        center = VREF if c.center is None else c.center
        return (c.dac - center) / DAC_V_PER_A

    def _cmd_report(self, cmd: tuple, session: Session) -> list[str]:
        return [self.report_line()]

    def _cmd_report_mode(self, cmd: tuple, session: Session) -> list[str]:
        if len(cmd) == 1:
            return ['{ "report": true }' if session.report_mode else '{ "report": false }']
        session.report_mode = cmd[1]
        if not session.report_mode:
            session.pending_reports.clear()
        return [_OK]

    def _cmd_output(self, cmd: tuple, session: Session) -> list[str]:
        if len(cmd) == 1:
            return [encode([self._output_summary(ch) for ch in (0, 1)])]
        c = self.channels[cmd[1]]
        what = cmd[2]
        if what == "pid":
            c.pid_engaged = True
            if c.temperature is None:
                c.i_set = 0.0
        elif what == "polarity":
            c.reversed = cmd[3]
        else:
            value = cmd[3]
            if self.firmware == "2025":
                lo, hi = _CLAMPS_2025[what]
                value = min(max(value, lo), hi)
            if what == "i_set":
                c.pid_engaged = False
            setattr(c, what, value)
        c.apply_output()
        return [_OK]

    def _output_summary(self, ch: int) -> dict[str, Any]:
        c = self.channels[ch]
        center: Any = "vref" if c.center is None else F32(c.center)
        values = {"i_set": self._i_set_shown(c), "max_v": c.max_v,
                  "max_i_pos": c.max_i_pos, "max_i_neg": c.max_i_neg}
        if self.firmware == "2023":
            return {"channel": ch, "center": center,
                    **{k: {"value": v, "max": _PWM_MAX_2023[k]} for k, v in values.items()}}
        return {"channel": ch, "center": center, **values,
                "polarity": "reversed" if c.reversed else "normal"}

    def _cmd_center(self, cmd: tuple, session: Session) -> list[str]:
        c = self.channels[cmd[1]]
        c.center = None if cmd[2] is None else to_f32(cmd[2])
        c.apply_output()
        return [_OK]

    def _cmd_pid(self, cmd: tuple, session: Session) -> list[str]:
        if len(cmd) == 1:
            return [encode([self._pid_summary(ch) for ch in (0, 1)])]
        _, ch, param, value = cmd
        setattr(self.channels[ch].pid, param, value if param == "target" else to_f32(value))
        return [_OK]

    def _pid_summary(self, ch: int) -> dict[str, Any]:
        p = self.channels[ch].pid
        return {"channel": ch,
                "parameters": {"kp": F32(p.kp), "ki": F32(p.ki), "kd": F32(p.kd),
                               "output_min": F32(p.output_min), "output_max": F32(p.output_max)},
                "target": p.target}

    def _cmd_therm(self, cmd: tuple, session: Session) -> list[str]:
        if len(cmd) == 1:
            return [encode([{"channel": ch, "params": {"t0": c.t0_k, "r0": c.r0, "b": c.b}}
                            for ch, c in enumerate(self.channels)])]
        _, ch, param, value = cmd
        c = self.channels[ch]
        if param == "t0":
            c.t0_k = value + KELVIN
        else:
            setattr(c, param, value)
        return [_OK]

    def _cmd_postfilter(self, cmd: tuple, session: Session) -> list[str]:
        rates = POSTFILTER_RATES[self.firmware]
        if len(cmd) == 1:
            return [encode([{"channel": ch,
                             "rate": None if c.postfilter is None else F32(rates[c.postfilter])}
                            for ch, c in enumerate(self.channels)])]
        _, ch, rate = cmd
        self.channels[ch].postfilter = (
            None if rate is None else min(range(len(rates)), key=lambda i: abs(rates[i] - rate)))
        return [_OK]

    def _cmd_save(self, cmd: tuple, session: Session) -> list[str]:
        replies = []
        for ch in (0, 1) if cmd[1] is None else (cmd[1],):
            self.flash.put(f"ch{ch}", self.channels[ch].config())
            replies.append(_OK)
        return replies

    def _cmd_load(self, cmd: tuple, session: Session) -> list[str]:
        replies = []
        for ch in (0, 1) if cmd[1] is None else (cmd[1],):
            cfg = self.flash.get(f"ch{ch}")
            if cfg is None:
                replies.append(FLASH_NOT_FOUND)
            else:
                self.channels[ch].restore(cfg)
                replies.append(_OK)
        return replies

    def _cmd_ipv4(self, cmd: tuple, session: Session) -> list[str]:
        if len(cmd) == 1:
            ip = self.flash.get("ipv4") or _DEFAULT_IPV4
            text = '{"addr":"%s/%d"' % (".".join(map(str, ip["addr"])), ip["len"])
            if ip["gateway"] is not None:
                text += ',"gateway":"%s"' % ".".join(map(str, ip["gateway"]))
            return [text + "}"]
        _, addr, prefix, gateway = cmd
        self.flash.put("ipv4", {"addr": list(addr), "len": prefix,
                                "gateway": None if gateway is None else list(gateway)})
        return [_OK]

    def _has_fan(self) -> bool:
        return self.hwrev == (2, 2)

    def _cmd_fan(self, cmd: tuple, session: Session) -> list[str]:
        if len(cmd) == 1:
            return [encode(self._fan_summary()) if self._has_fan() else "null"]
        if not self._has_fan():
            return [_NO_FAN[self.firmware]]
        if cmd[1] == "auto":
            self._fan_auto = True
        else:
            self._fan_auto = False
            self._fan_level = min(max(cmd[1], 1), 100)
        return [_OK if self.fan_pwm_recommended else _FAN_PWM_WARNING]

    def _fan_summary(self) -> dict[str, Any]:
        abs_max = max(abs(c.current) for c in self.channels)
        pwm = self._fan_level
        if self._fan_auto:
            a, b, c = self._fan_k
            x = min(abs_max / 2.0, 1.0)
            pwm = min(max(round(100 * (a * x * x + b * x + c)), 1), 100)
        return {"fan_pwm": pwm, "abs_max_tec_i": abs_max, "auto_mode": self._fan_auto,
                "k_a": F32(self._fan_k[0]), "k_b": F32(self._fan_k[1]), "k_c": F32(self._fan_k[2])}

    def _cmd_fcurve(self, cmd: tuple, session: Session) -> list[str]:
        coefficients = (1.0, 0.0, 0.0) if cmd[1] is None else cmd[1]
        a, b, c = (to_f32(k) for k in coefficients)
        self._fan_k = (a, b, c)
        return [_OK]

    def _cmd_hwrev(self, cmd: tuple, session: Session) -> list[str]:
        major, minor = self.hwrev
        fan = self._has_fan()
        settings = {
            "fan_k_a": F32(1.0 if fan else 0.0), "fan_k_b": F32(0.0), "fan_k_c": F32(0.0),
            "min_fan_pwm": F32(0.04 if fan else 0.0), "max_fan_pwm": F32(1.0 if fan else 0.0),
            "fan_pwm_freq_hz": 25000 if fan else 0, "fan_available": fan,
            "fan_pwm_recommended": fan and self.fan_pwm_recommended,
        }
        return [encode({"rev": {"major": major, "minor": minor}, "settings": settings})]
