"""`refed compare`'s table: the paper's columns by default (per method: the judge's figures, samples, response
length, feedback calls, cost), every figure with --all-columns, and each figure rounded to what it can tell (no
`0.000000`, no `1.6250`) (issue 69, item 9)."""

from __future__ import annotations

import json
import re

from cli_helpers import run_refed, sets
from conftest import run_overrides

from refed_dspy.experiments.compare import columns_for, markdown_table

JUDGED = {
    "method": "refed",
    "status": "complete",
    "samples": 40,
    "calls": 104,
    "feedback_calls": 4,
    "other_calls": 100,
    "calls_per_sample": 2.6,
    "prompt_tokens": 81234,
    "completion_tokens": 20456,
    "cached_tokens": 0,
    "cost_usd": 0.0,
    "cost_per_sample_usd": 0.0,
    "rejects": {},
    "wall_s": 12.3456,
    "run_dir": "r",
    "mean_score": 1.625,
    "improvement_win_rate": 0.625,
    "judge_cost_usd": 0.000123,
    "mean_response_words": 212.4,
    "distinct_2": 0.812345,
    "mean_pairwise_rouge_l": 0.234567,
}
PLAIN = {
    **JUDGED,
    "method": "no_feedback",
    "mean_score": None,
    "improvement_win_rate": None,
    "cost_usd": 1.23456,
    "cost_per_sample_usd": 0.030864,
}


def test_the_default_table_is_the_paper_s_columns_rounded():
    table = markdown_table([JUDGED, PLAIN]).splitlines()
    assert table[0] == (
        "| method | samples | judge score | improved wins | response words | feedback calls | cost | cost/sample |"
    )
    assert table[2] == "| refed | 40 | 1.62 | 62.5% | 212 | 4 | $0 | $0 |"
    assert table[3] == "| no_feedback | 40 | n/a | n/a | 212 | 4 | $1.2346 | $0.0309 |"
    assert 6 <= len(columns_for([JUDGED])) <= 9


def test_judge_columns_come_only_where_a_run_was_judged():
    titles = [title for _, title in columns_for([PLAIN])]
    assert "judge score" not in titles and "improved wins" not in titles
    assert titles == ["method", "samples", "response words", "feedback calls", "cost", "cost/sample"]


def test_every_figure_with_all_columns_and_none_unrounded():
    every = columns_for([JUDGED], all_columns=True)
    assert len(every) > len(columns_for([JUDGED])) and {"wall_s", "distinct_2", "prompt_tokens"} <= dict(every).keys()
    text = markdown_table([JUDGED, PLAIN], every)
    row = text.splitlines()[2]
    assert "| 2.6 |" in row and "| 81,234 |" in row and "| 12.3 |" in row and "| 0.812 |" in row, row
    # no figure carries more digits than it can tell: no run of zeros, no 4-decimal score
    assert not re.search(r"\d\.\d*0000", text) and "1.6250" not in text, text


def test_cli_compare_prints_the_paper_s_columns_and_every_one_with_all_columns(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "cmp"
    over = run_overrides(srv, run, 3, **{"synthesis.instructions_per_feature": 1, "seeds.limit": 2})
    base = ["compare", "--methods", "refed,no_feedback", *sets(over)]
    code, out, err = run_refed(*base)
    assert code == 0, err[-2000:]
    header = out.splitlines()[0]
    assert header == "| method | samples | response words | feedback calls | cost | cost/sample |", out
    assert "0.000000" not in out and "wall s" not in out
    rows = json.loads((run / "compare.json").read_text())["rows"]  # every figure, unrounded
    assert {"wall_s", "prompt_tokens", "distinct_2", "mean_response_words"} <= rows[0].keys()
    assert all(r["mean_response_words"] > 0 for r in rows)
    md = (run / "compare.md").read_text()
    assert header in md and "## Every figure" in md and "| wall s |" in md.split("## Every figure")[1]
    code, out, err = run_refed(*base, "--all-columns")
    assert code == 0, err[-2000:]
    assert "| LM calls |" in out.splitlines()[0] and "| wall s |" in out.splitlines()[0]
    assert "0.000000" not in out
