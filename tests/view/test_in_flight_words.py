"""Words that match the state (issue 69, item 7): the calls a live invocation has in flight are "in flight", in
`refed status` (text and JSON), the viewer's header and an experiment's status and page; "killed" and "lost" are said
only once the invocation that sent them ended without settling them (no process holds the dir's lock, or another
process than the one that opened the invocation does).

An invocation is live when the process holding the dir's lock is the one its ledger's `open` line names: these tests
play that process themselves (the ledger opened and the lock taken in this test's process), then die (the lock let
go, no `end` written)."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import lock_holder

from refed_dspy.clients.calls import CallInfo
from refed_dspy.ledger.call_log import CallLog, unaccounted
from refed_dspy.store.lock import DirLock
from refed_dspy.store.ownership import claim
from refed_dspy.view.index import RunIndex
from refed_dspy.view.routes import experiment_cells
from refed_dspy.view.status.experiment import experiment_status, format_experiment_status
from refed_dspy.view.status.run import format_status, run_dir_status

MODEL = "openai/gpt-4o-mini"


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.jsonl").write_text("")  # a run dir (of a synthesis) with no record yet
    return run


def _send(log: CallLog, n: int, settled: int = 0) -> None:
    """`n` requests sent, the first `settled` of them answered (100 + 20 tokens at $0.001)."""
    for i in range(n):
        sent = log.sent("teacher", "generate", MODEL, 0.01)
        if i < settled:
            log.settled(sent, CallInfo("generate", MODEL, prompt_tokens=100, completion_tokens=20), 0.001)


def _paid_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("paid LM calls"))


def test_a_live_run_s_calls_are_in_flight_and_a_killed_one_s_are_lost(tmp_path):
    run = _run_dir(tmp_path)
    view = RunIndex(run)
    lock = DirLock(run, "refed synthesize").acquire()  # this process is the run: it holds the lock
    log = CallLog.open(run / "ledger.jsonl")  # ... and its invocation is open, with pid = this process
    _send(log, 4, settled=1)
    s = run_dir_status(run)
    assert s.state == "running" and (s.calls, s.in_flight, s.lost_in_flight) == (4, 3, 0)
    assert s.cost_up_to_usd == round(0.001 + 3 * 0.01, 6)  # counted as paid all the same, up to their bound
    line = _paid_line(format_status(s))
    assert "(3 of them in flight now, counted as paid)" in line, line
    assert "killed" not in line and "lost" not in line
    said = view.paid()
    assert said.startswith("4 paid LM calls (3 of them in flight), ") and "lost" not in said, said

    # the process dies: its lock goes with it, no end is written
    log.close()
    lock.release()
    s = run_dir_status(run)
    assert s.state == "stopped" and (s.calls, s.in_flight, s.lost_in_flight) == (4, 0, 3)
    line = _paid_line(format_status(s))
    assert "(3 of them in flight when an invocation was killed or in a batch still open, counted as paid)" in line
    assert "in flight now" not in line
    said = view.paid()  # the same index: what it said while the run lived is not kept
    assert said.startswith("4 paid LM calls (3 of them lost in flight), "), said


def test_a_killed_invocation_s_calls_stay_lost_while_the_next_one_runs(tmp_path):
    """Killed with 2 calls in flight, then run again (the lock taken, 1 call in flight): the 2 are lost, the 1 is in
    flight; a process that holds the lock but did not open the last invocation (another command, a reused dir) makes
    that invocation no less killed."""
    run = _run_dir(tmp_path)
    killed = CallLog.open(run / "ledger.jsonl")
    _send(killed, 2)
    killed.close()
    with DirLock(run, "refed synthesize"):
        log = CallLog.open(run / "ledger.jsonl")
        _send(log, 1)
        s = run_dir_status(run)
        assert (s.calls, s.in_flight, s.lost_in_flight) == (3, 1, 2)
        line = _paid_line(format_status(s))
        assert "(1 of them in flight now; 2 in flight when an invocation was killed" in line, line
        assert RunIndex(run).paid().startswith("3 paid LM calls (1 of them in flight, 2 lost in flight), ")
        log.close()
    other = lock_holder(run)  # a live process holds the lock, not the one that opened the invocation
    try:
        s = run_dir_status(run)
        assert s.state == "running" and (s.in_flight, s.lost_in_flight) == (0, 3)
    finally:
        other.kill()
        other.wait()
    found = unaccounted(run / "ledger.jsonl")  # a reader that names no live process: every call in flight is lost
    assert found["lost_in_flight"] == 3 and "in_flight" not in found


def test_an_experiment_part_under_way_has_its_calls_in_flight_and_a_killed_one_lost(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    claim(exp, "experiment")
    lock = DirLock(exp, "refed experiment").acquire()
    log = CallLog.open(exp / "ledger" / "cell%3Aa%3Aoptimize.jsonl")
    _send(log, 2)
    s = experiment_status(exp)
    assert s.state == "running" and (s.calls, s.in_flight, s.lost_in_flight) == (2, 2, 0)
    text = format_experiment_status(s)
    assert "2 of them in flight now, counted as paid" in text and "killed" not in _paid_line(text), text
    assert experiment_cells(exp)["paid"].startswith("2 paid LM calls (2 of them in flight now), ")

    log.close()
    lock.release()
    s = experiment_status(exp)
    assert s.state == "stopped" and (s.calls, s.in_flight, s.lost_in_flight) == (2, 0, 2)
    assert "2 of them in flight when a part was killed, counted as paid" in format_experiment_status(s)
    assert experiment_cells(exp)["paid"].startswith("2 paid LM calls (2 of them in flight when a part was killed), ")
