"""Provenance per sample (issue 25, item 5): each record names its teacher's model and endpoint, and a run resumed
onto another teacher says, in its summary, report, viewer and dataset card, which teacher made how many samples."""

from __future__ import annotations

import json

from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.export.run import export_run
from refed_dspy.quality.report import build_report, format_text
from refed_dspy.store.records import mixed_line
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.summary import format_summary
from refed_dspy.view.index import View


def test_a_run_resumed_onto_another_teacher_says_which_made_what(server_factory, tmp_path):
    first, second = server_factory(), server_factory()
    run = tmp_path / "run"
    one = synthesize(load_config(None, run_overrides(first, run, 4)))
    assert one["teachers"] == [{"model": "openai/gpt-4o-mini", "endpoint": first.api_base, "samples": 4}]
    assert "teachers " not in format_summary(one.to_json())  # one teacher: nothing to say
    # the same run, resumed onto another endpoint (the fingerprint differs: told to go on anyway)
    two = synthesize(load_config(None, run_overrides(second, run, 7)), on_mismatch="resume")
    assert len(read_log(second.cfg.log_path)) > 0
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    by_endpoint = {e: sum(s["meta"]["endpoint"] == e for s in samples) for e in (first.api_base, second.api_base)}
    assert by_endpoint == {first.api_base: 4, second.api_base: 3}
    rows = two["teachers"]
    assert {(r["endpoint"], r["samples"]) for r in rows} == {(first.api_base, 4), (second.api_base, 3)}
    line = mixed_line(rows)
    assert line.startswith("samples from 2 teachers") and f"at {first.api_base} (4)" in line
    assert line in format_summary(two.to_json())
    report = build_report(run)
    assert line in format_text(report.to_json()) and "Mixed teachers" in (run / "report.html").read_text()
    assert any(line in note for note in View(run).status()["notes"])
    out = tmp_path / "export"
    export_run(run, "messages", out, val_fraction=0)
    card = (out / "README.md").read_text()
    assert f"at {first.api_base} (4 samples)" in card and f"at {second.api_base} (3 samples)" in card
