"""The stability summary: once a period (a day by default), per device and
channel, the period's figures (:mod:`.stability`) and alarms in one line a
person reads at a glance::

    cavity ch0: std 0.31 mK, p2p 2.1 mK, drift +0.100 mK/h, ADEV(1 s) 0.30 mK,
    ADEV(100 s) 42 µK, ADEV(1000 s) 15 µK, in band (±10 mK) 99.8 %, alarms: none

Off unless ``summary_at`` (``HH:MM``, UTC) is configured; then a summary of
the last ``summary_period_s`` seconds is made at that time of day and every
period after it.  Each summary is appended to
``<data-dir>/stability-summaries.txt`` (the lines, under a heading) and to
``<data-dir>/stability-summaries.jsonl`` (one JSON object: the lines and
every figure), and sent through the alarm notifiers (``notify``) when there
are any.
"""

import json
import logging
import math
import os
import re
import threading
import time
from typing import Any, Callable, Optional, Sequence

from .schema import CHANNELS
from .stability import DEFAULT_BAND_K, analyse_rows, channel_columns
from .storage.csvformat import iso_time

logger = logging.getLogger(__name__)

__all__ = ["TEXT_NAME", "JSON_NAME", "SUMMARY_TAUS_S", "check_at", "next_due", "line",
           "summarize", "write", "alarms_from", "Summaries"]

TEXT_NAME = "stability-summaries.txt"
JSON_NAME = "stability-summaries.jsonl"
#: The averaging times of the summary's Allan deviations.
SUMMARY_TAUS_S = (1.0, 100.0, 1000.0)
_AT = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")

#: ``alarms_of(device, from_ms, to_ms)``: the alarm log's entries of a device
#: in a range (the alarm book's history).
AlarmsOf = Callable[[str, int, int], list]


def alarms_from(book: Any) -> AlarmsOf:
    """The :data:`AlarmsOf` of an :class:`~.alarms.book.AlarmBook`."""
    def alarms_of(device: str, from_ms: int, to_ms: int) -> list:
        return [entry for entry in book.history(device, limit=1_000_000)
                if from_ms <= entry.get("ts", -1) <= to_ms]
    return alarms_of


def check_at(text: Any) -> int:
    """Seconds after midnight (UTC) of an ``HH:MM`` time; ValueError naming
    ``summary_at`` otherwise."""
    match = _AT.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError("summary_at must be a time of day HH:MM (UTC), not {!r}".format(text))
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60


def next_due(now_s: float, at_s: int, period_s: float) -> float:
    """The first summary time after ``now_s`` (epoch s): ``at_s`` after a UTC
    midnight plus a whole number of periods."""
    return at_s + (math.floor((now_s - at_s) / period_s) + 1) * period_s


def _kelvin(value: Optional[float]) -> str:
    """A spread in the unit that reads best: µK below 0.1 mK, mK below 1 K, else K."""
    if value is None:
        return "—"
    size = abs(value)
    if size < 1e-4:
        return "{:.3g} µK".format(value * 1e6)
    if size < 1:
        return "{:.3g} mK".format(value * 1e3)
    return "{:.3g} K".format(value)


def _adev_at(figures: dict, tau_s: float) -> Optional[dict]:
    """The Allan deviation point at ``tau_s`` (it may be a rounded multiple
    of the sample period), None when there is none."""
    for point in figures["allan"]:
        if abs(point["tau_s"] - tau_s) <= 0.5 * tau_s:
            return point
    return None


def line(device: str, channel: int, figures: dict, alarms: Sequence[dict]) -> str:
    """The one line of a channel's summary."""
    if not figures["n"]:
        return "{} ch{}: no samples".format(device, channel)
    drift = figures["drift_k_per_h"]
    parts = ["std " + _kelvin(figures["std"]), "p2p " + _kelvin(figures["p2p"]),
             "drift " + ("—" if drift is None else "{:+.3f} mK/h".format(drift * 1000))]
    for tau in SUMMARY_TAUS_S:
        point = _adev_at(figures, tau)
        parts.append("ADEV({:g} s) {}".format(point["tau_s"] if point else tau,
                                              _kelvin(point and point["adev_k"])))
    band = "in band (±{:g} mK) ".format(figures["band_mk"])
    if figures["in_band_fraction"] is not None:
        band += "{:.1f} %".format(100 * figures["in_band_fraction"])
    else:
        band += "— ({})".format("PID not engaged" if figures["engaged_fraction"] == 0
                                else "setpoint not recorded")
    parts.append(band)
    rules = sorted({a["rule"] for a in alarms})
    parts.append("alarms: " + ("{} ({})".format(len(alarms), ", ".join(rules)) if alarms
                               else "none"))
    return "{} ch{}: {}".format(device, channel, ", ".join(parts))


