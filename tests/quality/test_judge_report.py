"""The judge (DummyLM and loopback), `refed judge`/`filter`/`report`/`compare --judge`, and the HTML report."""

import base64
import io
import json
import re
from collections import Counter

import dspy
import pytest
from cli_helpers import refed, sets
from conftest import run_overrides
from dspy.utils import DummyLM
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import RunDirError
from refed_dspy.programs import PairwiseJudge, PointwiseJudge, combine_verdicts
from refed_dspy.quality.figures import judgment_stats, verdict_text
from refed_dspy.quality.judge import judge_run
from refed_dspy.synthesis.api import synthesize

CRITERIA = ["helpfulness", "accuracy"]


def test_pointwise_judge_parses_and_checks_scores():
    with dspy.context(lm=DummyLM([{"rationale": "solid", "helpfulness": 8, "accuracy": 5}])):
        pred = PointwiseJudge(CRITERIA)(instruction="q", response="r")
    assert pred.scores == {"helpfulness": 8, "accuracy": 5} and pred.overall == 6.5 and pred.rationale == "solid"
    with (
        dspy.context(lm=DummyLM([{"rationale": "x", "helpfulness": 11, "accuracy": 5}])),
        pytest.raises(ValueError, match="outside 1-10"),
    ):
        PointwiseJudge(CRITERIA)(instruction="q", response="r")


def test_rubric_and_signature_follow_the_criteria():
    judge = PointwiseJudge(["helpfulness", "humour"])
    assert list(judge.score.signature.output_fields) == ["rationale", "helpfulness", "humour"]
    assert "helpfulness: how well" in judge.rubric and "humour: humour" in judge.rubric


@pytest.mark.parametrize(
    "ab,ba,winner,flipped",
    [
        ("A", "B", "first", False),  # first wins in both orders
        ("B", "A", "second", False),  # second wins in both orders
        ("A", "A", "tie", True),  # always position A: position bias, verdicts disagree -> tie
        ("B", "B", "tie", True),
        ("A", "tie", "tie", False),  # one decisive, one tie -> tie, not a flip
        ("tie", "tie", "tie", False),
    ],
)
def test_both_orders_cancel_position_bias(ab, ba, winner, flipped):
    assert combine_verdicts(ab, ba) == (winner, flipped)


def test_the_judges_figures_are_said_with_what_they_count():
    rows = [
        {"pointwise": {"overall": 7.0}, "pairwise": {"winner": "improved", "flipped": False}},
        {"pointwise": {"overall": 6.5}, "pairwise": {"winner": "tie", "flipped": True}},
        {"pointwise": {"overall": 6.0}, "pairwise": {"winner": "tie", "flipped": False}},
        {"pointwise": {"overall": 5.0}, "pairwise": {"winner": "draft", "flipped": False}},
    ]
    assert verdict_text(judgment_stats(rows)) == (
        "mean score 6.12 of 10; improved against draft, of 4 pairs: won 25%, lost 25%, no winner 50% (the two orders "
        "disagreed on 25%: position bias, the verdict following the order shown; a tie in both on 25%)"
    )
    assert verdict_text(judgment_stats([{"pointwise": {"overall": 4.0}}])) == "mean score 4.00 of 10; no pair judged"
    assert verdict_text(judgment_stats([])) == "not judged"


def test_pairwise_judge_asks_in_both_orders():
    lm = DummyLM([{"rationale": "a better", "verdict": "A"}, {"rationale": "b better", "verdict": "B"}])
    with dspy.context(lm=lm):
        pred = PairwiseJudge()(instruction="q", first="IMPROVED", second="DRAFT")
    assert pred.winner == "first" and pred.verdicts == ["A", "B"] and not pred.flipped
    users = [h["messages"][-1]["content"] for h in lm.history]
    assert len(users) == 2  # the second call shows the two responses swapped
    assert users[0].index("IMPROVED") < users[0].index("DRAFT") and users[1].index("DRAFT") < users[1].index("IMPROVED")


def test_the_same_text_twice_is_a_tie_without_a_call():
    lm = DummyLM([])  # any call fails: it has no answer to give
    with dspy.context(lm=lm):
        pred = PairwiseJudge()(instruction="q", first="Keep it.\n", second='"Keep   it."')
    assert (pred.winner, pred.verdicts, pred.flipped) == ("tie", ["tie", "tie"], False) and not lm.history


def _synth_and_judge_config(teacher, judge, run, size, **extra):
    return load_config(
        None,
        run_overrides(teacher, run, size, **extra)
        + [f"judge.api_base='{judge.api_base}'", "judge.api_key_env=''", "judge.num_retries=2"],
    )


