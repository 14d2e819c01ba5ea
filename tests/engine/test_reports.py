"""What the place a stage's parts run says of itself for `refed status`: the note of Ray's workers in the run dir,
written by a run on Ray and removed by a run here or in batches (an earlier invocation's, not this one's)."""

from __future__ import annotations

import json
import types

from refed_dspy.config import load_config
from refed_dspy.engine.watch import Report
from refed_dspy.launch.batch.answers import BatchReport
from refed_dspy.launch.ray.pool import WorkersReport


def _earlier_note(tmp_path):
    note = tmp_path / "workers.json"
    note.write_text('{"workers_alive": 2}')
    return note


def test_a_run_here_removes_an_earlier_invocation_s_note_of_its_ray_workers(tmp_path):
    note = _earlier_note(tmp_path)
    Report(note).note()
    assert not note.exists()
    Report(note).note(final=True)  # nothing left to remove: no error


def test_a_run_in_batches_removes_it_too_and_reports_its_batches(tmp_path):
    note = _earlier_note(tmp_path)
    store = types.SimpleNamespace(batches={"b1": "entry"})
    report = BatchReport(types.SimpleNamespace(store=store), load_config(None, []).teacher, note)
    report.note()
    assert not note.exists()
    assert report.mode == "batch" and report.batches() == ["entry"]


class _Pool:
    def __init__(self, alive: int):
        self.alive, self.workers = alive, ["w1", "w2"]

    def cluster_figures(self) -> dict:
        return {"workers_alive": self.alive}


def test_a_run_on_ray_writes_its_note_first_then_when_a_worker_is_lost_and_at_the_end(tmp_path):
    note = tmp_path / "workers.json"
    pool = _Pool(alive=2)
    report = WorkersReport(pool, note)
    report.note()
    assert json.loads(note.read_text()) == {"workers_alive": 2}
    note.write_text("{}")
    report.note()  # nothing changed: not written again
    assert note.read_text() == "{}"
    pool.alive = 1
    report.note()
    assert json.loads(note.read_text()) == {"workers_alive": 1}
    note.write_text("{}")
    report.note(final=True)
    assert json.loads(note.read_text()) == {"workers_alive": 1}
    assert report.workers == ["w1", "w2"] and report.progress() == "; Ray workers alive 1 of 2"