def summarize(devices: dict, to_ms: int, period_s: float,
              alarms_of: Optional[AlarmsOf] = None) -> dict:
    """The summary of the ``period_s`` up to ``to_ms`` of every device (the
    bridge's :class:`~.runtime.Device` objects by name).  ``alarms_of``: the
    alarms raised (where the alarm log exists)."""
    from_ms = to_ms - int(period_s * 1000)
    channels, lines = [], []
    for name, device in devices.items():
        raised = [a for a in (alarms_of(name, from_ms, to_ms) if alarms_of else [])
                  if a.get("event") == "raised"]
        recorded = device.store.all_columns()
        for channel in range(CHANNELS):
            table = device.store.query(from_ms, to_ms, channel_columns(channel))
            figures = analyse_rows(table.ts, table.values, recorded, channel,
                                   device.config.poll_period, DEFAULT_BAND_K,
                                   period_s, SUMMARY_TAUS_S)
            ours = [a for a in raised if a.get("channel") in (channel, None)]
            lines.append(line(name, channel, figures, ours))
            channels.append({"device": name, "channel": channel, **figures,
                             "alarms": ours})
    return {"from": from_ms, "to": to_ms, "lines": lines, "channels": channels}


def write(data_dir: str, summary: dict) -> None:
    """Append a summary to the data directory's two summary logs, each in
    one ``write()`` (a crash leaves at most a torn last entry)."""
    heading = "== stability {} → {}\n".format(iso_time(summary["from"]), iso_time(summary["to"]))
    for name, text in ((TEXT_NAME, heading + "".join(l + "\n" for l in summary["lines"])),
                       (JSON_NAME, json.dumps(summary, separators=(",", ":")) + "\n")):
        fd = os.open(os.path.join(data_dir, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


class Summaries:
    """Makes, writes and sends the summary at its times, on a thread of its own.

    :param send: ``send(title, body)`` of the notifiers, or None.
    """

    def __init__(self, data_dir: str, devices: dict, at_s: int, period_s: float,
                 alarms_of: Optional[AlarmsOf] = None,
                 send: Optional[Callable[[str, str], None]] = None):
        self.data_dir, self.devices = data_dir, devices
        self.at_s, self.period_s = at_s, period_s
        self.alarms_of, self.send = alarms_of, send
        #: Summaries made by this instance.
        self.made = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stability-summary", daemon=True)

    def start(self) -> None:
        """Start waiting for the first summary time."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop (a summary being made is finished first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        due = next_due(time.time(), self.at_s, self.period_s)
        while not self._stop.wait(max(0.0, due - time.time())):
            try:
                self.make(int(due * 1000))
            except Exception:  # a bug must not end the summaries of the days after
                logger.exception("the stability summary of %s failed", iso_time(int(due * 1000)))
            due = next_due(max(time.time(), due), self.at_s, self.period_s)

    def make(self, to_ms: int) -> dict:
        """Make, write and send the summary of the period up to ``to_ms``."""
        summary = summarize(self.devices, to_ms, self.period_s, self.alarms_of)
        try:
            write(self.data_dir, summary)
        except OSError as e:
            logger.error("cannot write the stability summary to %s: %s", self.data_dir,
                         e.strerror or e)
        if self.send is not None:
            self.send("Stability, {} → {}".format(iso_time(summary["from"]),
                                                  iso_time(summary["to"])),
                      "\n".join(summary["lines"]))
        self.made += 1
        logger.info("stability summary:\n%s", "\n".join(summary["lines"]))
        return summary
