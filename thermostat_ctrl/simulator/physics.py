"""Thermal plant, output stage, thermistor chain and firmware PID of one channel.

Plant (one lumped thermal mass per channel, the TEC's hot side sits on a heat
sink at ambient temperature)::

    C dT/dt = G (T_amb - T) - S I + R I² / 2

=========================  ==========  ==========================================
constant                   value       meaning
=========================  ==========  ==========================================
``HEAT_CAPACITY`` C        20 J/K      ~20 g aluminium mount plus TEC cold plate
``LEAK`` G                 0.5 W/K     conductance to ambient (TEC + air), τ = 40 s
``PELTIER`` S              6 W/A       Peltier heat pumped per ampere; positive
                                       current cools
``TEC_RESISTANCE`` R       1.5 Ω       electrical resistance (Joule heat, half of
                                       it lands on the cold side)
``AMBIENT_C``              25 °C       ambient / heat-sink temperature
``NOISE_K``                3 mK        gaussian noise on each thermistor sample
``SENSOR_LAG`` τs          1 s         the thermistor follows the mass with this
                                       first-order lag (its thermal contact)
=========================  ==========  ==========================================

Heat capacity, thermal resistance (1/G) and sensor lag are configurable per
channel (:class:`PlantParams`; ``thermostat_sim --heat-capacity`` etc.).

With the FW-2025 limits (±2 A, 4 V ⇒ voltage never binds at 1.5 Ω) the plant
reaches about 7 °C…55 °C. The current is constant between ADC samples, so each
step integrates the linear ODE exactly (stable for any step length). With the
upstream example gains kp = 0.45, ki = 0.012, kd = 4.3 at 8.4 Hz a 5-10 K step
settles within ±10 mK in 1.5-2 simulated minutes; kp = 0.15, ki = 0.004,
kd = 1.5 takes about three.

Thermistor: 10 kΩ at 25 °C, B = 3800 K (beta equation) in the divider
of the board: ``adc = 1.65 V · R / (10 200 Ω + R)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "AMBIENT_C", "HEAT_CAPACITY", "LEAK", "PELTIER", "TEC_RESISTANCE", "NOISE_K",
    "SENSOR_LAG", "VREF", "PlantParams", "Plant", "Pid", "tec_current", "thermistor_resistance", "adc_from_resistance",
    "sens_from_adc", "temperature_from_sens",
]

AMBIENT_C = 25.0
HEAT_CAPACITY = 20.0
LEAK = 0.5
PELTIER = 6.0
TEC_RESISTANCE = 1.5
NOISE_K = 0.003
SENSOR_LAG = 1.0

VREF = 1.5          # MAX1968 reference (V)
DAC_V_PER_A = 0.5   # DAC volts per ampere around the centre point
DAC_MAX_V = 3.0     # AD5680 range after the divider
ITEC_V_PER_A = 0.4  # MAX1968 ITEC current-monitor gain
KELVIN = 273.15

# The physical thermistor fitted to the simulated plant.
_R0, _B, _T0_K = 10_000.0, 3800.0, 25.0 + KELVIN


@dataclass(frozen=True)
class PlantParams:
    """Thermal parameters of one channel's plant (the defaults are the table above).

    :param heat_capacity: C in J/K of the regulated mass.
    :param thermal_resistance: 1/G in K/W from the mass to ambient.
    :param sensor_lag: time constant in s with which the thermistor follows
        the mass (its thermal contact): the sensor delay of the loop. 0 makes
        the thermistor read the mass directly.
    """

    heat_capacity: float = HEAT_CAPACITY
    thermal_resistance: float = 1.0 / LEAK
    sensor_lag: float = SENSOR_LAG

    def __post_init__(self) -> None:
        for name in ("heat_capacity", "thermal_resistance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        lag = self.sensor_lag
        if not (isinstance(lag, (int, float)) and math.isfinite(lag) and lag >= 0):
            raise ValueError(f"sensor_lag must be a number >= 0, not {lag!r}")

    @property
    def time_constant(self) -> float:
        """C/G in seconds."""
        return self.heat_capacity * self.thermal_resistance


class Plant:
    """One channel's thermal mass (``temperature``, °C) and the thermistor that
    follows it with a first-order lag (``sensor``, °C)."""

    __slots__ = ("params", "temperature", "sensor")

    def __init__(self, params: PlantParams = PlantParams(),
                 temperature: float = AMBIENT_C) -> None:
        self.params = params
        self.temperature = temperature
        self.sensor = temperature

    def step(self, dt: float, current: float, ambient: float = AMBIENT_C) -> None:
        """Advance by ``dt`` seconds with a constant TEC ``current`` (A, + = cooling)
        and the heat sink at ``ambient`` (°C).

        Both first-order stages are integrated exactly: the mass relaxes to
        its steady state with τ = C/G, the sensor follows the mass with τs.
        """
        p = self.params
        steady = ambient + (0.5 * TEC_RESISTANCE * current * current
                              - PELTIER * current) * p.thermal_resistance
        tau, lag = p.time_constant, p.sensor_lag
        d = self.temperature - steady
        decay = math.exp(-dt / tau)
        self.temperature = steady + d * decay
        if lag == 0:
            self.sensor = self.temperature
            return
        s = self.sensor - steady
        if abs(tau - lag) < 1e-9 * tau:  # the limit of the general solution
            self.sensor = steady + (s + d * dt / tau) * decay
            return
        a = d * tau / (tau - lag)
        self.sensor = steady + a * decay + (s - a) * math.exp(-dt / lag)


def tec_current(command: float, center: Optional[float], reversed_: bool,
                max_i_pos: float, max_i_neg: float, max_v: float) -> tuple[float, float]:
    """MAX1968 output stage: returns (DAC voltage, physical TEC current).

    The DAC sits at the centre point plus 0.5 V/A (sign flipped for reversed
    polarity); the MAX1968 drives (DAC − VREF)/0.5 Ω, clamped by its current
    limit pins (swapped for reversed polarity) and by ``max_v``.
    """
    sign = -1.0 if reversed_ else 1.0
    dac = (VREF if center is None else center) + sign * command * DAC_V_PER_A
    dac = min(max(dac, 0.0), DAC_MAX_V)
    pos, neg = (max_i_neg, max_i_pos) if reversed_ else (max_i_pos, max_i_neg)
    v_limit = max(max_v, 0.0) / TEC_RESISTANCE
    current = (dac - VREF) / DAC_V_PER_A
    current = min(current, max(pos, 0.0), v_limit)
    current = max(current, -max(neg, 0.0), -v_limit)
    return dac, current


def thermistor_resistance(temperature_c: float) -> float:
    """Resistance (Ω) of the fitted 10 kΩ / B3800 thermistor."""
    return _R0 * math.exp(_B * (1.0 / (temperature_c + KELVIN) - 1.0 / _T0_K))


def adc_from_resistance(resistance: float) -> float:
    """AD7172 input voltage of the thermistor divider."""
    return 1.65 * resistance / (10_200.0 + resistance)


def sens_from_adc(adc: float) -> float:
    """Firmware conversion adc (V) -> thermistor resistance (Ω)."""
    return 10_200.0 * adc / (1.65 - adc)


def temperature_from_sens(sens: float, t0_k: float, r0: float, b: float) -> Optional[float]:
    """Firmware beta equation with the channel's configured parameters (°C)."""
    try:
        inverse = 1.0 / t0_k + math.log(sens / r0) / b
        result = 1.0 / inverse - KELVIN
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return result if math.isfinite(result) else None


