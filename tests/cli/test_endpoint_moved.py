"""An endpoint change alone (the same model name at another teacher.api_base or judge.api_base) resumes a run dir,
saying in one line that the endpoint moved and that the model behind the new one is taken to be the same; any other
change is refused as before (issue 69, item 9)."""

from __future__ import annotations

import pytest
from cli_helpers import lines, run_refed, sets
from conftest import run_overrides

from refed_dspy.config import Config, fingerprint, fingerprint_diff
from refed_dspy.config.schema import endpoint_diff

EXTRA = {"seeds.limit": 2, "synthesis.instructions_per_feature": 1}


def test_the_fingerprint_diff_leaves_the_endpoint_to_endpoint_diff():
    a = fingerprint(Config.model_validate({"teacher": {"api_base": "http://127.0.0.1:1/v1"}}))
    b = fingerprint(Config.model_validate({"teacher": {"api_base": "http://127.0.0.1:2/v1"}}))
    assert fingerprint_diff(a, b) == []
    assert endpoint_diff(a, b) == ["teacher.api_base: 'http://127.0.0.1:1/v1' -> 'http://127.0.0.1:2/v1'"]
    assert endpoint_diff(a, a) == []


def test_a_moved_teacher_endpoint_resumes_the_run_and_says_so(server_factory, tmp_path):
    run = tmp_path / "run"
    first, second = server_factory(), server_factory()
    code, _, err = run_refed("synthesize", *sets(run_overrides(first, run, 3, **EXTRA)))
    assert code == 0, err[-2000:]
    before = [s["meta"]["id"] for s in lines(run / "samples.jsonl")]
    assert len(before) == 3
    code, _, err = run_refed("synthesize", *sets(run_overrides(second, run, 5, **EXTRA)))
    assert code == 0, err[-2000:]
    said = [x for x in err.splitlines() if "endpoint moved" in x]
    assert said == [
        f"{run}: the endpoint moved (teacher.api_base: '{first.api_base}' -> '{second.api_base}'); resuming, with "
        "the model behind the new endpoint taken to be the same openai/gpt-4o-mini"
    ], err
    assert "different config" not in err
    after = [s["meta"]["id"] for s in lines(run / "samples.jsonl")]
    assert len(after) == 5 and after[:3] == before  # resumed: the first three kept, two more made
    # the run dir now holds the new endpoint: the same command again says nothing of a move
    code, _, err = run_refed("synthesize", *sets(run_overrides(second, run, 5, **EXTRA)))
    assert code == 0 and "endpoint moved" not in err, err[-2000:]


def test_a_moved_endpoint_with_another_change_is_refused_naming_both(server_factory, tmp_path):
    run = tmp_path / "run"
    first, second = server_factory(), server_factory()
    assert run_refed("synthesize", *sets(run_overrides(first, run, 2, **EXTRA)))[0] == 0
    over = run_overrides(second, run, 3, **EXTRA) + ["teacher.temperature=0.3"]
    code, _, err = run_refed("synthesize", *sets(over))
    assert code == 2
    assert "made by a different config" in err and "teacher.temperature" in err, err
    assert f"teacher.api_base: '{first.api_base}' -> '{second.api_base}'" in err and "endpoint moved" not in err


def test_a_moved_judge_endpoint_resumes_the_judging_and_says_so(server_factory, tmp_path):
    run = tmp_path / "run"
    teacher, first, second = server_factory(), server_factory(), server_factory()
    assert run_refed("synthesize", *sets(run_overrides(teacher, run, 2, **EXTRA)))[0] == 0
    judge = ["judge.api_key_env=''", "judging.pairwise=false"]
    code, _, err = run_refed("judge", "run", str(run), *sets([f"judge.api_base='{first.api_base}'", *judge]))
    assert code == 0, err[-2000:]
    code, _, err = run_refed("judge", "run", str(run), *sets([f"judge.api_base='{second.api_base}'", *judge]))
    assert code == 0, err[-2000:]
    said = [x for x in err.splitlines() if "endpoint moved" in x]
    assert said == [
        f"{run}: the endpoint moved (judge.api_base: '{first.api_base}' -> '{second.api_base}'); resuming, with "
        "the model behind the new endpoint taken to be the same openai/gpt-4o-mini"
    ], err
    assert len(lines(run / "judgments.jsonl")) == 2


def test_an_endpoint_move_is_refused_while_batches_sent_to_the_old_one_are_open(tmp_path):
    """A batch still open at the old endpoint: its requests are paid and known only there. The move is refused in one
    line saying how to collect them; once the batch is collected, the same move goes on."""
    from refed_dspy.errors import RunDirError
    from refed_dspy.launch.batch.store import BatchStore, moves_with_batches_closed

    run = tmp_path / "run"
    moves = ["teacher.api_base: 'http://a/v1' -> 'http://b/v1'"]
    assert moves_with_batches_closed(run, "batches", moves) == moves  # no batch record: nothing open
    store = BatchStore(run, "batches")
    entry = store.plan("openai", "generate", [{"custom_id": "c1", "body": {}}])
    with pytest.raises(RunDirError, match="1 batches sent to the old one are still open"):
        moves_with_batches_closed(run, "batches", moves)
    assert moves_with_batches_closed(run, "batches", []) == []  # nothing moved: nothing to refuse
    store._event({"e": "collected", "batch": entry.local_id, "status": "completed"})
    assert moves_with_batches_closed(run, "batches", moves) == moves
