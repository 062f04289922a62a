"""Rule settings: the defaults of :data:`.rules.RULES` with the overrides of
the TOML configuration, for the whole bridge, per device and per channel::

    [alarms.out_of_band]          # every device
    band_k = 0.02
    hold_s = 120

    [alarms.drift]
    enabled = true

    [[device]]
    name = "cavity"
    address = "10.0.0.6"
    [device.alarms.out_of_band]   # this device
    band_k = 0.005
    [device.alarms.ch1.tec_open]  # this device's channel 1
    enabled = false

Besides its parameters, every rule takes ``enabled`` and ``severity``
(``warning`` or ``critical``).  :func:`check` validates such a table and
raises ValueError naming the key; :func:`resolve` merges the layers.
"""

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from .rules import RULES, Rule

__all__ = ["SEVERITIES", "RuleConfig", "check", "resolve"]

SEVERITIES = ("warning", "critical")
_CHANNEL_KEYS = ("ch0", "ch1")
#: Parameters that count samples or events: positive integers.
_COUNTS = {"periods", "samples", "drops"}


@dataclass(frozen=True)
class RuleConfig:
    """One rule as it applies to one device or channel."""

    rule: Rule
    enabled: bool
    severity: str
    params: dict

    @property
    def name(self) -> str:
        """The rule's name."""
        return self.rule.name


def check(table: Any, where: str, channels: bool = False) -> dict:
    """``table`` (an ``alarms`` table of the configuration) if valid, else
    ValueError naming ``where`` and the key.  ``channels``: it may hold
    ``ch0`` / ``ch1`` tables (a device's)."""
    if not isinstance(table, Mapping):
        raise ValueError("{} must be a table".format(where))
    for key, value in table.items():
        if channels and key in _CHANNEL_KEYS:
            check(value, "{}.{}".format(where, key))
            for name, rule_table in value.items():
                if RULES[name].scope == "device":
                    raise ValueError("{}.{}.{}: a device rule has no channel settings".format(
                        where, key, name))
            continue
        rule = RULES.get(key)
        if rule is None:
            known = sorted(RULES) + (list(_CHANNEL_KEYS) if channels else [])
            raise ValueError("{}: unknown rule {!r}; known: {}".format(
                where, key, ", ".join(known)))
        _check_rule(rule, value, "{}.{}".format(where, key))
    return dict(table)


def _check_rule(rule: Rule, table: Any, where: str) -> None:
    if not isinstance(table, Mapping):
        raise ValueError("{} must be a table".format(where))
    for key, value in table.items():
        at = "{}.{}".format(where, key)
        if key == "enabled":
            if not isinstance(value, bool):
                raise ValueError("{} must be true or false, not {!r}".format(at, value))
        elif key == "severity":
            if value not in SEVERITIES:
                raise ValueError("{} must be one of {}, not {!r}".format(
                    at, ", ".join(SEVERITIES), value))
        elif key not in rule.defaults:
            raise ValueError("{}: unknown key {!r}; known: {}".format(
                where, key, ", ".join(sorted([*rule.defaults, "enabled", "severity"]))))
        elif key in _COUNTS:
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError("{} must be a whole number of at least 1, not {!r}".format(
                    at, value))
        elif not (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value)):
            raise ValueError("{} must be a number, not {!r}".format(at, value))
        elif value <= 0 and key not in ("min_c", "max_c"):
            raise ValueError("{} must be positive, not {!r}".format(at, value))
    merged = {**rule.defaults, **{k: v for k, v in table.items() if k in rule.defaults}}
    if merged.get("min_c", 0) >= merged.get("max_c", 1):
        raise ValueError("{}: min_c must be below max_c".format(where))
    if not 0 <= merged.get("hysteresis", 0) < 1 or not 0 <= merged.get("margin", 0) < 1:
        raise ValueError("{}: hysteresis and margin must be fractions below 1".format(where))


def resolve(bridge: Mapping, device: Mapping, channel: Optional[int] = None) -> list[RuleConfig]:
    """The rules of a device (``channel`` None: its device rules) or of one
    of its channels, each with the bridge's, the device's and the channel's
    settings applied in that order."""
    layers = [bridge, device]
    if channel is not None:
        layers.append(device.get(_CHANNEL_KEYS[channel], {}))
    scope = "device" if channel is None else "channel"
    configs = []
    for rule in RULES.values():
        if rule.scope != scope:
            continue
        merged: dict = {"enabled": rule.enabled, "severity": rule.severity, **rule.defaults}
        for layer in layers:
            merged.update(layer.get(rule.name, {}))
        enabled, severity = merged.pop("enabled"), merged.pop("severity")
        configs.append(RuleConfig(rule, enabled, severity, merged))
    return configs
