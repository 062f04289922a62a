"""``thermostat_bridge stability``: a channel's stability figures from a data directory.

    thermostat_bridge stability --data-dir /var/lib/thermostat-bridge --device cavity \\
        --channel 0 --from 2026-11-01 --to 2026-12-01 [--json]

The same figures as ``GET /stability`` (:mod:`.stability`), read from the
device's CSV log (and its caches) without a running bridge; a bridge may be
running on the directory meanwhile.  The samples are read a day at a time
behind a progress bar.  The sample period is the poll period the samples
were taken at: ``--poll-period``, by default their median spacing.
"""

import argparse
import datetime
import json
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .. import argtypes
from .schema import CHANNELS
from .config import DATA_DIR, DEVICE_NAME, DeviceConfig
from .stability import DEFAULT_BAND_K, analyse_rows, channel_columns, sample_period
from .storage.csvformat import DAY_MS, iso_time
from .storage.datadir import device_dir
from .storage.history import DiskHistory

PROG = "thermostat_bridge stability"


def parse_time(text: str) -> int:
    """Epoch ms of ``text``: an integer (epoch ms) or ISO-8601 (UTC unless
    it says otherwise), e.g. ``2026-11-28`` or ``2026-11-28T06:00Z``."""
    if text.strip().isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            "{!r} is neither epoch ms nor an ISO-8601 time".format(text)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number, not {!r}".format(text))
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be a number >= 0, not {!r}".format(text))
    return value


def get_argparser() -> argparse.ArgumentParser:
    """The command-line parser of the subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Stability of one channel from the data directory, as GET /stability"
                    " answers it: temperature and error statistics, drift, time in band and"
                    " the overlapping Allan deviation.")
    parser.add_argument("--data-dir", default=DATA_DIR,
                        help="the bridge's data directory (default {})".format(DATA_DIR))
    parser.add_argument("--device", required=True, metavar="NAME",
                        help="the device (as named to the bridge)")
    parser.add_argument("--channel", required=True, type=int, choices=range(CHANNELS))
    parser.add_argument("--from", dest="from_ms", type=parse_time, metavar="TIME",
                        help="start: epoch ms or ISO-8601, UTC by default (default: 24 h"
                             " before --to)")
    parser.add_argument("--to", dest="to_ms", type=parse_time, metavar="TIME",
                        help="end (default: now)")
    parser.add_argument("--band-mk", type=_non_negative, default=DEFAULT_BAND_K * 1000,
                        metavar="MK", help="half-width of the band around the setpoint"
                                           " (default %(default)g mK)")
    parser.add_argument("--poll-period", type=_positive, metavar="S",
                        help="the samples' poll period (default: their median spacing; {:g} s with"
                             " fewer than two)".format(DeviceConfig.poll_period))
    parser.add_argument("--json", action="store_true", help="print the JSON of /stability")
    return parser


def read_rows(history: DiskHistory, columns: list, start: int, end: int,
              progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """Every row of ``columns`` in ``[start, end]``, read a UTC day at a time."""
    first_day, last_day = start // DAY_MS, end // DAY_MS
    task = progress.add_task("reading", total=last_day - first_day + 1)
    ts_parts, value_parts = [], []
    for day in range(first_day, last_day + 1):
        ts, values = history.raw(max(start, day * DAY_MS), min(end, (day + 1) * DAY_MS - 1),
                                 columns)
        ts_parts.append(ts)
        value_parts.append(values)
        progress.advance(task)
    return np.concatenate(ts_parts), np.concatenate(value_parts)


def print_table(console: Console, answer: dict) -> None:
    """The figures as a person reads them."""
    def mk(value: Optional[float], digits: int = 3) -> str:
        return "—" if value is None else "{:.{}f} mK".format(value * 1000, digits)

    def celsius(value: Optional[float]) -> str:
        return "—" if value is None else "{:.5f} °C".format(value)

    figures = Table(title="{device} ch{channel}: {start} → {end}".format(
        start=iso_time(answer["from"]), end=iso_time(answer["to"]), **answer),
        show_header=False)
    error = answer["error"] or {}
    rows = [
        ("samples", "{} in {} segment(s), every {:g} s".format(
            answer["n"], answer["segments"], answer["period_s"])),
        ("mean", celsius(answer["mean"])), ("std", mk(answer["std"])),
        ("min / max", "{} / {}".format(celsius(answer["min"]), celsius(answer["max"]))),
        ("peak-to-peak", mk(answer["p2p"])),
        ("drift", "—" if answer["drift_k_per_h"] is None
         else "{:+.4f} mK/h".format(answer["drift_k_per_h"] * 1000)),
        ("error mean / std", "{} / {}".format(mk(error.get("mean")), mk(error.get("std")))),
        ("error peak-to-peak", mk(error.get("p2p"))),
        ("PID engaged", "—" if answer["engaged_fraction"] is None
         else "{:.1f} % of samples".format(100 * answer["engaged_fraction"])),
        ("within ±{:g} mK".format(answer["band_mk"]), "—" if answer["in_band_fraction"] is None
         else "{:.2f} % of engaged samples".format(100 * answer["in_band_fraction"])),
    ]
    for name, value in rows:
        figures.add_row(name, value)
    console.print(figures)
    allan = Table("τ (s)", "ADEV", "1σ interval", "terms", "noise α",
                  title="Overlapping Allan deviation")
    for p in answer["allan"]:
        interval = "—" if p["lo_k"] is None else "{} – {}".format(mk(p["lo_k"], 4),
                                                                  mk(p["hi_k"], 4))
        allan.add_row("{:g}".format(p["tau_s"]), mk(p["adev_k"], 4), interval,
                      str(p["terms"]), "—" if p["alpha"] is None else str(p["alpha"]))
    console.print(allan)
    for note in answer["notes"]:
        console.print("note: " + note)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``thermostat_bridge stability``."""
    parser = get_argparser()
    args = parser.parse_args(argv)
    if not DEVICE_NAME.match(args.device):
        parser.error("--device {!r} must match {}".format(args.device, DEVICE_NAME.pattern))
    end = int(time.time() * 1000) if args.to_ms is None else args.to_ms
    start = end - DAY_MS if args.from_ms is None else args.from_ms
    if start > end:
        parser.error("--from ({}) is later than --to ({})".format(iso_time(start),
                                                                   iso_time(end)))
    folder = device_dir(args.data_dir, args.device)
    if not os.path.isdir(folder):
        argtypes.fail(PROG, "no folder {} of device {!r} in the data directory".format(folder, args.device))
    history = DiskHistory(folder)
    columns = channel_columns(args.channel)
    stderr = Console(stderr=True)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("days"), TimeRemainingColumn(), console=stderr,
                      disable=not stderr.is_terminal) as progress:
            ts, values = read_rows(history, columns, start, end, progress)
            period = args.poll_period or sample_period(ts) or DeviceConfig.poll_period
            figures = analyse_rows(ts, values, history.columns(), args.channel, period,
                                   args.band_mk / 1000, (end - start) / 1000)
    except OSError as e:
        argtypes.fail(PROG, "{}: {}".format(folder, e.strerror or e))
    except KeyboardInterrupt:
        sys.exit(130)
    answer = {"device": args.device, "channel": args.channel, "from": start, "to": end,
              **figures}
    if args.json:
        print(json.dumps(answer))
    else:
        print_table(Console(), answer)
