"""What `--fresh` replaces is set aside by command (run, judge) and put back only for the command that set it aside;
the disk's reserve is never set aside (a new one is taken); an earlier set-aside a kill left is what a restore brings
back. The commands' behaviour around it: tests/engine/test_endpoint_check.py."""

from __future__ import annotations

from refed_dspy.store.jsonl import RESERVE_NAME
from refed_dspy.store.rundir import REPLACED, RunDir


def test_each_command_restores_what_it_set_aside_and_nothing_of_the_other_s(tmp_path):
    rd = RunDir(tmp_path)
    rd.samples.write_text("old samples\n")
    rd.judgments.write_text("old judgments\n")
    (tmp_path / RESERVE_NAME).write_bytes(b"\0" * 16)
    rd.put_aside([rd.judgments], "judge")  # a judge --fresh killed: its set-aside left behind
    rd.put_aside([rd.samples, tmp_path / RESERVE_NAME], "run")
    assert not (tmp_path / RESERVE_NAME).exists() and not (tmp_path / REPLACED / "run" / RESERVE_NAME).exists()
    rd.samples.write_text("new samples\n")
    rd.put_aside([rd.samples], "run")  # a second --fresh after a kill: what the first set aside is kept
    assert not rd.samples.exists() and rd.replaced("run")
    rd.samples.write_text("newer samples\n")
    rd.wipe()
    rd.restore("run")
    assert rd.samples.read_text() == "old samples\n" and not rd.replaced("run")
    assert rd.replaced("judge") and not rd.judgments.exists()  # the judge's stays set aside, for the judge alone
    rd.drop_replaced("judge")
    assert not (tmp_path / REPLACED).exists()


def test_a_ledger_with_no_request_written_sent_nothing(tmp_path):
    """What decides whether a --fresh that stopped made nothing: its write-ahead log holds no request."""
    from refed_dspy.ledger.call_log import CallLog, sent_any

    path = tmp_path / "ledger.jsonl"
    assert not sent_any(path)
    log = CallLog.open(path)
    assert not sent_any(path)  # opened: an invocation's first line, no request
    log.sent("teacher", "feedback", "openai/x", 0.01)
    assert sent_any(path)
    log.close()
    with path.open("ab") as fh:
        fh.write(b'{"s": 2, "r": "tea')  # torn by a kill: it may stand for a request
    assert sent_any(path)
