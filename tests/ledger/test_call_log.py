"""The write-ahead log of a directory's LM calls (refed_dspy.ledger.call_log): what a killed invocation paid and no
file holds is counted by the next one, once; a clean end leaves nothing to count; the log is kept whole, numbered
across invocations and folds, and an edit that lowers what it says was paid is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refed_dspy.clients.calls import CallInfo
from refed_dspy.errors import LedgerError
from refed_dspy.ledger import call_log
from refed_dspy.ledger.call_log import CallLog, Ledger, _Request, unaccounted, usage_of_requests


def _paid(tokens=(100, 20, 0)):
    return CallInfo("generate", "m", prompt_tokens=tokens[0], completion_tokens=tokens[1], cached_tokens=tokens[2])


def _kinds(path: Path) -> list[str]:
    return [next(iter(json.loads(x))) for x in path.read_text().splitlines()]


def test_a_clean_end_leaves_nothing_to_count_and_the_log_stays_whole(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    n = log.sent("teacher", "generate", "m", 0.01)
    log.settled(n, _paid(), 0.002)
    log.end()
    again = CallLog.open(path)
    assert again.lost is None and again.found_now is None
    assert again.earlier["calls"] == 1 and again.earlier["cost_usd"] == pytest.approx(0.002)
    again.end(reported_lost=True)
    assert _kinds(path) == ["open", "s", "p", "end", "open", "end"]  # nothing emptied or folded away
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[4]["from"] == 1 and lines[5] == {"end": again.invocation, "to": 1, "all": 1}


def test_a_killed_invocation_is_counted_once_settled_calls_at_their_cost_the_rest_at_their_bound(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    kept = log.sent("teacher", "generate", "m", 0.01)
    log.settled(kept, _paid(), 0.002)
    log.kept([kept])  # its record was written: not counted again
    answered = log.sent("teacher", "improve", "m", 0.01)
    log.settled(answered, _paid((300, 50, 100)), 0.004)  # answered, its record never written
    failed = log.sent("teacher", "generate", "m", 0.01)
    log.settled(failed, CallInfo("generate", "m", error="LMRateLimitError"), None)  # no reply: not paid
    log.sent("teacher", "generate", "m", 0.01)  # in flight at the kill
    log.sent("teacher", "improve", "m", 0.03, calls=3)  # a task of 3 calls sent to a Ray worker
    log.close()  # killed: no end line

    again = CallLog.open(path)
    found = again.found_now
    assert found == again.lost
    assert found["calls"] == 1 + 1 + 3 and found["lost_in_flight"] == 4
    assert found["interrupted_calls"] == 4 and found["failed_calls"] == 1
    assert found["cost_usd"] == pytest.approx(0.004)
    assert found["interrupted_cost_usd"] == pytest.approx(0.01 + 3 * 0.03)
    assert (found["prompt_tokens"], found["completion_tokens"], found["cached_tokens"]) == (300, 50, 100)
    assert set(found["by_stage"]) == {"generate", "improve"}
    assert again.earlier["calls"] == 6  # the kept call too
    n = again.sent("teacher", "generate", "m", 0.01)
    assert n == 6  # numbered on from the killed invocation's last request
    again.end()

    third = CallLog.open(path)  # what was lost stays counted; nothing is found twice
    assert third.found_now is None and third.lost["calls"] == 5
    third.close()


def test_an_owner_that_reports_what_was_lost_counts_it_no_more(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    log.sent("judge", "judge", "m", 0.02)
    log.close()
    again = CallLog.open(path)
    assert again.lost["calls"] == 1
    again.end(reported_lost=True)
    third = CallLog.open(path)
    assert third.lost is None and unaccounted(path) is None and third.earlier["calls"] == 1
    third.close()


def test_a_request_line_torn_by_a_kill_is_charged_at_the_worst_case(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    log.sent("teacher", "generate", "m", 0.01)
    log.sent("teacher", "generate", "m", 0.05)
    log.close()
    with open(path, "ab") as fh:
        fh.write(b'{"s":3,"r":"tea')
    again = CallLog.open(path)
    assert again.found_now["calls"] == 3 and again.found_now["interrupted_cost_usd"] == pytest.approx(0.01 + 2 * 0.05)
    again.end()
    assert all(json.loads(x) for x in path.read_text().splitlines())  # written down whole, nothing glued to it
    assert CallLog.open(path).lost["calls"] == 3


def test_a_torn_line_behind_which_no_request_was_sent_is_not_charged(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    log.sent("teacher", "generate", "m", 0.01)
    log.close()
    with open(path, "ab") as fh:
        fh.write(b'{"open": "abc"')  # an invocation's first line, torn by a kill
    again = CallLog.open(path)
    assert again.found_now["calls"] == 1
    again.end()
    assert all(json.loads(x) for x in path.read_text().splitlines())


def test_a_task_settled_with_its_usage_counts_that_usage():
    task = _Request("teacher", "sample", "?", 4, 0.01)
    task.paid = {"p": 1, "u": {"calls": 2, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.001}}
    found = usage_of_requests([task])
    assert found["calls"] == 2 and found["cost_usd"] == pytest.approx(0.001) and found["lost_in_flight"] == 0


def test_a_long_log_is_folded_and_keeps_its_numbering_and_what_it_paid(tmp_path, monkeypatch):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    for _ in range(3):
        n = log.sent("teacher", "generate", "m", 0.01)
        log.settled(n, _paid(), 0.002)
    log.sent("teacher", "generate", "m", 0.01)  # in flight at the kill
    log.close()
    monkeypatch.setattr(call_log, "COMPACT_BYTES", 10)
    again = CallLog.open(path)
    assert _kinds(path) == ["lost", "open"]
    fold = json.loads(path.read_text().splitlines()[0])
    assert fold["to"] == 4 and fold["paid"]["calls"] == 4 and fold["lost"]["calls"] == 4
    assert again.sent("teacher", "generate", "m", 0.01) == 5
    again.end()
    monkeypatch.setattr(call_log, "COMPACT_BYTES", 10**9)
    third = CallLog.open(path)
    assert third.lost["calls"] == 4 and third.earlier["calls"] == 5
    third.close()


def _finished(path: Path) -> list[str]:
    """A log of two invocations, the first killed: its lines as text."""
    log = CallLog.open(path)
    for stage in ("generate", "improve", "generate"):
        n = log.sent("teacher", stage, "m", 0.01)
        log.settled(n, _paid(), 0.002)
    log.close()
    log = CallLog.open(path)
    for stage in ("generate", "improve"):
        n = log.sent("teacher", stage, "m", 0.01)
        log.settled(n, _paid(), 0.002)
        log.kept([n])
    log.end()
    return path.read_text().splitlines()


def _without(lines: list[str], *drop: int) -> list[str]:
    return [line for i, line in enumerate(lines) if i not in drop]


# each an edit that lowers what the log says was paid: (what it does, the lines it leaves, what the message names)
EDITS = [
    ("a paid call's lines deleted", lambda x: _without(x, 3, 4), "request 3 comes after request 1"),
    ("the last call's lines deleted", lambda x: _without(x, 11, 12, 13), "is not the end of the invocation"),
    ("a killed invocation deleted", lambda x: x[7:], "starts after request 3, the one before ended at 0"),
    ("a settlement of a request never sent", lambda x: [*x[:-1], '{"p": 9, "t": [1, 1, 0, 0]}', x[-1]], "never sent"),
    ("a kept line of a request never sent", lambda x: [*x[:-1], '{"k": [1]}', x[-1]], "never sent by this invocation"),
]


@pytest.mark.parametrize("what, edit, named", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_that_lowers_what_was_paid_is_refused_with_the_file_and_the_line(tmp_path, what, edit, named):
    path = tmp_path / "ledger.jsonl"
    path.write_text("\n".join(edit(_finished(path))) + "\n")
    with pytest.raises(LedgerError) as err:
        CallLog.open(path)
    message = str(err.value)
    assert message.startswith(f"{path}:") and named in message and "--new-ledger" in message, message
    with pytest.raises(LedgerError):
        unaccounted(path)  # a reader (refed status) believes it no more


def test_a_folded_line_deleted_or_torn_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "ledger.jsonl"
    _finished(path)
    monkeypatch.setattr(call_log, "COMPACT_BYTES", 10)
    CallLog.open(path).close()
    monkeypatch.setattr(call_log, "COMPACT_BYTES", 10**9)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["lost"]["calls"] == 3
    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(LedgerError, match="the one before ended at 0: lines are missing"):
        CallLog.open(path)
    path.write_text(lines[0][:40])
    with pytest.raises(LedgerError, match="folded line is torn"):
        CallLog.open(path)


def test_an_emptied_log_of_a_dir_whose_records_show_one_is_refused_and_new_ledger_sets_it_aside(tmp_path, caplog):
    path, records = tmp_path / "ledger.jsonl", tmp_path / "samples.jsonl"
    _finished(path)
    records.write_text('{"meta": {"id": "a"}}\n')
    path.write_text("")
    with pytest.raises(LedgerError, match="is empty, though .*samples.jsonl shows"):
        CallLog.open(path, (records,))
    path.write_text('{"p": 1}\n')  # a line out of place: refused, then set aside on request
    with pytest.raises(LedgerError):
        CallLog.open(path, (records,))
    log = CallLog.open(path, (records,), new_ledger=True)
    log.end()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("ledger.jsonl.set-aside-")]
    assert len(aside) == 1 and aside[0].read_text() == '{"p": 1}\n' and "set aside" in caplog.text
    assert Ledger.read(path).lost() is None


def test_a_write_the_disk_refuses_ends_the_log_there_and_the_next_open_believes_it(tmp_path, monkeypatch):
    """A full disk mid-run: the line that fails, and every line after it, are not written, so the log reads as a
    killed invocation's (no request missing in the middle, which would be refused), its calls counted on."""
    import errno
    import os

    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    n = log.sent("teacher", "generate", "m", 0.01)
    log.settled(n, _paid(), 0.002)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(call_log.os, "write", full)
        log.sent("teacher", "generate", "m", 0.01)  # sent all the same: the reservation holds in memory
    third = log.sent("teacher", "generate", "m", 0.01)
    log.settled(third, _paid(), 0.002)
    log.end()
    assert os.path.getsize(path) > 0
    again = CallLog.open(path)
    assert again.found_now["calls"] == 1 and again.sent("teacher", "generate", "m", 0.01) == 2
    again.end()


def test_no_line_comes_after_an_end(tmp_path):
    path = tmp_path / "ledger.jsonl"
    log = CallLog.open(path)
    log.end()
    log.sent("teacher", "generate", "m", 0.01)  # a straggler after the end: not written
    assert _kinds(path) == ["open", "end"]
    CallLog.open(path).close()
