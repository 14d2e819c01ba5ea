"""The write-ahead ledgers' lines are checked before they are believed (refed_dspy.ledger.lines): a line refed
does not write stops the command with one line naming the file and the line, a file that cannot be read too, and a
ledger gone from a run dir whose records show it had one is refused unless a new one is asked for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from refed_dspy.clients.calls import CallInfo
from refed_dspy.errors import LedgerError
from refed_dspy.launch.batch.store import BatchStore
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.ledger.call_log import CallLog, unaccounted
from refed_dspy.ledger.spend import Spend


def _written(path: Path) -> None:
    """A log as refed writes it: a killed invocation with every kind of line."""
    log = CallLog.open(path)
    a = log.sent("teacher", "generate", "m", 0.01)
    log.settled(a, CallInfo("generate", "m", prompt_tokens=100, completion_tokens=20, reasoning_tokens=5), 0.002)
    b = log.sent("teacher", "improve", "m", 0.02)
    log.settled(b, CallInfo("improve", "m", cache_hit=True), None)
    c = log.sent("teacher", "improve", "m", 0.02)
    log.settled(c, CallInfo("improve", "m", interrupted=True), None)
    t = log.sent("teacher", "unit", "?", 0.03, calls=3)
    log.settled_task(t, {"calls": 2, "cost_usd": 0.001, "by_stage": {"unit": {"calls": 2, "cost_usd": 0.001}}})
    log.kept([a])
    log.sent("teacher", "generate", "m", 0.01)  # in flight at the kill
    log.close()
    CallLog.open(path).close()  # the killed invocation found, and a new one opened


def test_every_line_refed_writes_is_believed(tmp_path):
    path = tmp_path / "ledger.jsonl"
    _written(path)
    again = CallLog.open(path)
    assert again.lost["calls"] == 1 + 2 + 1 and again.lost["lost_in_flight"] == 1  # cut off, the task, in flight
    again.close()


# each a line appended to a good log, as a hand, a tool or damage might: (line, what the message names)
BAD = [
    ('{"lost": {"calls": 3, "cost_usd": -0.86}}', "lost.cost_usd is -0.86"),
    ('{"p": 1, "t": [10, 5, 0, 0], "c": -0.5}', "c (its cost) is -0.5"),
    ('{"s": 9, "r": "teacher", "g": "generate", "m": "m", "n": 1e308, "b": 0.01}', "n (its calls) is 1e+308"),
    ('{"lost": {"calls": 1e308}}', "lost.calls is 1e+308"),
    ('{"s": 9, "r": "teacher", "g": "generate", "m": "m", "n": 1, "b": NaN}', "b (the most it can cost) is nan"),
    ('{"lost": {"calls": 2, "interrupted_cost_usd": Infinity}}', "lost.interrupted_cost_usd is inf"),
    ('{"lost": {"calls": 99999999999999}}', "lost.calls is 99999999999999, outside"),
    ('{"p": 1, "t": [10, -5, 0, 0], "c": 0.1}', "t[1] (tokens) is -5"),
    ('{"p": 1, "u": {"calls": 2, "by_stage": {"x": {"prompt_tokens": -1}}}}', "u (its task's usage).by_stage.x"),
    ('{"s": 9, "r": "teacher", "refund": 5}', "'refund', which refed does not write"),
    ('{"paid": 3}', "none of open, s, p, k, end, lost"),
    ('{"k": "everything"}', "not a list of requests"),
    ("[1, 2]", "not a JSON object"),
]


@pytest.mark.parametrize("line, named", BAD)
def test_a_line_refed_does_not_write_stops_with_the_file_and_the_line(tmp_path, line, named):
    path = tmp_path / "ledger.jsonl"
    _written(path)
    lines = path.read_text().splitlines()
    with open(path, "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(LedgerError) as err:
        CallLog.open(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{len(lines) + 1}: ") and named in message and "\n" not in message
    with pytest.raises(LedgerError):  # a reader (refed status) believes it no more
        unaccounted(path)


def test_a_torn_last_line_is_a_request_never_sent_and_is_cut_off(tmp_path):
    path = tmp_path / "ledger.jsonl"
    _written(path)
    with open(path, "ab") as fh:
        fh.write(b'{"open": "abc"')  # an invocation's first line, torn by a kill
    log = CallLog.open(path)
    log.end()
    assert all(json.loads(x) for x in path.read_text().splitlines())  # nothing glued to the torn bytes


def test_a_ledger_made_a_directory_is_one_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.mkdir()
    with pytest.raises(LedgerError, match=r"ledger.jsonl cannot be read as a write-ahead ledger \(Is a directory\)"):
        CallLog.open(path)


def test_a_ledger_gone_from_a_dir_whose_records_show_it_is_refused_unless_a_new_one_is_asked_for(tmp_path, caplog):
    path, records = tmp_path / "ledger.jsonl", tmp_path / "samples.jsonl"
    CallLog.open(path, (records,)).end()  # a first run: no records yet, no ledger yet
    records.write_text('{"meta": {"id": "a"}}\n')
    path.unlink()
    with pytest.raises(LedgerError) as err:
        CallLog.open(path, (records,))
    assert f"{path} is gone, though {records} shows" in str(err.value) and "run.new_ledger = true" in str(err.value)
    assert "--new-ledger" in err.value.cli_message() and not path.exists()
    log = CallLog.open(path, (records,), new_ledger=True)
    log.end()
    assert path.exists() and "a new ledger is started (--new-ledger)" in caplog.text


def test_a_batch_journal_line_refed_does_not_write_stops_the_run(tmp_path):
    store = BatchStore(tmp_path)
    store.plan("openai", "generate", [{"custom_id": "r1-0", "body": {}}], [0.01])
    store.created("b00001", "batch_1", "validating")
    store.close()
    assert BatchStore(tmp_path).batches["b00001"].bounds == [0.01]
    journal = tmp_path / "batches" / "journal.jsonl"
    good = journal.read_text()
    for line, named in [
        ('{"e": "plan", "batch": "b00002", "api": "openai", "custom_ids": ["r2-0"], "b": [-1]}', "b[0]"),
        ('{"e": "plan", "batch": "b00002", "api": "openai", "custom_ids": ["r2-0"], "b": [0.1, 0.2]}', "b is not"),
        ('{"e": "state", "batch": "b00001", "status": "in_progress", "counts": {"completed": 1e308}}', "counts"),
        ('{"e": "forget", "batch": "b00001"}', "e is 'forget'"),
    ]:
        journal.write_text(good + line + "\n")
        with pytest.raises(LedgerError, match=rf"journal.jsonl:3: .*{re.escape(named)}"):
            BatchStore(tmp_path)
    results = tmp_path / "batches" / "results.jsonl"
    journal.write_text(good)
    results.write_text('{"custom_id": "r1-0", "batch": "b00001", "status": "ok"}\n')
    with pytest.raises(LedgerError, match=r"results.jsonl:1: status is 'ok'"):
        BatchStore(tmp_path)


def test_an_experiment_s_spending_is_checked_before_it_is_believed(tmp_path):
    path = tmp_path / "spent.json"
    path.write_text(json.dumps({"parts": {"cell:a": {"calls": 10, "cost_usd": 0.01}}}))
    assert Spend(path, CallBudget()).part("cell:a")["calls"] == 10
    path.write_text(json.dumps({"parts": {"cell:a": {"calls": 10, "cost_usd": -0.5}}}))
    with pytest.raises(LedgerError, match=r"spent.json: parts.cell:a.cost_usd is -0.5"):
        Spend(path, CallBudget())
    path.unlink()
    path.mkdir()
    with pytest.raises(LedgerError, match="cannot be read"):
        Spend(path, CallBudget())
