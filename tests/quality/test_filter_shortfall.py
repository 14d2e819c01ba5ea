"""`refed filter` that keeps nothing, or less than a tenth of its input, says so in one line and exits 1; the files
it wrote are kept."""

from __future__ import annotations

import json

from cli_helpers import lines, run_refed


def judge_all(run, improved: int) -> None:
    """Judgments of every sample of `run`: the judge prefers the improved response of the first `improved` only."""
    samples = lines(run / "samples.jsonl")
    rows = [
        {
            "sample_id": s["meta"]["id"],
            "pairwise": {"winner": "improved" if i < improved else "draft", "verdicts": ["draft", "draft"]},
        }
        for i, s in enumerate(samples)
    ]
    (run / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_filter_that_keeps_nothing_or_under_a_tenth_says_so_and_exits_1(run):
    for improved, code, said in (
        (0, 1, "filter kept 0 of 30 samples (judge_prefers_improved removed 30 of 30)"),
        (2, 1, "filter kept less than a tenth: 2 of 30 samples (judge_prefers_improved removed 28 of 30)"),
        (3, 0, None),
    ):
        judge_all(run, improved)
        out = run.parent / f"kept-{improved}"
        rc, stdout, err = run_refed("filter", str(run), "--out", str(out), "--apply", "judge_prefers_improved")
        assert rc == code, (improved, err)
        assert f"kept {improved} of 30 samples" in stdout
        if said is None:
            assert err == ""
        else:
            assert err.strip().splitlines() == [f"refed: {said}; the result is in {out} (its rejects.jsonl says why)"]
        # what it wrote is kept
        assert len(lines(out / "samples.jsonl")) == improved and len(lines(out / "rejects.jsonl")) == 30 - improved
        assert json.loads((out / "filter_summary.json").read_text())["kept"] == improved
    rc, stdout, _ = run_refed("filter", "--help")
    assert rc == 0 and "1    the chain kept nothing, or less than a tenth of its input" in stdout
