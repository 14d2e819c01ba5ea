"""The live page's figures, read from what a run writes (issue 55): the state it is in, the errors over time, and
`refed view` on a run dir that has only begun."""

from __future__ import annotations

import json

from cli_helpers import lock_holder

from refed_dspy.store.jsonl import write_json_atomic
from refed_dspy.view.index import LiveRun, errors_over_time


def _figures(run, **fields) -> None:
    write_json_atomic(run / "metrics.json", {"role": "teacher", "written_at": "2026-01-01T00:00:00+00:00", **fields})


def test_running_ended_or_stopped(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _figures(run, ended=False, records=3, target=10)
    holder = lock_holder(run)
    try:
        assert LiveRun(run).figures()["state"] == "running"
    finally:
        holder.kill()
        holder.wait()
    assert LiveRun(run).figures()["state"] == "stopped"  # killed: nobody holds it, and it never said it ended
    _figures(run, ended=True, status="complete", records=10, target=10)
    shown = LiveRun(run).figures()
    assert shown["state"] == "ended" and shown["status"] == "complete" and shown["what"] == "samples"


def test_the_stage_written_last_is_shown(tmp_path):
    _figures(tmp_path, ended=True, status="complete", records=10)
    write_json_atomic(
        tmp_path / "judge_metrics.json",
        {"role": "judge", "written_at": "2026-01-01T00:05:00+00:00", "ended": False, "records": 4, "target": 10},
    )
    shown = LiveRun(tmp_path).figures()
    assert shown["role"] == "judge" and shown["what"] == "judgments" and shown["records"] == 4


def test_errors_over_time_are_binned_by_reason():
    events = [{"t": 100.0, "event": "started"}]
    events += [{"t": 100.0 + i, "event": "retry", "reason": "rate_limited"} for i in range(10)]
    events += [{"t": 129.0, "event": "gave_up", "reason": "truncated"}, {"t": 105.0, "event": "window"}]
    found = errors_over_time(events, 130.0, bins=3)
    assert found["width_s"] == 10.0
    assert found["kinds"] == {"rate_limited": [10, 0, 0], "truncated": [0, 0, 1]}


def test_events_are_followed_across_a_rotation(tmp_path):
    live = LiveRun(tmp_path)
    (tmp_path / "events.jsonl").write_text(json.dumps({"t": 1.0, "event": "started"}) + "\n")
    assert [e["event"] for e in live.figures()["events"]] == ["started"]
    (tmp_path / "events.jsonl").rename(tmp_path / "events.1.jsonl")
    (tmp_path / "events.jsonl").write_text(json.dumps({"t": 2.0, "event": "retry", "reason": "api_error"}) + "\n")
    assert [e["event"] for e in live.figures()["events"]] == ["retry"]
