"""Prometheus exposition of the bridge: a custom collector over the poller.

Metric families are built afresh on every scrape from the poller's cached
latest reading (the bridge polls on its own schedule; scrapes never touch the
device).  When that reading is stale (older than 3 poll periods) the value
series are left out, so Prometheus marks them stale and Grafana shows a gap.
"""

from typing import Iterator, Optional

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            InfoMetricFamily, Metric)
from prometheus_client.registry import Collector

from .poller import Poller
from .store import Store

CACHED = " (latest cached poll of the bridge)"

#: Report field -> (metric name, help text).  Names carry base units.
CHANNEL_METRICS = {
    "temperature": ("thermostat_temperature_celsius", "Thermistor temperature"),
    "sens": ("thermostat_thermistor_resistance_ohms", "Thermistor resistance"),
    "adc": ("thermostat_adc_input_volts", "AD7172 input voltage"),
    "tec_i": ("thermostat_tec_current_amperes", "Measured TEC current; positive cools"),
    "tec_u_meas": ("thermostat_tec_voltage_volts", "Measured TEC voltage"),
    "i_set": ("thermostat_current_setpoint_amperes", "TEC current setpoint"),
    "pid_output": ("thermostat_pid_output_amperes", "Last PID output"),
    "pid_engaged": ("thermostat_pid_engaged", "1 while the PID drives the output"),
    "dac_value": ("thermostat_dac_output_volts", "DAC output voltage"),
    "dac_feedback": ("thermostat_dac_feedback_volts", "DAC output read back"),
    "i_tec": ("thermostat_tec_current_monitor_volts", "MAX1968 current-monitor voltage"),
    "interval": ("thermostat_sample_interval_seconds", "Time between the last two ADC samples"),
}


def _number(value) -> Optional[float]:
    """A report value as float (bool as 0/1); None for null and non-numbers."""
    return float(value) if isinstance(value, (bool, int, float)) else None


class BridgeCollector(Collector):
    """Collects the poller's state and latest reading, and the store's counters."""

    def __init__(self, poller: Poller, store: Store):
        self.poller = poller
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families of one scrape."""
        poller = self.poller
        sample = poller.fresh()
        if sample is not None:
            yield from self._channel_values(sample.report)
        yield GaugeMetricFamily("thermostat_up", "1 if the latest poll is fresh" + CACHED,
                                value=1.0 if sample is not None else 0.0)
        if poller.latest is not None:
            yield GaugeMetricFamily(
                "thermostat_last_poll_timestamp_seconds",
                "Wall-clock time of the latest successful poll", value=poller.latest.ts / 1000)
            yield GaugeMetricFamily(
                "thermostat_sample_age_seconds", "Age of the latest successful poll",
                value=poller.sample_age())
        if poller.last_duration is not None:
            yield GaugeMetricFamily("thermostat_poll_duration_seconds",
                                    "Duration of the latest poll's device exchange",
                                    value=poller.last_duration)
        yield CounterMetricFamily("thermostat_polls", "Successful polls", value=poller.polls_ok)
        errors = CounterMetricFamily("thermostat_poll_errors", "Failed polls by reason",
                                     labels=["reason"])
        for reason, count in sorted(poller.failures.items()):
            errors.add_metric([reason], count)
        yield errors
        yield CounterMetricFamily("thermostat_polls_skipped",
                                  "Scheduled polls skipped because an earlier one ran late",
                                  value=poller.skipped)
        yield CounterMetricFamily("thermostat_csv_rows_written", "Rows written to the CSV log",
                                  value=self.store.rows_written)
        yield CounterMetricFamily("thermostat_csv_write_errors",
                                  "Failed writes to the CSV log", value=self.store.write_errors)
        yield CounterMetricFamily("thermostat_rows_refused",
                                  "Rows not stored: timestamp not after the previous row's"
                                  " (wall clock went back)", value=self.store.out_of_order)
        if poller.firmware is not None:
            yield InfoMetricFamily("thermostat", "Device firmware dialect and hardware revision",
                                   value={"firmware": poller.firmware,
                                          "hwrev": poller.hwrev or "unknown"})

    def _channel_values(self, report: list) -> Iterator[Metric]:
        for field, (name, documentation) in CHANNEL_METRICS.items():
            family = GaugeMetricFamily(name, documentation + CACHED, labels=["channel"])
            for ch, channel in enumerate(report):
                value = _number(channel.get(field))
                if value is not None:
                    family.add_metric([str(channel.get("channel", ch))], value)
            if family.samples:
                yield family
        if self.poller.targets is not None:
            family = GaugeMetricFamily("thermostat_target_temperature_celsius",
                                       "PID target temperature (refreshed every few polls)",
                                       labels=["channel"])
            for ch, target in enumerate(self.poller.targets):
                if _number(target) is not None:
                    family.add_metric([str(ch)], float(target))
            yield family


def registry_for(poller: Poller, store: Store) -> CollectorRegistry:
    """A registry holding only the bridge's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgeCollector(poller, store))
    return registry