def test_judge_run_uses_its_own_lm_counts_calls_and_resumes(server_factory, tmp_path):
    teacher, judge = server_factory(), server_factory(sticky_malformed=0.05)
    run = tmp_path / "run"
    cfg = _synth_and_judge_config(teacher, judge, run, 20)
    synthesize(cfg)
    teacher_requests = len(read_log(teacher.cfg.log_path))
    s = judge_run(run, cfg)
    assert len(read_log(teacher.cfg.log_path)) == teacher_requests  # the judge never calls the teacher
    log = read_log(judge.cfg.log_path)
    kinds = Counter(e["outputs"][-1] for e in log)
    judged = [json.loads(x) for x in (run / "judgments.jsonl").read_text().splitlines()]
    rejects = (
        [json.loads(x) for x in (run / "judge_rejects.jsonl").read_text().splitlines()]
        if (run / "judge_rejects.jsonl").exists()
        else []
    )
    assert len(judged) + len(rejects) == 20 == s["samples"] and s["judged"] == len(judged)
    assert len({j["sample_id"] for j in judged}) == len(judged)
    assert all(r["sample_id"] and r["reason"] == "unparseable" for r in rejects)
    # every judged sample: one rubric call, two pairwise calls (both orders)
    assert kinds["instruction_following"] >= len(judged) and kinds["verdict"] >= 2 * len(judged)
    assert s["usage"]["calls"] == len(log)
    for j in judged:
        assert set(j["pointwise"]["scores"]) == {"helpfulness", "accuracy", "depth", "clarity", "instruction_following"}
        assert j["pairwise"]["winner"] in ("improved", "draft", "tie") and len(j["pairwise"]["verdicts"]) == 2
    assert s["improvement_win_rate"] + s["improvement_tie_rate"] + s["improvement_loss_rate"] == pytest.approx(
        1.0, abs=1e-3
    )
    # resume: nothing more to do, no request
    again = judge_run(run, cfg)
    assert again["judged"] == len(judged) and len(read_log(judge.cfg.log_path)) == len(log)
    # another judge config is refused, --fresh starts over
    other = _synth_and_judge_config(teacher, judge, run, 20, **{"judging.criteria": '["clarity"]'})
    with pytest.raises(RunDirError, match="different judge config"):
        judge_run(run, other)
    assert judge_run(run, other, on_mismatch="fresh")["mean_by_criterion"].keys() == {"clarity"}
    kept = (run / "judgments.jsonl").read_bytes()
    (run / "judge_fingerprint.json").write_text("{torn")
    with pytest.raises(RunDirError, match="unreadable"):
        judge_run(run, other)
    assert (run / "judgments.jsonl").read_bytes() == kept  # a refused run writes nothing


def test_cli_judge_filter_report_and_bad_inputs(server_factory, tmp_path):
    srv = server_factory()
    run, out = tmp_path / "run", tmp_path / "filtered"
    args = sets(run_overrides(srv, run, 16) + [f"judge.api_base='{srv.api_base}'", "judge.api_key_env=''"])
    assert refed("synthesize", *args, "-q").wait(timeout=300) == 0
    samples_before = (run / "samples.jsonl").read_bytes()
    p = refed("judge", "run", str(run), "--set", f"judge.api_base='{srv.api_base}'", "--set", "judge.api_key_env=''")
    stdout, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "judged 16/16" in stdout
    p = refed(
        "filter", str(run), "--out", str(out), "--apply", "judge_prefers_improved", "--apply", "random_subset:k=3"
    )
    stdout, err = p.communicate(timeout=300)
    kept = (out / "samples.jsonl").read_text().splitlines()
    assert p.returncode == (0 if len(kept) * 10 >= 16 else 1), err  # under a tenth kept: exit 1, files kept
    removed = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(kept) + len(removed) == 16 and len(kept) <= 3
    assert all(r["filter"] in ("judge_prefers_improved", "random_subset") and r["reason"] for r in removed)
    assert (run / "samples.jsonl").read_bytes() == samples_before  # input untouched
    for bad_args, msg in (
        (["filter", str(run), "--out", str(out), "--apply", "dedup"], "already exists"),
        (["filter", str(run), "--out", str(run), "--apply", "dedup"], "is the input"),
        (["filter", str(run), "--out", str(tmp_path / "x")], "no filters to apply"),
        (["judge", "run", str(tmp_path / "nowhere")], "not a run directory"),
        (["report", str(tmp_path)], "not a run directory"),
        (["judge", "meta-eval"], "needs --labels"),
    ):
        p = refed(*bad_args)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 2 and msg in err and len(err.strip().splitlines()) == 1, (bad_args, err)
    assert len(kept) == len((out / "samples.jsonl").read_text().splitlines())  # the refused filter wrote nothing
    # a folder of the user's holding a samples.jsonl: refused as not refed's, not offered --overwrite (which it
    # then refused: a newcomer's trial)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "samples.jsonl").write_text('{"x": 1}\n')
    p = refed("filter", str(run), "--out", str(foreign), "--apply", "dedup")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "not refed's" in err and "--overwrite" not in err, err
    p = refed("report", str(run))
    stdout, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "mean score" in stdout and "distinct-2" in stdout
    check_report_html((run / "report.html").read_text(), judged=True)


def check_report_html(text, judged):
    from refed_dspy.quality.report import SECTIONS

    for title in SECTIONS:
        assert f">{title}" in text, title
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) >= (3 if judged else 1)
    import matplotlib.image as mpimg

    for data in images:
        raw = base64.b64decode(data)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = mpimg.imread(io.BytesIO(raw), format="png")
        assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch


