"""The report's cost section when there is no cost to draw: a run priced at $0 (a local model) says so in words."""

from conftest import run_overrides

from refed_dspy.config import load_config
from refed_dspy.quality.figures import cost_note
from refed_dspy.quality.report import build_report
from refed_dspy.synthesis.api import synthesize

FREE = {f"teacher.{p}_usd_per_mtok": 0 for p in ("input", "cached_input", "output")}


def test_a_report_of_a_run_that_cost_nothing_says_so_instead_of_an_empty_chart(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    summary = synthesize(
        load_config(
            None, run_overrides(srv, run, 4, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 1}, **FREE)
        )
    )
    assert summary["cost_usd"] == 0 and summary["usage"]["calls"] > 0
    report = build_report(run)
    calls = sum(row["calls"] for row in report["cost_by_stage"].values())
    said = f"Nothing was paid: all {calls} calls were priced at $0 (a local model, or prices set to 0)."
    assert "cost" not in report.images  # no chart of zero-length bars
    assert said in (run / "report.html").read_text() and said in report.text


def test_cost_note_says_free_unknown_or_nothing():
    free = {"generate": {"calls": 3, "cost_usd": 0.0}, "improve": {"calls": 2, "cost_usd": 0.0}}
    assert cost_note(free) == "Nothing was paid: all 5 calls were priced at $0 (a local model, or prices set to 0)."
    assert cost_note({"generate": {"calls": 3, "cost_usd": None}}).startswith("Cost unknown")
    assert cost_note({"generate": {"calls": 3, "cost_usd": 0.01}, "improve": {"calls": 1, "cost_usd": 0.0}}) is None
    assert cost_note({}) is None


def test_a_free_stage_beside_an_unpriced_one_is_not_called_free():
    from refed_dspy.quality.figures import cost_note

    note = cost_note({"generate": {"calls": 4, "cost_usd": 0.0}, "judge": {"calls": 4, "cost_usd": None}})
    assert note is not None and "unknown for some stages" in note and "Nothing was paid" not in note
