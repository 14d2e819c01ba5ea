"""Filters on small fixtures with exact expected output; meta-eval figures against hand-computed values."""

import json

import pytest

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError, SeedError
from refed_dspy.filters import (
    apply_chain,
    dedup,
    judge_prefers_improved,
    length,
    make_filter,
    min_score,
    random_subset,
    rouge_diversity,
)
from refed_dspy.quality.filter_run import parse_filter
from refed_dspy.quality.meta_eval import meta_metrics, pearson, ranks, read_labels, spearman


def sample(i, instruction, draft="a b c", improved="a b c d e"):
    return {
        "instruction": instruction,
        "response": draft,
        "improved_response": improved,
        "meta": {"id": f"s{i}", "reference_id": f"r{i % 2}", "feature": "subject_areas"},
    }


SAMPLES = [
    sample(1, "explain how tides work"),
    sample(2, "explain how tides work today", improved=None),
    sample(3, "write a poem about cats", draft="one two", improved="one two three four five six"),
    sample(4, "write a poem about dogs"),
    sample(5, "plan a budget", draft="x " * 12, improved="y " * 20),
]
JUDGMENTS = {
    "s1": {"pairwise": {"winner": "improved", "verdicts": ["A", "B"]}, "pointwise": {"overall": 8.2}},
    "s2": {"pairwise": {"winner": "draft", "verdicts": ["B", "A"]}, "pointwise": {"overall": 4.0}},
    "s3": {"pairwise": {"winner": "tie", "verdicts": ["A", "A"]}, "pointwise": {"overall": 7.0}},
    "s5": {"pairwise": {"winner": "improved", "verdicts": ["A", "B"]}, "pointwise": {"overall": 6.99}},
}


def ids(result):
    return [s["meta"]["id"] for s in result.kept]


def test_judge_prefers_improved():
    r = judge_prefers_improved(SAMPLES, JUDGMENTS)
    assert ids(r) == ["s1", "s5"]
    reasons = {s["meta"]["id"]: why for s, why in r.removed}
    assert reasons["s2"].startswith("judge verdict: draft") and reasons["s3"].startswith("judge verdict: tie")
    assert reasons["s4"].startswith("no pairwise judgment")


def test_rouge_diversity_greedy_from_a_random_start():
    # seed 0 starts at index 3 (s4): s4, s5, s1 kept; s2 (0.89 vs s1) and s3 (0.80 vs s4) removed
    r = rouge_diversity(SAMPLES, threshold=0.7, seed=0)
    assert ids(r) == ["s1", "s4", "s5"]
    assert sorted(s["meta"]["id"] for s, _ in r.removed) == ["s2", "s3"]
    assert len(ids(rouge_diversity(SAMPLES, threshold=0.9, seed=0))) == 5  # 0.89 and 0.80 are below 0.9
    assert ids(rouge_diversity([], 0.7)) == []


def test_min_score_length_dedup_and_subset():
    assert ids(min_score(SAMPLES, JUDGMENTS, 7.0)) == ["s1", "s3"]  # s4 has no judgment, s5 6.99 < 7
    # one reason for every sample under the threshold, so the report counts them on one line (the newcomer trial:
    # "1 mean judge score 4.8 < 5.0, 1 mean judge score 3.6 < 5.0, ..."); each one's score is in its judgment
    low = [reason for s, reason in min_score(SAMPLES, JUDGMENTS, 9.0).removed if s["meta"]["id"] != "s4"]
    assert len(low) >= 2 and set(low) == {"mean judge score below 9"}, low
    assert ids(length(SAMPLES, "response", min_words=6)) == ["s3", "s5"]  # final = improved, else draft
    assert ids(length(SAMPLES, "draft", max_words=3)) == ["s1", "s2", "s3", "s4"]
    assert ids(length(SAMPLES, "instruction", min_words=5, max_words=5)) == ["s2", "s3", "s4"]
    twins = SAMPLES + [sample(6, "Explain how TIDES work!")]
    assert ids(dedup(twins)) == ["s1", "s2", "s3", "s4", "s5"]  # exact (normalized) duplicate only
    assert ids(dedup(twins, threshold=0.7)) == ["s1", "s3", "s5"]
    assert ids(random_subset(SAMPLES, 2, seed=0)) == ["s4", "s5"]
    assert ids(random_subset(SAMPLES, 10)) == [s["meta"]["id"] for s in SAMPLES]