class Pid:
    """Firmware PID: incremental form, one update per sample, no dt.

    ``Δy = kp(x0−x1) + ki(x0−target) + kd(x0−2x1+x2)`` (+ ``kp(target−previous
    target)`` with ``setpoint_kick``, FW-2023); ``y = clamp(y1+Δy, min, max)``.
    Gains/limits are stored f32-rounded by the caller. The history starts at the
    first sample (not at 0 °C) so a boot with saved gains does not kick.
    """

    __slots__ = ("kp", "ki", "kd", "output_min", "output_max", "target",
                 "setpoint_kick", "x1", "x2", "y1", "u1")

    def __init__(self, setpoint_kick: bool = False) -> None:
        self.kp = self.ki = self.kd = 0.0
        self.output_min, self.output_max = -2.0, 2.0
        self.target = 0.0
        self.setpoint_kick = setpoint_kick
        self.x1: Optional[float] = None
        self.x2 = 0.0
        self.y1 = 0.0
        self.u1 = 0.0

    def update(self, x0: float) -> float:
        """Feed a new temperature sample; returns the new output (A)."""
        if self.x1 is None:
            self.x1 = self.x2 = x0
            self.u1 = self.target
        x1, x2 = self.x1, self.x2
        dy = (self.kp * (x0 - x1) + self.ki * (x0 - self.target)
              + self.kd * (x0 - 2.0 * x1 + x2))
        if self.setpoint_kick:
            dy += self.kp * (self.target - self.u1)
            self.u1 = self.target
        y = min(max(self.y1 + dy, self.output_min), self.output_max)
        if not math.isfinite(y):
            y = 0.0
        self.x2, self.x1, self.y1 = x1, x0, y
        return y
