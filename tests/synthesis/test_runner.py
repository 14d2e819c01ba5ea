"""The runner against the loopback server, in process: counts, budget, rejects, resume, config checks."""

import json
from collections import Counter

import pytest
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError, RunAborted, RunDirError
from refed_dspy.store.records import RejectRecord, SampleRecord
from refed_dspy.synthesis.api import synthesize


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_exact_size_records_and_provenance(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    cfg = load_config(
        None, run_overrides(srv, run, 37, **{"synthesis.concurrency": 8, "synthesis.instructions_per_feature": 5})
    )
    summary = synthesize(cfg)
    samples = lines(run / "samples.jsonl")
    assert summary["status"] == "complete" and summary["samples"] == 37 and len(samples) == 37
    assert len({s["meta"]["id"] for s in samples}) == 37
    assert len({s["instruction"] for s in samples}) == 37
    for s in samples:
        rec = SampleRecord.model_validate(s)
        assert rec.improved_response and rec.analysis and rec.implementation_strategy
        assert rec.meta.method == "refed" and rec.meta.teacher == "openai/gpt-4o-mini"
        assert rec.meta.usage["calls"] == 2 and rec.meta.feature in ("subject_areas", "relevant_skills")
    # feedback once per used reference; 8 units of 5 instructions cover 37 samples
    fb = lines(run / "feedback.jsonl")
    assert summary["feedback_collected"] == len(fb) == len({s["meta"]["reference_id"] for s in samples})
    log = read_log(srv.cfg.log_path)
    assert summary["usage"]["calls"] == len(log) == 2 * len(fb) + summary["units"] + 2 * 37
    assert summary["usage"]["by_stage"]["generate"]["calls"] == 37 == summary["usage"]["by_stage"]["improve"]["calls"]
    assert summary["usage"]["prompt_tokens"] == sum(e["prompt_tokens"] for e in log)
    assert summary["usage"]["completion_tokens"] == sum(e["completion_tokens"] for e in log)
    assert summary["cost_usd"] > 0 and json.loads((run / "summary.json").read_text())["samples"] == 37


def test_round_robin_uses_every_reference_once_first(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    cfg = load_config(None, run_overrides(srv, run, 60, **{"synthesis.instructions_per_feature": 1, "seeds.limit": 20}))
    synthesize(cfg)
    units = lines(run / "journal.jsonl")
    first_pass = [u["reference_id"] for u in units if u["feature"] == "subject_areas" and u["pass"] == 0]
    assert len(set(first_pass)) == 20
    assert {u["pass"] for u in units} == {0, 1}  # 60 samples, 20 refs x 2 features x 1 -> a second pass
    assert len({u["unit"] for u in units}) == len(units)


def test_max_calls_budget_stops_before_exceeding(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    cfg = load_config(None, run_overrides(srv, run, 100, **{"synthesis.max_calls": 60, "synthesis.concurrency": 8}))
    summary = synthesize(cfg)
    assert summary["status"] == "budget"
    assert summary["usage"]["calls"] <= 60 and len(read_log(srv.cfg.log_path)) <= 60
    assert 0 < summary["samples"] < 100


def test_cost_budget_needs_a_price(server_factory, tmp_path):
    srv = server_factory()
    from refed_dspy.errors import ConfigError

    cfg = load_config(
        None,
        run_overrides(
            srv, tmp_path / "r", 5, **{"teacher.model": "'openai/unknown-model'", "synthesis.max_cost_usd": 1.0}
        ),
    )
    with pytest.raises(ConfigError, match="needs a price"):
        synthesize(cfg)


def test_failures_become_rejects_and_the_run_still_fills(server_factory, tmp_path):
    # malformed is drawn again for a repair, so it needs a higher rate than the others to end in unparseable rejects
    srv = server_factory(
        sticky_length=0.08, sticky_malformed=0.25, sticky_refusal=0.05, sticky_filter400=0.05, rate_500=0.05
    )
    run = tmp_path / "run"
    cfg = load_config(None, run_overrides(srv, run, 80, **{"synthesis.concurrency": 8}))
    summary = synthesize(cfg)
    assert summary["samples"] == 80 == len(lines(run / "samples.jsonl"))
    rejects = lines(run / "rejects.jsonl")
    reasons = Counter(r["reason"] for r in rejects)
    for reason in ("truncated", "unparseable", "refused", "content_filter"):
        assert reasons[reason] > 0, reasons
    for r in rejects:
        RejectRecord.model_validate(r)
        assert r["stage"] in ("feedback", "synthesize", "sample", "dedup") and r["reference_id"]
    assert summary["rejects"] == dict(reasons)
    # a truncated reply is rejected at once: neither a repair nor a retry of the same request is paid for
    log = read_log(srv.cfg.log_path)
    per_key = Counter(e["key"] for e in log if e.get("status") == 200)
    truncated = [e for e in log if e.get("fault") == "length"]
    assert truncated and all(per_key[e["key"]] == 1 for e in truncated)
    # repair requests, and those the server answered (one that got a 5xx is retried with the task)
    repairs = Counter(e["base"] for e in log if e["turns"] > 1)
    answered = Counter(e["base"] for e in log if e["turns"] > 1 and e.get("status") in (200, 400))
    assert not any(repairs[e["base"]] for e in truncated if e["turns"] == 1)
    # while a malformed first reply is asked again once (teacher.max_repairs = 1), with the error shown
    malformed = [e for e in log if e.get("fault") == "malformed" and e["turns"] == 1]
    assert malformed and all(
        per_key[e["key"]] == 1 and repairs[e["base"]] >= 1 and answered[e["base"]] <= 1 for e in malformed
    )
    paid = sum(1 for e in log if e["turns"] > 1 and e.get("status") == 200)
    assert summary["usage"]["repairs"] == paid and summary["usage"]["parse_failures"] >= len(malformed)
    raw = [r for r in rejects if r["reason"] in ("unparseable", "truncated")]
    assert raw and all(r["raw"] and len(r["raw"]) <= 2000 for r in raw)
    assert all("after 1 repair" in r["detail"] for r in rejects if r["reason"] == "unparseable")
    for s in lines(run / "samples.jsonl"):
        SampleRecord.model_validate(s)


def test_a_task_whose_call_is_filtered_for_good_is_not_retried_for_its_siblings_5xx(server_factory, tmp_path):
    """A reference's feedback: describe answered 500 every time, critique filtered every time (both asked at once).
    The filter decides: the feedback is rejected as content_filter at once, the critique asked once, not again with
    each retry of the task for describe's 5xx."""
    srv = server_factory(extra={"fault_for_output": {"subject_areas": "500", "response_feedback": "filter400"}})
    run = tmp_path / "run"
    summary = synthesize(load_config(None, run_overrides(srv, run, 4, **{"seeds.limit": 3})))
    log = read_log(srv.cfg.log_path)
    critiques = Counter(e["base"] for e in log if "response_feedback" in e["outputs"])
    assert len(critiques) == 3 and set(critiques.values()) == {1}, critiques
    rejects = [r for r in lines(run / "rejects.jsonl") if r["stage"] == "feedback"]
    assert sorted(r["reason"] for r in rejects) == ["content_filter"] * 3 and summary["samples"] == 0
    assert summary["retries"]["total"] == 0


def test_extend_resume_and_config_mismatch(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    synthesize(load_config(None, run_overrides(srv, run, 20)))
    before = len(read_log(srv.cfg.log_path))
    again = synthesize(load_config(None, run_overrides(srv, run, 20)))
    assert again["samples"] == 20 and again["new_samples"] == 0
    assert len(read_log(srv.cfg.log_path)) == before  # nothing sent again
    assert again["usage"]["calls"] == before  # totals of earlier invocations are read back from the files
    more = synthesize(load_config(None, run_overrides(srv, run, 35)))
    ids = [s["meta"]["id"] for s in lines(run / "samples.jsonl")]
    assert more["samples"] == 35 and len(ids) == len(set(ids)) == 35
    other = load_config(None, run_overrides(srv, run, 35, **{"teacher.temperature": 0.3}))
    # from Python, the remedy is named in Python's terms (the CLI's own message names its flags)
    with pytest.raises(
        RunDirError, match=r"teacher.temperature: 1.0 -> 0.3.*on_mismatch=\"resume\".*on_mismatch=\"fresh\""
    ) as err:
        synthesize(other)
    assert "--resume-anyway" in err.value.cli_message() and "--fresh" in err.value.cli_message()
    # the first run set no temperature: the 1.0 shown is the model's own default, and the line says so
    assert "temperature: 1.0 -> 0.3 (the values sent: where a config sets none, the model's own" in str(err.value)
    with pytest.raises(ConfigError, match=r"on_mismatch='continue' is not one of 'error', 'resume', 'fresh'"):
        synthesize(other, on_mismatch="continue")
    fresh = synthesize(other, on_mismatch="fresh")
    assert fresh["samples"] == 35 and fresh["new_samples"] == 35


def test_a_run_made_with_other_prompts_is_not_resumed_without_a_word(server_factory, tmp_path):
    """A run dir made before the prompt format was recorded (its fingerprint has none: format 1's prompts) is refused
    with one line saying what changed and what to do, and nothing in it is touched; each record says the format it was
    made with, and --resume-anyway continues it with this refed's prompts."""
    from cli_helpers import run_refed, sets

    from refed_dspy.config.schema import PROMPT_FORMAT

    srv = server_factory()
    run = tmp_path / "run"
    synthesize(load_config(None, run_overrides(srv, run, 6)))
    assert {s["meta"]["prompt_format"] for s in lines(run / "samples.jsonl")} == {PROMPT_FORMAT} == {2}
    made = json.loads((run / "fingerprint.json").read_text())
    assert made["prompt_format"] == PROMPT_FORMAT
    del made["prompt_format"]
    (run / "fingerprint.json").write_text(json.dumps(made))
    kept = (run / "samples.jsonl").read_bytes()
    served = len(read_log(srv.cfg.log_path))
    code, out, err = run_refed("synthesize", *sets(run_overrides(srv, run, 8)))
    errors = [line for line in err.splitlines() if line.startswith("refed: error")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "refed's prompt format: 1 -> 2" in errors[0] and "--fresh" in errors[0] and "--resume-anyway" in errors[0]
    assert (run / "samples.jsonl").read_bytes() == kept and len(read_log(srv.cfg.log_path)) == served
    code, out, err = run_refed("synthesize", "--resume-anyway", *sets(run_overrides(srv, run, 8)))
    assert code == 0, err
    assert len(lines(run / "samples.jsonl")) == 8


def test_dead_server_aborts_after_bounded_failures_then_resumes(server_factory, tmp_path):
    dead = server_factory(fail_all=True)
    run = tmp_path / "run"
    cfg = load_config(
        None,
        run_overrides(
            dead,
            run,
            10,
            **{"synthesis.max_consecutive_failures": 3, "teacher.num_retries": 0, "synthesis.concurrency": 2},
        ),
    )
    with pytest.raises(RunAborted, match="3 consecutive teacher failures"):
        synthesize(cfg)
    assert json.loads((run / "summary.json").read_text())["status"] == "aborted"
    assert len(read_log(dead.cfg.log_path)) < 20
    alive = server_factory()
    cfg = load_config(None, run_overrides(alive, run, 10))
    assert synthesize(cfg, on_mismatch="resume")["samples"] == 10


def test_unwritable_run_dir(tmp_path, server_factory):
    srv = server_factory()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(RunDirError, match="cannot write to run directory"):
        synthesize(load_config(None, run_overrides(srv, blocker / "run", 3)))
    assert blocker.read_text() == "not a directory"


def test_budget_reserves_the_methods_calls_and_more_for_a_program_of_the_users(tmp_path):
    """A built-in program reserves what its method makes at most per task; a program passed in may call a predictor
    more than once (dspy.BestOfN), so its tasks reserve no less than any program's did before."""
    from dspy.utils import DummyLM

    from refed_dspy.engine.stage import Started
    from refed_dspy.launch.plan import Launch
    from refed_dspy.programs import RespondAndImprove
    from refed_dspy.store.rundir import RunDir
    from refed_dspy.synthesis.next_work import worst_calls
    from refed_dspy.synthesis.program import resolve_program
    from refed_dspy.synthesis.run import SynthesisPlan, SynthesisRun

    def worst(method: str, respond=None) -> dict:
        config = load_config(None, [f"synthesis.method={method}", "teacher.api_key_env=''"])
        from refed_dspy.methods import METHODS

        program, config = resolve_program(config, METHODS.get(method), respond=respond)
        launch = Launch("teacher", config.teacher, "online", None, None, config.batch, config.price_book, 30.0)
        plan = SynthesisPlan(
            tmp_path / method, config.synthesis, config.teacher, program, [], launch, config.run, config
        )
        run = SynthesisRun(plan, RunDir(tmp_path / method), Started(DummyLM([]), None, None))
        return worst_calls(run.method, run.syn, run.program.builtin, run.parts)

    assert worst("refed") == {"feedback": 2, "unit": 1, "sample": 2}
    assert worst("no_feedback") == {"feedback": 0, "unit": 1, "sample": 1}
    assert worst("sample_feedback")["sample"] == 3 and worst("reflection")["sample"] == 2
    assert worst("no_feedback", respond=RespondAndImprove(improve=False))["sample"] == 3


def test_a_size_below_what_the_run_has_says_so(server_factory, tmp_path):
    """A newcomer's `--set synthesis.size=2` on a run of 20 printed `samples 20/2` and nothing else."""
    from cli_helpers import run_refed, sets

    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 4, **{"seeds.limit": 2})
    code, _, err = run_refed("synthesize", *sets(over))
    assert code == 0, err[-2000:]
    code, _, err = run_refed("synthesize", *sets(over), "--set", "synthesis.size=2")
    assert code == 0 and "has 4 samples already, more than synthesis.size 2: nothing to make" in err, err
