"""A full disk under the alarm log and the audit trail: the entries they
cannot write are held in memory and served, /health says which log fails and
why, and once space returns the held entries are written in order before new
ones; what exceeded the hold is counted and logged as lost.  The files stay
parseable throughout.  On a real (small) tmpfs (``small_disk``)."""

import json
import logging
import os

import pytest

from harness import FIRST, fill, only, polled, running_bridge, wait_for, wait_until
from thermostat_ctrl.bridge.alarms.book import HISTORY_NAME, AlarmBook
from thermostat_ctrl.bridge.audit import FILE_NAME, AuditLog
from thermostat_ctrl.bridge.storage.linelog import LineLog

FULL = "No space left on device"
WRITER = ("carol", "carol-token-0123456789abcdef")


def lines_of(path) -> list:
    """Every line of a JSON-lines file, parsed (a torn line fails the test)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), "a half-written last line"
    return [json.loads(line) for line in data.splitlines()]


def until_failing(append, log) -> list:
    """Call ``append(i)`` until ``log`` fails (a page it has may still take
    some), then 10 more times; the i's appended while it failed."""
    i = 0
    while log.failing is None:
        append(i)
        i += 1
    held = [i - 1]
    for i in range(i, i + 10):
        append(i)
        held.append(i)
    return held


def test_alarm_log_holds_and_serves_entries_then_writes_them_in_order(small_disk):
    book = AlarmBook(str(small_disk))
    book.silence(60, "before", "x" * 200)
    filler = fill(small_disk)
    held = until_failing(lambda i: book.silence(60, "during", str(i) + "x" * 200), book.log)
    assert FULL in book.log.failing and book.log.held == len(held)
    comments = [e.get("comment", "").rstrip("x") for e in book.history()
                if e["event"] == "silenced"]
    assert comments[-len(held):] == [str(i) for i in held], "held entries are served"
    assert len(lines_of(small_disk / HISTORY_NAME)) == len(comments) - len(held)
    os.unlink(filler)
    book.silence(60, "after")
    assert book.log.failing is None and book.log.held == 0
    assert book.log.caught_up == len(held) and book.log.lost == 0
    on_disk = [e["created_by"] for e in lines_of(small_disk / HISTORY_NAME)]
    assert on_disk == [e["created_by"] for e in book.history()]
    assert on_disk[0] == "before" and on_disk[-1] == "after"
    assert on_disk.count("during") == len(comments) - 1
    book.close()


def test_what_exceeds_the_hold_is_counted_and_logged_lost(small_disk, caplog):
    log = LineLog(str(small_disk / "log.jsonl"), "test log", max_held=5)
    filler = fill(small_disk)
    held = until_failing(lambda i: log.append({"i": i, "pad": "x" * 200}), log)
    assert log.held == 5 and log.lost == len(held) - 5
    assert [e["i"] for e in log.entries()][-5:] == held[-5:]
    lost_lines = [r.message for r in caplog.records
                  if r.levelno == logging.ERROR and "entry never written" in r.message]
    assert len(lost_lines) == log.lost and '"i":{}'.format(held[0]) in lost_lines[0]
    os.unlink(filler)
    assert log.append({"i": "new"})
    assert log.caught_up == 5
    on_disk = [e["i"] for e in lines_of(small_disk / "log.jsonl")]
    assert on_disk[-6:] == held[-5:] + ["new"] and held[0] not in on_disk
    assert any("a gap in the log" in r.message for r in caplog.records)
    log.close()


def test_audit_entries_are_held_served_and_written_by_the_retry(small_disk):
    audit = AuditLog(str(small_disk))
    audit.record("d", "target", "before").result()
    filler = fill(small_disk)

    def record(i: int) -> None:
        try:
            audit.record("d", "target", "w{}".format(i), detail="x" * 200).result()
        except OSError as e:
            assert FULL in str(e)
    held = until_failing(record, audit.file)
    assert [e["who"] for e in audit.entries()][-len(held):] == ["w{}".format(i) for i in held]
    os.unlink(filler)
    # No new entry: the retry writes the held ones.
    wait_until(lambda: audit.file.failing is None, what="the audit trail writing again")
    assert audit.file.caught_up == len(held) and audit.file.lost == 0
    on_disk = [e["who"] for e in lines_of(small_disk / FILE_NAME)]
    assert on_disk == [e["who"] for e in audit.entries()]
    audit.close()
    assert [e["who"] for e in AuditLog(str(small_disk)).entries()] == on_disk


def test_a_torn_last_line_of_the_alarm_log_is_cut_off_on_open(tmp_path):
    book = AlarmBook(str(tmp_path))
    book.silence(60, "alice")
    book.close()
    with open(tmp_path / HISTORY_NAME, "ab") as f:
        f.write(b'{"event":"silenced","ts":12,"crea')  # a crash in the middle of a line
    book = AlarmBook(str(tmp_path))
    book.silence(60, "bob")
    book.close()
    assert [e["created_by"] for e in lines_of(tmp_path / HISTORY_NAME)] == ["alice", "bob"]


@pytest.mark.parametrize("log", ["alarms", "audit"])
async def test_health_says_which_log_fails_and_the_api_serves_its_held_entries(
        small_disk, log):
    async with running_bridge(small_disk, fields=("temperature",),
                              write_tokens=(WRITER,)) as (bridge, client):
        only(bridge).simulation.hold(0)
        await polled(bridge, 5)
        filler = fill(small_disk)
        if log == "alarms":
            await wait_for(lambda: bridge.alarms.silence(60, "carol") and bridge.alarms.log.failing,
                           what="a failed write of the alarm log")
        else:
            put = "/devices/{}/channels/0/target".format(FIRST)
            auth = {"Authorization": "Bearer " + WRITER[1]}
            await wait_for(lambda: _put_failed(client, put, auth), what="a failed audit write")
        r = await client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        state = r.json()["logs"][log]
        assert state["status"] == "failed" and FULL in state["error"] and state["held"] >= 1
        route = "/alarms/history" if log == "alarms" else "/audit"
        served = (await client.get(route)).json()
        who = "created_by" if log == "alarms" else "who"
        # Among them (an alarm the bridge raised on its own may come with it).
        assert any(entry.get(who) == "carol" for entry in served), served
        os.unlink(filler)
        await wait_for(lambda: _log_ok(client, log), what="the log writing again")
        r = await client.get("/health")
        assert r.json()["logs"][log]["caught_up"] >= 1 and r.json()["logs"][log]["lost"] == 0
        # What was served while held is what the file has, in order (entries the
        # bridge made since, such as an alarm of its own, may follow).
        assert (await client.get(route)).json()[:len(served)] == served
    name = HISTORY_NAME if log == "alarms" else FILE_NAME
    assert lines_of(small_disk / name)[:len(served)] == served


async def _put_failed(client, url: str, auth: dict) -> bool:
    r = await client.put(url, json={"value": 25.25}, headers=auth)
    if r.status_code == 503:  # the device was slow to answer on a busy machine: again
        return False
    assert r.status_code == 200, r.text
    return (await client.get("/health")).json()["logs"]["audit"]["status"] == "failed"


async def _log_ok(client, log: str) -> bool:
    return (await client.get("/health")).json()["logs"][log]["status"] == "ok"
