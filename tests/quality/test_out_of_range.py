"""A provider whose judge scores break their 1-10 bounds (63, 84, ...): judge, filter, report and optimize
each handle it without a traceback, without silent drops, and without paying on and on."""

from __future__ import annotations

import json

import pytest
from cli_helpers import refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError
from refed_dspy.optimizers.run import optimize
from refed_dspy.quality.filter_run import filter_run

CRITERIA = "judging.criteria=['helpfulness','accuracy']"


def judge_sets(srv, **extra) -> list[str]:
    out = [f"judge.api_base='{srv.api_base}'", "judge.api_key_env=''", CRITERIA, "run.progress=false"]
    return sets(out + [f"{k}={v}" for k, v in extra.items()])


def run_cli(*args, timeout=300):
    proc = refed(*args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_judge_rejects_out_of_range_scores_and_aborts_the_streak(run, server_factory):
    bad = server_factory(sticky_bad_scores=1.0)
    code, out, err = run_cli(
        "judge", "run", str(run), *judge_sets(bad, **{"judging.max_consecutive_failures": 5, "judging.concurrency": 3})
    )
    assert code == 3 and "Traceback" not in err and len(err.strip().splitlines()[-1:]) == 1
    assert "consecutive judge failures" in err and "unparseable" in err and "less than or equal to 10" in err
    summary = json.loads((run / "judge_summary.json").read_text())
    assert summary["status"] == "aborted" and summary["judged"] == 0 and summary["unjudged"] == 30
    rejects = [json.loads(x) for x in (run / "judge_rejects.jsonl").read_text().splitlines()]
    # the abort stops the spending: the rejects of the streak and those already in flight, not 30 samples' worth
    assert 5 <= len(rejects) < 30 and all(r["reason"] == "unparseable" for r in rejects)
    assert all("(after 1 repair)" in r["detail"] and r["raw"] for r in rejects)
    assert summary["rejects"] == {"unparseable": len(rejects)}
    calls = len(read_log(bad.cfg.log_path))
    assert calls <= 3 * 2 * (len(rejects) + 1)  # 3 judge calls per sample, each with one repair at most


def test_judge_says_partial_unless_every_sample_is_judged(run, server_factory):
    half = server_factory(sticky_bad_scores=0.5)
    code, out, err = run_cli(
        "judge", "run", str(run), *judge_sets(half, **{"judge.max_repairs": 0, "judging.pairwise": "false"})
    )
    summary = json.loads((run / "judge_summary.json").read_text())
    assert 0 < summary["judged"] < 30 and summary["unjudged"] == 30 - summary["judged"]
    assert code == 1 and summary["status"] == "partial" and f"judged {summary['judged']}/30" in out and "partial" in out
    assert all(
        1 <= v <= 10
        for row in (run / "judgments.jsonl").read_text().splitlines()
        for v in json.loads(row)["pointwise"]["scores"].values()
    )
    assert summary["rejects"] == {"unparseable": 30 - summary["judged"]}
    unjudged = 30 - summary["judged"]  # what is left, and the way on (the newcomer trial found none said)
    assert f"rejects: {unjudged} unparseable" in out and f"  {unjudged} samples not judged: " in out
    assert "--fresh with another [judge] model" in out and "come back from the run's cache" in out

    # a judge-based filter refuses to drop the unjudged samples silently
    code, out, err = run_cli("filter", str(run), "--out", str(run.parent / "f"), "--apply", "min_score:min_score=1")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{30 - summary['judged']} of 30 samples have no judgment" in err and "pass --unjudged drop (or keep)" in err
    assert f"`refed judge run {run} --fresh` with another judge model" in err and "judges the failed ones" in err
    with pytest.raises(ConfigError, match=r"pass unjudged='drop' \(or 'keep'\)"):  # Python's words, not flags
        filter_run(run, run.parent / "f", ["min_score:min_score=1"])
    assert not (run.parent / "f").exists()
    # as it says: --fresh with the same judge asks nothing again (its replies come from the run's cache)
    sent = len(read_log(half.cfg.log_path))
    sets = judge_sets(half, **{"judge.max_repairs": 0, "judging.pairwise": "false"})
    code, out, _ = run_cli("judge", "run", str(run), "--fresh", *sets)
    assert code == 1 and len(read_log(half.cfg.log_path)) == sent and "0 judge calls" in out, out
    for policy, kept in (("keep", 30), ("drop", summary["judged"])):
        out_dir = run.parent / f"f-{policy}"
        code, out, err = run_cli(
            "filter", str(run), "--out", str(out_dir), "--apply", "min_score:min_score=1", "--unjudged", policy
        )
        fs = json.loads((out_dir / "filter_summary.json").read_text())
        assert code == (0 if kept * 10 >= 30 else 1), err
        assert fs["kept"] == kept and fs["unjudged"]["samples"] == 30 - summary["judged"]
        assert fs["unjudged"]["policy"] == policy and "judge failures" in fs["unjudged"]["why"]
        assert "had no judgment" in out

    # the report counts the judge's failures as failures
    code, out, err = run_cli("report", str(run))
    assert code == 0, err
    assert f"{30 - summary['judged']} failed to be judged" in out and f"{30 - summary['judged']} unparseable" in out
    html = (run / "report.html").read_text()
    assert "The judge failed on" in html


def test_optimize_scores_a_failed_judging_zero_and_goes_on(server_factory, tmp_path):
    # every third scoring call breaks the bounds: a count over the calls that ask for scores (not over all calls,
    # whose order two threads shuffle), so a third of the judgings fail, whatever the text and the order
    good, flaky = server_factory(), server_factory(bad_scores_every=3)
    overrides = run_overrides(good, tmp_path / "run", 10) + [
        f"judge.api_base='{flaky.api_base}'",
        "judge.api_key_env=''",
        "judge.max_repairs=0",
        "optimize.optimizer='bootstrap'",
        "optimize.n_train=4",
        "optimize.n_val=3",
        "optimize.num_threads=2",
        CRITERIA,
    ]
    result = optimize(load_config(None, overrides))
    failures = result.extra["metric_failures"]
    assert failures["failed"] > 0 and failures["by_reason"] == {"unparseable": failures["failed"]}
    assert failures["calls"] > failures["failed"] and "less than or equal to 10" in failures["last"]
    summary = json.loads((tmp_path / "run" / "optimize" / "optimize_summary.json").read_text())
    assert summary["metric_failures"] == failures and result.program_path.exists()


def test_optimize_stops_without_a_program_when_every_judging_fails(server_factory, tmp_path):
    good, bad = server_factory(), server_factory(sticky_bad_scores=1.0)
    overrides = run_overrides(good, tmp_path / "run", 10) + [
        f"judge.api_base='{bad.api_base}'",
        "judge.api_key_env=''",
        "optimize.optimizer='bootstrap'",
        "optimize.n_train=4",
        "optimize.n_val=3",
        CRITERIA,
    ]
    code, out, err = run_cli("optimize", *sets(overrides))
    assert code == 3 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "every judging failed" in err and "unparseable" in err
    assert not (tmp_path / "run" / "optimize" / "program.json").exists()


def test_optimize_says_what_happened_when_every_example_was_rejected(server_factory, tmp_path):
    broken = server_factory(sticky_malformed=1.0)
    overrides = run_overrides(broken, tmp_path / "run", 10) + [
        f"judge.api_base='{broken.api_base}'",
        "judge.api_key_env=''",
        "optimize.optimizer='bootstrap'",
        CRITERIA,
        "seeds.limit=3",
    ]
    code, out, err = run_cli("optimize", *sets(overrides))
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "synthesize first" not in err and "made 0 samples" in err and "3 unparseable" in err
