"""``thermostat_bridge import``: the original server's single CSV, with all
its quirks, arrives once and completely in a device's daily files, merges
into days that already hold rows, and is served exactly by the bridge."""

import csv
import io
import math
import os
import random
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone

import numpy as np

from harness import BRIDGE, FIRST, read_log, run_cli, running_bridge
from thermostat_ctrl.bridge.schema import columns_for
from thermostat_ctrl.bridge.storage.cachefile import CACHE_DIR
from thermostat_ctrl.bridge.storage.csvformat import DAY_MS, file_name
from thermostat_ctrl.bridge.storage.store import Store

T0 = datetime(2025, 10, 14, 19, 51, 56, 877487, tzinfo=timezone.utc)
#: Fields of the original, in its own order: a field the bridge does not log
#: (foo), the device's uptime as time_chN, a column that is not per channel.
HEADER = ["time", "ts", "temperature_ch1", "pid_engaged_ch0", "temperature_ch0", "foo_ch0",
          "tec_i_ch1", "pid_engaged_ch1", "time_ch0", "status"]
#: The columns that come out (time_ch0 becomes device_time_ch0; status is ignored).
COLUMNS = ["temperature_ch1", "pid_engaged_ch0", "temperature_ch0", "foo_ch0", "tec_i_ch1",
           "pid_engaged_ch1", "device_time_ch0"]


def old_server_csv(path, n=6000, seed=0, step=timedelta(seconds=37)):
    """Write the original server's file; return ``{ts: {column: value}}`` of
    its valid rows and the line numbers of its malformed ones."""
    rng = random.Random(seed)
    rows, bad = {}, []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    when = T0
    for i in range(n):
        when += step
        if i % 500 == 7:  # whole seconds: isoformat() leaves out the fraction
            when = when.replace(microsecond=0)
        ts = int(when.timestamp() * 1000)
        values = {
            "temperature_ch1": rng.choice([round(rng.gauss(25, 1), 6), None]),
            "pid_engaged_ch0": rng.choice([True, False]),
            "temperature_ch0": rng.gauss(25, 1),  # full repr precision
            "foo_ch0": rng.randint(-5, 5),
            "tec_i_ch1": rng.choice([0.1, -1e-05, None, 2.5e-7]),
            "pid_engaged_ch1": rng.choice([True, False, None]),
            "time_ch0": 3523.442 + i,
        }
        line = [when.isoformat(), ts, *values.values(), "ok"]
        if i % 997 == 5:  # the same ts again (the first one counts)
            writer.writerow(line)
        writer.writerow(line)
        rows.setdefault(ts, values)
    text = out.getvalue().splitlines(keepends=True)
    # Malformed lines, at known places (1-based, the header is line 1).
    for number, line in sorted({
        10: "garbage\n",
        20: "{},notanumber,1,True,2,3,4,False,5,ok\n".format(T0.isoformat()),
        30: "2025-13-45T00:00:00+00:00,{},1,True,2,3,4,False,5,ok\n".format(
            int(T0.timestamp() * 1000) + 5),
        40: "{},{},abc,True,2,3,4,False,5,ok\n".format(T0.isoformat(),
                                                       int(T0.timestamp() * 1000) + 7),
        50: "{},{},1,True,2,3,4,False,5,ok\n".format(  # time and ts disagree
            T0.isoformat(), int(T0.timestamp() * 1000) + 86_400_000),
        60: "{},{},1,True,2\n".format(T0.isoformat(), int(T0.timestamp() * 1000) + 9),
    }.items()):
        text.insert(number - 1, line)
        bad.append(number)
    body = "".join(text)
    body += body.splitlines(keepends=True)[-1][:25]  # torn last line
    bad.append(len(text) + 1)
    with open(path, "w") as f:
        f.write(body)
    return rows, bad


def bridge_rows(path):
    """``{ts: {column: value}}`` of a bridge /data.csv body, gap marks apart."""
    reader = csv.reader(io.StringIO(path))
    header = next(reader)
    rows, marks = {}, 0
    for row in reader:
        cells = row[2:]
        if all(c == "" for c in cells):
            marks += 1
            continue
        rows[int(row[1])] = dict(zip(header[2:], cells))
    return rows, marks


