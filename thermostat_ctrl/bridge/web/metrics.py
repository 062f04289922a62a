"""Prometheus exposition of the bridge: a custom collector over its devices.

Metric families are built afresh on every scrape from each poller's cached
latest reading (the bridge polls on its own schedule; scrapes never touch a
device).  Every per-device series carries ``device="NAME"`` (and ``channel``
where it has one); the bridge's own series (the sample bus) do not.  When a
device's reading is stale (older than 3 poll periods) its value series are
left out, so Prometheus marks them stale and Grafana shows a gap.  Each
InfluxDB sink's series carry ``sink="<write URL>"``.
"""

from typing import Iterable, Iterator, Optional

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            InfoMetricFamily, Metric)
from prometheus_client.registry import Collector

from ..runtime import Bridge
from ..status import (CONNECTIONS, REGULATION_STATES, ChannelStatus, DeviceStatus,
                      device_status)

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


#: Output limit (``output`` reply key) -> (metric name, help text).
LIMIT_METRICS = {
    "max_i_pos": ("thermostat_max_current_positive_amperes", "Limit of the cooling current"),
    "max_i_neg": ("thermostat_max_current_negative_amperes", "Limit of the heating current"),
    "max_v": ("thermostat_max_voltage_volts", "Limit of the TEC voltage"),
}


def _number(value) -> Optional[float]:
    """A report value as float (bool as 0/1); None for null and non-numbers."""
    return float(value) if isinstance(value, (bool, int, float)) else None


