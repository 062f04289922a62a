#!/usr/bin/env python3
"""Generate N days of realistic 1 Hz Thermostat history as bridge CSV files.

Both channels, the 13 numeric/boolean report fields and the PID target
(28 columns; the target steps every few hours), noise, a few missed polls (gaps) and a
channel-1 sensor that is unplugged (null) for an hour every day.  Rows are
formatted with vectorised numpy (fixed decimals), so a year takes a minute
or two:

    python scripts/gen_history.py --days 365 /tmp/thermostat-history
"""

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from thermostat_ctrl.bridge.schema import columns_for
from thermostat_ctrl.bridge.storage.csvformat import DAY_MS, file_name, header_line

#: (field, decimals, integer digits) in report order.
FIELDS = [
    ("device_time", 3, 8), ("interval", 3, 1), ("adc", 4, 1), ("sens", 2, 5),
    ("temperature", 4, 3), ("pid_engaged", 0, 1), ("i_set", 4, 1),
    ("dac_value", 4, 1), ("dac_feedback", 4, 1), ("i_tec", 4, 1), ("tec_i", 4, 1),
    ("tec_u_meas", 4, 1), ("pid_output", 4, 1), ("target", 1, 2),
]
COLUMNS = columns_for([f for f, _, _ in FIELDS])
_PAD = 0  # bytes dropped after formatting


def _digits(value: np.ndarray, width: int) -> np.ndarray:
    """Non-negative ints as (n, width) ASCII digits, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((value[:, None] // powers) % 10 + 48).astype(np.uint8)


def _format(values: np.ndarray, decimals: int, int_digits: int) -> np.ndarray:
    """Floats as (n, width) ASCII with fixed decimals, leading zeros and
    NaN cells turned into padding."""
    nan = np.isnan(values)
    scaled = np.rint(np.abs(np.where(nan, 0, values)) * 10.0 ** decimals).astype(np.int64)
    digits = _digits(scaled, int_digits + decimals)
    for p in range(int_digits - 1):  # leading zeros of the integer part
        digits[scaled < 10 ** (int_digits + decimals - 1 - p), p] = _PAD
    sign = np.where((values < 0) & (scaled > 0), ord("-"), _PAD).astype(np.uint8)[:, None]
    parts = [sign, digits[:, :int_digits]]
    if decimals:
        parts += [np.full((len(values), 1), ord("."), np.uint8), digits[:, int_digits:]]
    out = np.concatenate(parts, axis=1)
    out[nan] = _PAD
    return out


def _iso(ts: np.ndarray, day: int) -> np.ndarray:
    """ISO-8601 ``YYYY-MM-DDTHH:MM:SS.mmmZ`` of timestamps within ``day``."""
    prefix = np.frombuffer(file_name(day)[11:21].encode() + b"T", np.uint8)
    ms = ts - day * DAY_MS
    h, m, s, milli = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000
    colon = np.full((len(ts), 1), ord(":"), np.uint8)
    return np.concatenate([
        np.broadcast_to(prefix, (len(ts), len(prefix))), _digits(h, 2), colon,
        _digits(m, 2), colon, _digits(s, 2), np.full((len(ts), 1), ord("."), np.uint8),
        _digits(milli, 3), np.full((len(ts), 1), ord("Z"), np.uint8),
    ], axis=1)


def day_rows(day: int, seed: int = 0, until_ms: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and values (28 columns) of one day at 1 Hz (only rows up
    to ``until_ms`` when given: a day still in progress)."""
    rng = np.random.default_rng([seed, day])
    ts = day * DAY_MS + np.arange(0, DAY_MS, 1000, dtype=np.int64) + rng.integers(0, 3, 86_400)
    ts = ts[rng.random(len(ts)) > 0.001]  # missed polls
    if until_ms is not None:
        ts = ts[ts <= until_ms]
    n = len(ts)
    t = (ts - ts[0]) / 1000.0
    values = np.empty((n, len(COLUMNS)))
    for ch in range(2):
        target = np.where((t // 10_800) % 2 == 0, 25.0, 30.0) + ch
        temp = target + 0.05 * np.sin(t / 300 + day + ch) + rng.normal(0, 0.002, n)
        sens = 10_000 * np.exp(3950 * (1 / (temp + 273.15) - 1 / 298.15))
        current = 0.5 + 0.2 * np.sin(t / 3000 + ch) + rng.normal(0, 0.001, n)
        cols = {
            "device_time": (ts - day * DAY_MS) / 1000.0 + 12_345.0,
            "interval": 0.12 + rng.normal(0, 0.005, n).clip(-0.1, 0.1),
            "adc": 0.8 + (temp - 25) * 0.01, "sens": sens, "temperature": temp,
            "pid_engaged": np.ones(n), "i_set": current, "dac_value": 1.5 + current,
            "dac_feedback": 1.5 + current + rng.normal(0, 0.001, n),
            "i_tec": 1.5 + current * 0.9, "tec_i": current - 0.01, "tec_u_meas": current * 2 - 0.5,
            "pid_output": current, "target": target,
        }
        if ch == 1:
            unplugged = (t > 7200) & (t < 10_800)
            for f in ("adc", "sens", "temperature"):
                cols[f] = np.where(unplugged, np.nan, cols[f])
            cols["pid_engaged"] = np.where(unplugged, 0.0, 1.0)
        for j, (field, _, _) in enumerate(FIELDS):
            values[:, 2 * j + ch] = cols[field]
    return ts, values


def write_day(data_dir: str, day: int, seed: int = 0, until_ms: int | None = None) -> int:
    """Write one day's CSV (up to ``until_ms``); return its size in bytes."""
    ts, values = day_rows(day, seed, until_ms)
    n = len(ts)
    comma = np.full((n, 1), ord(","), np.uint8)
    parts = [_iso(ts, day), comma, _digits(ts, 13)]
    for j, (_, decimals, int_digits) in enumerate(FIELDS):
        for ch in range(2):
            parts += [comma, _format(values[:, 2 * j + ch], decimals, int_digits)]
    parts.append(np.full((n, 1), ord("\n"), np.uint8))
    table = np.concatenate(parts, axis=1)
    body = table[table != _PAD].tobytes()
    path = os.path.join(data_dir, file_name(day))
    with open(path, "wb") as f:
        f.write(header_line(COLUMNS) + body)
    return len(body)


def generate(data_dir: str, days: int, end_day: int | None = None, seed: int = 0,
             workers: int | None = None) -> list[str]:
    """Write ``days`` daily files ending with ``end_day`` (default: yesterday,
    UTC) into ``data_dir``; return the file names."""
    os.makedirs(data_dir, exist_ok=True)
    if end_day is None:
        end_day = int(time.time() * 1000) // DAY_MS - 1
    day_list = list(range(end_day - days + 1, end_day + 1))
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(write_day, [data_dir] * days, day_list, [seed] * days))
    return [file_name(d) for d in day_list]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    generate(args.data_dir, args.days, seed=args.seed)
    print(f"{args.days} days written to {args.data_dir} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