def expected_cell(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def existing_day(device_dir, day_rows):
    """A day already logged by the bridge (other columns), through its own store."""
    columns = columns_for(["temperature", "pid_engaged", "target"])
    store = Store(str(device_dir), columns, 10)
    for ts, value in day_rows:
        assert store.append(ts, columns, np.array([value, value + 1, 1, 0, 25, 26]))
    store.close()
    return columns


async def test_import_once_merge_and_serve(tmp_path):
    source = tmp_path / "thermostat.csv"
    rows, bad = old_server_csv(source)
    data_dir = tmp_path / "data"
    device_dir = data_dir / FIRST
    stamps = sorted(rows)
    # The bridge already logged part of the second day: some of the same
    # instants (duplicates), and instants in between (kept, in their order).
    second_day = stamps[0] // DAY_MS + 1
    day_stamps = [t for t in stamps if t // DAY_MS == second_day]
    logged = [(t, 30.0 + i) for i, t in enumerate(day_stamps[100:120])] + \
             [(t + 1, 40.0 + i) for i, t in enumerate(day_stamps[200:230])]
    logged.sort()
    existing_day(device_dir, logged)

    r = run_cli("import", str(source), "--device", FIRST, "--data-dir", str(data_dir),
                timeout=120)
    assert r.returncode == 1, r.stderr  # some lines were refused
    valid = len(rows)
    already = 20  # the logged instants that the file has too
    assert "imported {} rows".format(valid - already) in r.stdout, r.stdout
    assert "skipped {} duplicates".format(already + 7) in r.stdout, r.stdout  # + repeats
    assert "refused {} malformed (line {}, ...)".format(len(bad), ", ".join(
        map(str, bad[:5]))) in r.stdout, r.stdout
    assert "ignored columns: status" in r.stdout
    # The reason of each of the first refused lines, with its text, then a count.
    reasons = [line.strip() for line in r.stdout.splitlines() if "  refused line" in line]
    assert [line.split(":")[0] for line in reasons] == [
        "refused line {}".format(n) for n in bad[:5]], r.stdout
    assert "'garbage'" in reasons[0] and "1 cells where the header has 10" in reasons[0]
    assert "ts 'notanumber' is not an integer" in reasons[1]
    assert "is not an ISO-8601 time" in reasons[2]
    assert "cell 3 'abc' is not a number or boolean" in reasons[3]
    assert "86400000 ms away from ts" in reasons[4]
    assert "and {} more refused line(s)".format(len(bad) - 5) in r.stdout
    # New day files are readable as the bridge's own are (not 0600).
    bridge_mode = (device_dir / file_name(second_day)).stat().st_mode & 0o777
    modes = {(device_dir / n).stat().st_mode & 0o777 for n in os.listdir(device_dir)
             if n.endswith(".csv")}
    assert modes == {bridge_mode} and bridge_mode & 0o044, (oct(bridge_mode), modes)

    # Every file is whole, sorted and one header wide; caches are built for
    # the imported days but the newest file (the bridge's live one).
    log = read_log(device_dir)
    names = sorted({name for name, _, _ in log})
    assert len(names) == len({t // DAY_MS for t in stamps})
    assert sorted(os.listdir(device_dir / CACHE_DIR)) == sorted(
        "{}.{}".format(name, part) for name in names[:-1]
        for part in ("json", "ts.npy", "values.npy", "m.npy", "h.npy"))
    before = {name: (device_dir / name).read_bytes() for name in names}

    # Idempotent: the same file again adds nothing and rewrites nothing.
    r = run_cli("import", str(source), "--device", FIRST, "--data-dir", str(data_dir),
                timeout=120)
    assert r.returncode == 1, r.stderr
    assert "imported 0 rows" in r.stdout and "skipped {} duplicates".format(valid + 7) \
        in r.stdout, r.stdout
    assert {name: (device_dir / name).read_bytes() for name in names} == before

    async with running_bridge(data_dir) as (bridge, client):
        # Refused while a bridge holds the directory: one line, status 2.
        r = run_cli("import", str(source), "--device", FIRST, "--data-dir", str(data_dir))
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "in use" in r.stderr

        params = {"from": stamps[0], "to": stamps[-1] + 1, "max_points": 100_000,
                  "fields": "temperature,pid_engaged,foo,tec_i,device_time,target"}
        r = await client.get("/data.csv", params=params)
        assert r.status_code == 200
        served, marks = bridge_rows(r.text)
        series = (await client.get("/series", params=params)).json()
        assert len(series) == len(served) + marks

    # Every row once, value for value; the bridge's own rows kept theirs.
    assert len(served) == valid + len(logged) - already
    by_ts = {row["ts"]: row for row in series}
    bridge_own = {t for t, _ in logged}
    for ts, values in rows.items():
        if ts in bridge_own:
            continue  # logged by the bridge first: its row stays
        row = served[ts]
        for column, value in values.items():
            column = "device_time_ch0" if column == "time_ch0" else column
            if column in row:
                assert row[column] == expected_cell(value), (ts, column, row[column], value)
                cell = by_ts[ts][column]
                assert (cell is None) if value is None else \
                    cell == (int(value) if isinstance(value, bool) else value)
    for ts, value in logged:
        assert served[ts]["temperature_ch0"] == expected_cell(value), ts
        assert served[ts]["target_ch0"] == "25"


def peak_mb(argv, status: int) -> float:
    """Peak resident memory (VmHWM) of a process running ``argv`` (watched
    while it runs: a child's rusage would count the forking parent's), which
    must exit with ``status``."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        try:
            with open("/proc/{}/status".format(process.pid)) as f:
                match = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        except OSError:
            break
        if match:
            peak = max(peak, int(match[1]))
        time.sleep(0.01)
    assert process.wait() == status
    return peak / 1024


def test_import_memory_stays_flat(tmp_path):
    """A file of 30 days needs no more memory than one of 3 (beyond noise)."""
    peaks = []
    for days in (3, 30):
        n = days * 8640
        source = tmp_path / "old-{}.csv".format(n)
        old_server_csv(source, n=n, step=timedelta(seconds=10))
        peaks.append(peak_mb(BRIDGE + ["import", str(source), "--device", FIRST,
                                       "--data-dir", str(tmp_path / str(n))],
                             status=1))  # its malformed lines are refused
    print("import peak memory: {:.0f} MB for 3 days, {:.0f} MB for 30 days".format(*peaks))
    assert peaks[1] < peaks[0] + 10, peaks


def test_import_refuses_a_file_of_another_kind(tmp_path):
    source = tmp_path / "other.csv"
    source.write_text("a,b,c\n1,2,3\n")
    r = run_cli("import", str(source), "--device", FIRST, "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert "header does not start with time,ts" in r.stderr
    r = run_cli("import", str(source), "--device", "Bad Name", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "--device" in r.stderr
    assert not (tmp_path / "d" / FIRST).exists() or not list((tmp_path / "d" / FIRST).iterdir())
    assert file_name(0) == "thermostat-1970-01-01.csv"  # the layout the import writes