class BridgeCollector(Collector):
    """Collects every device's state and latest reading, and the bus counters."""

    def __init__(self, bridge: Bridge):
        self.bridge = bridge

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families of one scrape."""
        devices = list(self.bridge.devices.values())
        statuses = [device_status(self.bridge, d) for d in devices]
        # The readings by the same look at the clock as thermostat_up: never a
        # device down with its values still exported, or the other way round.
        fresh = {d.name: d.poller.latest if status.connection == "fresh" else None
                 for d, status in zip(devices, statuses)}
        for field, (name, documentation) in CHANNEL_METRICS.items():
            family = GaugeMetricFamily(name, documentation + CACHED, labels=["device", "channel"])
            for device in devices:
                sample = fresh[device.name]
                if sample is None:
                    continue
                for ch, channel in enumerate(sample.report):
                    value = _number(channel.get(field))
                    if value is not None:
                        family.add_metric([device.name, str(channel.get("channel", ch))], value)
            if family.samples:
                yield family
        targets = GaugeMetricFamily("thermostat_target_temperature_celsius",
                                    "PID target temperature (refreshed every few polls)",
                                    labels=["device", "channel"])
        for device in devices:
            if fresh[device.name] is not None and device.poller.targets is not None:
                for ch, target in enumerate(device.poller.targets):
                    if _number(target) is not None:
                        targets.add_metric([device.name, str(ch)], float(target))
        if targets.samples:
            yield targets
        yield from self._limits(devices, fresh)
        yield from self._device_state(devices, statuses)
        yield from self._alarms()
        yield from self._bus()
        if self.bridge.sinks:
            yield from self._sinks()

    def _device_state(self, devices: list, statuses: list) -> Iterator[Metric]:

        def family(kind, name: str, field: str, labels=("device",)) -> Metric:
            return kind(name, DeviceStatus.model_fields[field].description, labels=list(labels))

        up = GaugeMetricFamily("thermostat_up", "1 if the latest poll is fresh" + CACHED,
                               labels=["device"])
        last = family(GaugeMetricFamily, "thermostat_last_poll_timestamp_seconds",
                      "last_poll_ts")
        age = family(GaugeMetricFamily, "thermostat_sample_age_seconds", "sample_age_s")
        duration = GaugeMetricFamily("thermostat_poll_duration_seconds",
                                     "Duration of the latest poll's device exchange",
                                     labels=["device"])
        counters = {field: family(CounterMetricFamily, name, field) for field, name in (
            ("polls_ok", "thermostat_polls"), ("polls_skipped", "thermostat_polls_skipped"),
            ("csv_rows_written", "thermostat_csv_rows_written"),
            ("csv_write_errors", "thermostat_csv_write_errors"),
            ("rows_refused", "thermostat_rows_refused"))}
        errors = family(CounterMetricFamily, "thermostat_poll_errors", "poll_errors",
                        ("device", "reason"))
        connection = family(GaugeMetricFamily, "thermostat_connection", "connection",
                            ("device", "connection"))
        state = GaugeMetricFamily(
            "thermostat_channel_state", "1 for the channel's regulation state: "
            + ChannelStatus.model_fields["state"].description, labels=["device", "channel",
                                                                          "state"])
        info = InfoMetricFamily("thermostat", "Device firmware dialect and hardware revision",
                                labels=["device"])
        for device, status in zip(devices, statuses):
            name = status.name
            up.add_metric([name], 1.0 if status.connection == "fresh" else 0.0)
            if status.last_poll_ts is not None:
                last.add_metric([name], status.last_poll_ts / 1000)
                age.add_metric([name], status.sample_age_s)
            if device.poller.last_duration is not None:
                duration.add_metric([name], device.poller.last_duration)
            for field, counter in counters.items():
                counter.add_metric([name], getattr(status, field))
            for reason, count in sorted(status.poll_errors.items()):
                errors.add_metric([name, reason], count)
            for value in CONNECTIONS:
                connection.add_metric([name, value], float(status.connection == value))
            for channel in status.channels:
                if channel.state is None or status.connection == "disconnected":
                    continue
                for value in REGULATION_STATES:
                    state.add_metric([name, str(channel.channel), value],
                                     float(channel.state == value))
            if status.firmware is not None:
                info.add_metric([name], {"firmware": status.firmware,
                                         "hwrev": status.hwrev or "unknown"})
        yield from (up, last, age, duration, *counters.values(), errors, connection, state,
                    info)

    def _limits(self, devices: list, fresh: dict) -> Iterator[Metric]:
        families = {key: GaugeMetricFamily(name, documentation + " (refreshed every few polls)",
                                           labels=["device", "channel"])
                    for key, (name, documentation) in LIMIT_METRICS.items()}
        for device in devices:
            limits = device.poller.limits
            if fresh[device.name] is None or limits is None:
                continue
            for ch, channel in enumerate(limits):
                for key, family in families.items():
                    value = _number(channel.get(key))
                    if value is not None:
                        family.add_metric([device.name, str(ch)], value)
        yield from (family for family in families.values() if family.samples)

    def _alarms(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "thermostat_alarm_active", "1 for each active alarm of the bridge's rules (channel"
            ' "" for a device rule; see /alarms)', labels=["device", "channel", "rule",
                                                           "severity"])
        for alarm in self.bridge.alarms.active():
            active.add_metric([alarm.device, "" if alarm.channel is None else str(alarm.channel),
                               alarm.rule, alarm.severity], 1.0)
        yield active
        evaluation = CounterMetricFamily("thermostat_alarm_rule_evaluations",
                                         "Rule evaluations of the alarm monitor")
        evaluation.add_metric([], self.bridge.monitor.evaluations)
        yield evaluation
        notifier = self.bridge.notifier
        if notifier is None:
            return
        families = {
            "sent": CounterMetricFamily("thermostat_notifications_sent",
                                        "Alarm messages delivered", labels=["receiver"]),
            "failed": CounterMetricFamily("thermostat_notifications_failed",
                                          "Alarm messages given up after every retry",
                                          labels=["receiver"]),
            "retries": CounterMetricFamily("thermostat_notification_retries",
                                           "Failed deliveries that were retried",
                                           labels=["receiver"]),
            "suppressed": CounterMetricFamily("thermostat_notifications_suppressed",
                                              "Raises not sent: the rate limit",
                                              labels=["receiver"]),
            "pending": GaugeMetricFamily("thermostat_notifications_pending",
                                         "Alarm messages waiting", labels=["receiver"]),
        }
        yield from _filled(families, ((state.url, state) for state in notifier.states()))

    def _bus(self) -> Iterator[Metric]:
        stats = self.bridge.bus.stats()
        families = {
            "delivered": CounterMetricFamily("thermostat_bus_delivered",
                                             "Samples the bus handed to a consumer",
                                             labels=["consumer"]),
            "dropped": CounterMetricFamily("thermostat_bus_dropped",
                                           "Samples a consumer lost by falling behind",
                                           labels=["consumer"]),
            "queued": GaugeMetricFamily("thermostat_bus_queued",
                                        "Samples waiting for a consumer", labels=["consumer"]),
        }
        yield from _filled(families, stats.items())

    def _sinks(self) -> Iterator[Metric]:
        families = {
            "points_sent": CounterMetricFamily("thermostat_sink_points_sent",
                                               "Points the database acknowledged",
                                               labels=["sink"]),
            "retries": CounterMetricFamily("thermostat_sink_retries",
                                           "Failed writes that are retried", labels=["sink"]),
            "refused": CounterMetricFamily("thermostat_sink_refused",
                                           "Writes the database refused as wrong (4xx)",
                                           labels=["sink"]),
            "dropped_points": CounterMetricFamily("thermostat_sink_dropped_points",
                                                  "Points lost because the spool was full",
                                                  labels=["sink"]),
            "backlog_points": GaugeMetricFamily("thermostat_sink_backlog_points",
                                                "Points spooled, not yet acknowledged",
                                                labels=["sink"]),
            "backlog_bytes": GaugeMetricFamily("thermostat_sink_backlog_bytes",
                                               "Bytes of the spooled backlog", labels=["sink"]),
            "oldest_unsent_age_s": GaugeMetricFamily(
                "thermostat_sink_oldest_unsent_age_seconds",
                "Age of the oldest sample not yet acknowledged", labels=["sink"]),
        }
        failing = GaugeMetricFamily("thermostat_sink_failing",
                                    "1 while the latest write failed (see /health last_error)",
                                    labels=["sink"])
        states = [sink.state() for sink in self.bridge.sinks]
        for state in states:
            failing.add_metric([state.url], 0.0 if state.last_error is None else 1.0)
        yield from _filled(families, ((state.url, state) for state in states))
        yield failing


def _filled(families: dict, rows: Iterable[tuple]) -> Iterator[Metric]:
    """``families`` (attribute name -> family with one label) filled from
    ``rows`` of (label value, object): each family gets the object's
    attribute of its name, where it is not None."""
    for label, obj in rows:
        for key, family in families.items():
            value = getattr(obj, key)
            if value is not None:
                family.add_metric([label], value)
    yield from families.values()


def registry_for(bridge: Bridge) -> CollectorRegistry:
    """A registry holding only the bridge's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgeCollector(bridge))
    return registry