def test_chain_records_each_removal_with_filter_and_reason():
    specs = [make_filter("judge_prefers_improved"), make_filter("length", field="response", min_words=10)]
    kept, rejects, steps = apply_chain(specs, SAMPLES, JUDGMENTS)
    assert [s["meta"]["id"] for s in kept] == ["s5"]
    assert [(r["item_id"], r["filter"]) for r in rejects] == [
        ("s2", "judge_prefers_improved"),
        ("s3", "judge_prefers_improved"),
        ("s4", "judge_prefers_improved"),
        ("s1", "length"),
    ]
    assert [(s["in"], s["kept"], s["removed"]) for s in steps] == [(5, 2, 3), (2, 1, 1)]
    assert SAMPLES[0]["instruction"] == "explain how tides work"  # inputs untouched


def test_filter_specs_from_config_and_command_line():
    cfg = load_config(
        None, ['filters=[{name="rouge_diversity", threshold=0.7}, {name="random_subset", k=100, seed=3}]']
    )
    assert [f.name for f in cfg.filters] == ["rouge_diversity", "random_subset"]
    assert parse_filter("length:field=instruction,min_words=3").min_words == 3
    with pytest.raises(ConfigError, match="needs 'k'"):
        parse_filter("random_subset")
    with pytest.raises(ConfigError, match="input should be"):
        parse_filter("sharpen:k=1")


def test_meta_eval_figures_match_hand_computation():
    results = [
        {"kind": "pairwise", "preference": "a", "judge": "a", "flipped": False},
        {"kind": "pairwise", "preference": "b", "judge": "a", "flipped": False},
        {"kind": "pairwise", "preference": "tie", "judge": "tie", "flipped": True},
        {"kind": "pairwise", "preference": "a", "judge": "tie", "flipped": False},
        {"kind": "likert", "score": 1, "judge_score": 2},
        {"kind": "likert", "score": 2, "judge_score": 4},
        {"kind": "likert", "score": 3, "judge_score": 6},
        {"kind": "likert", "score": 4, "judge_score": 9},
    ]
    m = meta_metrics(results)
    # accuracy 2/4; judge ties 2/4; one flip in 4; r = 11.5 / sqrt(5 * 26.75); rho = 1 (same order)
    assert m == {
        "pairwise_items": 4,
        "pairwise_accuracy": 0.5,
        "tie_rate": 0.5,
        "position_bias_rate": 0.25,
        "likert_items": 4,
        "pearson": 0.9944,
        "spearman": 1.0,
    }
    assert ranks([3, 1, 1, 2]) == [4.0, 1.5, 1.5, 3.0]
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1], [2, 3]) is None and pearson([1], [1]) is None


def test_read_labels_shipped_file_and_errors(tmp_path):
    from importlib.resources import files

    items = read_labels(files("refed_dspy") / "data" / "judge_labels.jsonl")
    kinds = [i["kind"] for i in items]
    assert kinds.count("pairwise") >= 6 and kinds.count("likert") >= 5
    bad = tmp_path / "bad.jsonl"
    for text, msg in (
        ('{"instruction": "q", "response_a": "x", "response_b": "y", "preference": "c"}', "preference must be"),
        ('{"instruction": "q", "response": "x"}', "cannot tell the kind"),
        ('{"instruction": "q", "score": 3}', "lacks response"),
        ("not json", "not JSON"),
        ("", "no label items"),
    ):
        bad.write_text(text + "\n")
        with pytest.raises(SeedError, match=msg):
            read_labels(bad)
    with pytest.raises(SeedError, match="not found"):
        read_labels(tmp_path / "missing.jsonl")
    assert json.loads((files("refed_dspy") / "data" / "judge_labels.jsonl").read_text().splitlines()[0])["id"] == "p1"