def test_report_with_embedding_diversity_and_mlflow_artifact(server_factory, tmp_path):
    import numpy as np

    from refed_dspy.quality.report import build_report

    srv = server_factory()
    run = tmp_path / "run"
    synthesize(load_config(None, run_overrides(srv, run, 12)))
    cfg = load_config(
        run / "config.toml", ["tracking.enabled=true", f"tracking.mlflow_uri='sqlite:///{tmp_path / 'mlflow.db'}'"]
    )

    def embed(texts):  # a stand-in embedder: bag of letters
        return np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], dtype=float)

    result = build_report(run, cfg, embedder=dspy.Embedder(embed))
    d = result["diversity"]
    assert 0 < d["embedding_diversity"] < 1 and 0 < d["distinct_1"] <= d["distinct_2"] <= 1
    assert result["counts"]["samples"] == 12 and result["judge"]["mean_score"] is None
    check_report_html((run / "report.html").read_text(), judged=False)
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking.mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["refed"], output_format="list")
    assert len(runs) == 1 and runs[0].data.tags["refed.run_dir"] == str(run.resolve())
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "report")}
    assert names == {"report/report.html", "report/report.json"}


def test_cli_compare_with_judge_columns(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "cmp"
    args = [
        "compare",
        "--judge",
        "--methods",
        "refed,no_feedback",
        *sets(run_overrides(srv, run, 5) + [f"judge.api_base='{srv.api_base}'", "judge.api_key_env=''"]),
    ]
    p = refed(*args)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    rows = {r["method"]: r for r in json.loads((run / "compare.json").read_text())["rows"]}
    assert 1 <= rows["refed"]["mean_score"] <= 10 and rows["refed"]["improvement_win_rate"] is not None
    assert rows["no_feedback"]["improvement_win_rate"] is None  # no improvement step, nothing to compare
    assert all(0 < r["distinct_2"] <= 1 and r["mean_pairwise_rouge_l"] is not None for r in rows.values())
    assert "judge score" in out and "improved wins" in (run / "compare.md").read_text()


def test_judge_budget_stops_before_exceeding(server_factory, tmp_path):
    teacher, judge = server_factory(), server_factory()
    run = tmp_path / "run"
    synthesize(_synth_and_judge_config(teacher, judge, run, 10))
    cfg = _synth_and_judge_config(teacher, judge, run, 10, **{"judging.max_calls": 20, "judging.concurrency": 6})
    s = judge_run(run, cfg)
    assert s["status"] == "budget" and 0 < s["judged"] < 10
    assert s["usage"]["calls"] == len(read_log(judge.cfg.log_path)) <= 20
    # a larger budget finishes the rest without judging anything twice
    s = judge_run(run, _synth_and_judge_config(teacher, judge, run, 10))
    assert s["status"] == "complete" and s["judged"] == 10
    assert len(read_log(judge.cfg.log_path)) == 30 == s["usage"]["calls"]


def test_judge_fingerprint_of_an_older_run_without_the_adapter_keys_still_matches():
    from refed_dspy.quality.judge import judge_fingerprint, judge_fingerprint_diff

    new = judge_fingerprint(load_config(None, []))
    old = {k: v for k, v in new.items() if k not in ("adapter", "schema_dialect")}
    assert judge_fingerprint_diff(old, new) == []
    changed = judge_fingerprint(load_config(None, ["judge.adapter='chat'"]))
    assert judge_fingerprint_diff(old, changed) == ["adapter: None -> 'chat'"]
    assert judge_fingerprint_diff(new, changed) == ["adapter: 'auto' -> 'chat'"]


def test_execution_figures_of_a_summary():
    from refed_dspy.quality.figures import execution, execution_text

    assert execution({}) == {} and execution_text({}) == "unknown"  # a summary from before these figures
    online = execution(
        {
            "mode": "online",
            "endpoints": {
                "http://a/v1": {"calls": 7, "failures": 1, "taken_out": 0},
                "http://b/v1": {"calls": 5, "failures": 0, "taken_out": 0},
            },
            "estimate": {"cost_usd": 1.2286, "calls": 2192, "cost_error": -0.0749},
        }
    )
    assert online == {
        "mode": "online",
        "calls_by_endpoint": {"http://a/v1": 7, "http://b/v1": 5},
        "estimate_usd": 1.2286,
        "estimate_error": -0.0749,
    }
    assert execution_text(online) == (
        "online, calls by endpoint http://a/v1 7, http://b/v1 5, estimate $1.2286 (run cost -7.5% off it)"
    )
    batch = execution(
        {
            "mode": "batch",
            "batch": {
                "batches": 4,
                "requests": 2180,
                "resubmitted": 3,
                "open": 0,
                "online_cost_usd": 1.1348,
                "saved_usd": 0.5674,
            },
        }
    )
    assert execution_text(batch) == (
        "batch, 4 batches of 2180 requests (3 sent again), saved $0.5674 of $1.1348 at online prices"
    )
