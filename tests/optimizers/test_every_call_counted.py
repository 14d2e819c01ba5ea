"""Every LM call made inside an optimization passes the ledger, whichever object makes it: the judge of a metric a
user built with `make_metric` and handed to their own teleprompter, GEPA's reflection LM, the LM a user's own metric
calls. Each server counts what really reached it; the ledger must say the same, role by role, and a budget below the
need must stop at it. And an LM is priced and recorded as itself, not as the config's section for its role."""

from __future__ import annotations

import json

import dspy
import pytest
from conftest import run_overrides
from loopback_server import read_log

import refed_dspy
from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError
from refed_dspy.optimizers import OptimizationStopped, make_metric
from refed_dspy.programs import RespondAndImprove

INPUTS = ("reference_instruction", "reference_response", "instruction", "feedback")
TOPICS = ["tides", "rainbows", "volcanoes", "eclipses", "glaciers", "earthquakes", "auroras", "monsoons"]
MODEL = "openai/gpt-4o-mini"  # in LiteLLM's price map


def examples(n: int = 8) -> list[dspy.Example]:
    return [
        dspy.Example(
            reference_instruction="Explain photosynthesis.",
            reference_response="Plants turn light into sugar.",
            instruction=f"Explain {TOPICS[i % len(TOPICS)]} to a child.",
            feedback="Be concrete.",
            reference_id=f"r{i % 4}",
        ).with_inputs(*INPUTS)
        for i in range(n)
    ]


def config(srv, tmp_path, **extra):
    over = run_overrides(
        srv,
        tmp_path / "run",
        4,
        **{
            # the config's judge points at a closed port: every judge call must go to the LM the test hands in
            "judge.api_base": "'http://127.0.0.1:9/v1'",
            "judge.api_key_env": "''",
            "optimize.out": f"'{tmp_path / 'opt'}'",
            "optimize.num_threads": 1,
            "optimize.win_weight": 0,
            **extra,
        },
    )
    return load_config(None, over)


def served(srv) -> int:
    """The calls a server answered (what a provider bills)."""
    return sum(1 for e in read_log(srv.cfg.log_path) if e.get("status") == 200)


def user_lm(srv, **settings) -> dspy.LM:
    return dspy.LM(MODEL, api_base=srv.api_base, api_key="unused", num_retries=0, **settings)


@pytest.mark.parametrize("metric_too", [False, True], ids=["teleprompter's metric", "metric= as well"])
def test_miprov2_with_our_metric_and_a_user_judge_counts_every_call(server_factory, tmp_path, metric_too):
    """The issue's case: 56 calls reported (judge 6) where the servers answered 110; with metric= as well, 96 judge
    calls outside the ledger and its budget."""
    teacher_srv, judge_srv = server_factory(), server_factory()
    teacher, judge = user_lm(teacher_srv), user_lm(judge_srv)
    cfg = config(teacher_srv, tmp_path)
    metric = make_metric(cfg, judge=judge)
    mipro = dspy.MIPROv2(metric=metric, auto="light", prompt_model=teacher, task_model=teacher, num_threads=1)
    result = refed_dspy.optimize(
        cfg,
        teacher=teacher,
        judge=judge,
        optimizer=mipro,
        program=RespondAndImprove(improve=False),
        trainset=examples(),
        **({"metric": metric} if metric_too else {}),
    )
    roles = {role: part["calls"] for role, part in result.usage["by_role"].items()}
    assert roles == {"teacher": served(teacher_srv), "judge": served(judge_srv)}
    assert roles["judge"] > 10
    # the proposer's calls are tagged as such, wherever the LM it calls is held; none is left untagged
    stages = result.usage["by_stage"]
    assert stages["propose"]["calls"] > 0 and "unknown" not in stages
    assert stages["judge_pointwise"]["calls"] == served(judge_srv)


def test_gepa_takes_our_metric_as_it_is_and_counts_its_reflection_lm(server_factory, tmp_path):
    teacher_srv, judge_srv, reflection_srv = server_factory(), server_factory(), server_factory()
    cfg = config(teacher_srv, tmp_path)
    gepa = dspy.GEPA(
        metric=make_metric(cfg, judge=user_lm(judge_srv)),  # GEPA checks for its five arguments here
        reflection_lm=user_lm(reflection_srv, max_tokens=2000),
        max_metric_calls=24,
        num_threads=1,
    )
    result = refed_dspy.optimize(
        cfg, optimizer=gepa, program=RespondAndImprove(improve=False), trainset=examples(), valset=examples(4)
    )
    roles = {role: part["calls"] for role, part in result.usage["by_role"].items()}
    assert roles == {"teacher": served(teacher_srv), "judge": served(judge_srv), "optimizer": served(reflection_srv)}
    assert roles["optimizer"] > 0 and roles["judge"] > 0
    assert result.usage["by_stage"]["propose"]["calls"] == served(reflection_srv)
    # the feedback GEPA reflects on is the judge's reasons
    feedback = make_metric(cfg, judge=user_lm(judge_srv))(
        examples(1)[0], dspy.Prediction(response="Tides follow the moon."), None, "generate", None
    )
    assert isinstance(feedback, dspy.Prediction) and feedback.feedback.startswith("Scores {")
    # a budget below the need: the three servers see at most max_calls in all, and the ledger says what they saw
    servers = [server_factory() for _ in range(3)]
    low = config(servers[0], tmp_path / "low", **{"optimize.max_calls": 20})
    gepa = dspy.GEPA(
        metric=make_metric(low, judge=user_lm(servers[1])),
        reflection_lm=user_lm(servers[2], max_tokens=2000),
        max_metric_calls=24,
        num_threads=1,
    )
    with pytest.raises(OptimizationStopped, match="LM-call budget of 20") as stop:
        refed_dspy.optimize(
            low, optimizer=gepa, program=RespondAndImprove(improve=False), trainset=examples(), valset=examples(4)
        )
    assert sum(served(srv) for srv in servers) == stop.value.usage["calls"] <= 20


def _own_lm_metric(judge_srv):
    mine = user_lm(judge_srv)

    def metric(gold, pred, trace=None):
        reply = mine(f"Rate this answer from 1 to 10: {pred.response}")[0]
        return min(1.0, len(reply) / 100)

    return metric


def test_a_user_metric_that_calls_its_own_lm_is_counted_and_stopped(server_factory, tmp_path):
    teacher_srv, judge_srv = server_factory(), server_factory()
    result = refed_dspy.optimize(
        config(teacher_srv, tmp_path),
        optimizer="bootstrap",
        program=RespondAndImprove(improve=False),
        trainset=examples(),
        metric=_own_lm_metric(judge_srv),
    )
    roles = {role: part["calls"] for role, part in result.usage["by_role"].items()}
    assert roles == {"teacher": served(teacher_srv), "metric": served(judge_srv)} and roles["metric"] > 0
    assert result.usage["by_stage"]["metric"]["calls"] == served(judge_srv)
    # a budget below the need: the servers see at most max_calls, and the ledger says what they saw
    t2, j2 = server_factory(), server_factory()
    with pytest.raises(OptimizationStopped, match="LM-call budget of 7") as stop:
        refed_dspy.optimize(
            config(t2, tmp_path / "b", **{"optimize.max_calls": 7}),
            optimizer="bootstrap",
            program=RespondAndImprove(improve=False),
            trainset=examples(),
            metric=_own_lm_metric(j2),
        )
    assert served(t2) + served(j2) == stop.value.usage["calls"] == 7 and served(j2) > 0


def test_a_budget_below_the_need_stops_a_user_teleprompter_at_it(server_factory, tmp_path):
    teacher_srv, judge_srv, proposer_srv = server_factory(), server_factory(), server_factory()
    cfg = config(teacher_srv, tmp_path, **{"optimize.max_calls": 25})
    teacher = user_lm(teacher_srv)
    mipro = dspy.MIPROv2(
        metric=make_metric(cfg, judge=user_lm(judge_srv)),
        auto="light",
        prompt_model=user_lm(proposer_srv),
        task_model=teacher,
        num_threads=2,
    )
    with pytest.raises(OptimizationStopped, match="budget") as stop:
        refed_dspy.optimize(
            cfg, teacher=teacher, optimizer=mipro, program=RespondAndImprove(improve=False), trainset=examples()
        )
    total = served(teacher_srv) + served(judge_srv) + served(proposer_srv)
    assert total == stop.value.usage["calls"] <= 25
    by_role = stop.value.usage["by_role"]
    assert by_role["judge"]["calls"] == served(judge_srv) and by_role.get("optimizer", {}).get("calls", 0) == served(
        proposer_srv
    )


def test_an_unpriced_lm_a_metric_holds_refuses_a_cost_budget_before_any_call(server_factory, tmp_path):
    teacher_srv, judge_srv = server_factory(), server_factory()
    unpriced = dspy.LM("openai/no-such-priced-judge", api_base=judge_srv.api_base, api_key="unused")
    cfg = config(teacher_srv, tmp_path, **{"optimize.max_cost_usd": 1.0})
    teacher = user_lm(teacher_srv)
    mipro = dspy.MIPROv2(
        metric=make_metric(cfg, judge=unpriced), auto="light", prompt_model=teacher, task_model=teacher, num_threads=1
    )
    with pytest.raises(ConfigError, match=r"'openai/no-such-priced-judge' \(MIPROv2.metric.lm, counted as judge\)"):
        refed_dspy.optimize(cfg, optimizer=mipro, program=RespondAndImprove(improve=False), trainset=examples())
    assert served(teacher_srv) == served(judge_srv) == 0
    # priced in the config's [prices] table, it runs
    priced = config(
        teacher_srv,
        tmp_path / "priced",
        **{
            "optimize.max_cost_usd": 1.0,
            'prices."openai/no-such-priced-judge".input_usd_per_mtok': 1.0,
            'prices."openai/no-such-priced-judge".output_usd_per_mtok': 2.0,
        },
    )
    result = refed_dspy.optimize(
        priced,
        optimizer="bootstrap",
        program=RespondAndImprove(improve=False),
        trainset=examples(),
        metric=make_metric(priced, judge=unpriced),
    )
    judge_part = result.usage["by_role"]["judge"]
    assert judge_part["calls"] == served(judge_srv) > 0
    tokens = [e for e in read_log(judge_srv.cfg.log_path) if e.get("status") == 200]
    expected = sum(e["prompt_tokens"] * 1.0 + e["completion_tokens"] * 2.0 for e in tokens) / 1e6
    assert judge_part["cost_usd"] == pytest.approx(expected, rel=1e-6)


def _list_price(srv, input_usd: float, output_usd: float) -> float:
    ok = [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]
    return sum(e["prompt_tokens"] * input_usd + e["completion_tokens"] * output_usd for e in ok) / 1e6


def test_a_user_lm_is_priced_by_its_own_model_not_by_the_section_for_its_role(server_factory, tmp_path):
    """The issue's case: a base config pricing its local model at 0 priced the user's gpt-4o at 0, 29x past the
    budget with no stop. gpt-4o's list price in LiteLLM's map: $2.50 in, $10 out per 1M tokens (no cached tokens
    here: the loopback prompts are below its prefix-cache minimum)."""
    srv = server_factory()
    free = {
        "teacher.model": "'openai/local-model'",
        "teacher.input_usd_per_mtok": 0,
        "teacher.output_usd_per_mtok": 0,
        "seeds.limit": 4,
    }
    gpt4o = dspy.LM("openai/gpt-4o", api_base=srv.api_base, api_key="unused", num_retries=0, max_tokens=2000)
    summary = refed_dspy.synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 6, **free)), teacher=gpt4o)
    assert summary["usage"]["calls"] == served(srv)
    assert summary["usage"]["cost_usd"] == pytest.approx(_list_price(srv, 2.5, 10.0), rel=1e-6)
    assert summary["usage"]["cost_usd"] > 0
    recorded = (tmp_path / "run" / "config.toml").read_text()
    assert 'model = "openai/gpt-4o"' in recorded and "input_usd_per_mtok" not in recorded.split("[judge]")[0]
    # a cost budget below what the run needs stops it at the budget, priced the same way
    srv2 = server_factory()
    gpt4o_2 = dspy.LM("openai/gpt-4o", api_base=srv2.api_base, api_key="unused", num_retries=0, max_tokens=500)
    stopped = refed_dspy.synthesize(
        load_config(None, run_overrides(srv2, tmp_path / "run2", 40, **free, **{"synthesis.max_cost_usd": 0.1})),
        teacher=gpt4o_2,
    )
    assert stopped["status"] == "budget"
    assert stopped["usage"]["cost_usd"] == pytest.approx(_list_price(srv2, 2.5, 10.0), rel=1e-6)
    assert 0 < stopped["usage"]["cost_usd"] <= 0.1
    # in an optimization too
    srv3 = server_factory()
    gpt4o_3 = dspy.LM("openai/gpt-4o", api_base=srv3.api_base, api_key="unused", num_retries=0, max_tokens=2000)
    result = refed_dspy.optimize(
        config(srv3, tmp_path / "opt3", **{k: v for k, v in free.items() if k != "seeds.limit"}),
        teacher=gpt4o_3,
        optimizer="bootstrap",
        program=RespondAndImprove(improve=False),
        trainset=examples(),
        metric=lambda gold, pred, trace=None: 0.5,
    )
    assert result.usage["cost_usd"] == pytest.approx(_list_price(srv3, 2.5, 10.0), rel=1e-6) and served(srv3) > 0


def test_a_user_lm_is_recorded_and_logged_with_its_own_settings(server_factory, tmp_path, monkeypatch):
    """A user's LM with no extra settings over a config whose [teacher] has `extra`: the recorded block and the
    logged program carry the LM's settings, not the section's, and the logged program calls the endpoint with exactly
    them."""
    import mlflow

    from refed_dspy.tracking.mlflow_runs import keep_active_model

    srv = server_factory()
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = config(
        srv,
        tmp_path,
        **{
            "teacher.extra": "{frequency_penalty = 0.5}",
            "tracking.enabled": "true",
            "tracking.mlflow_uri": f"'{uri}'",
        },
    )
    teacher = dspy.LM("openai/teacher-b", api_base=srv.api_base, api_key="unused", temperature=0.7)
    result = refed_dspy.optimize(
        cfg,
        teacher=teacher,
        optimizer="bootstrap",
        program=RespondAndImprove(improve=False),
        trainset=examples(),
        metric=lambda gold, pred, trace=None: 0.5,
    )
    during = [e["settings"] for e in read_log(srv.cfg.log_path)]
    assert during and all("frequency_penalty" not in s and s.get("temperature") == 0.7 for s in during)
    state = json.loads((tmp_path / "opt" / "program.json").read_text())
    recorded = (tmp_path / "opt" / "config.toml").read_text()
    assert "frequency_penalty" not in json.dumps(state) and "frequency_penalty" not in recorded
    assert 'model = "openai/teacher-b"' in recorded and "temperature = 0.7" in recorded
    before = len(read_log(srv.cfg.log_path))
    mlflow.set_tracking_uri(uri)
    with keep_active_model():
        loaded = mlflow.dspy.load_model(result.model_uri)
    loaded(
        reference_instruction="Ref?",
        reference_response="Ref.",
        instruction="Explain tides.",
        feedback="Be concrete.",
    )
    after = [e["settings"] for e in read_log(srv.cfg.log_path)[before:]]
    assert after and all("frequency_penalty" not in s and s.get("temperature") == 0.7 for s in after)


def test_a_gepa_compile_stopped_by_its_budget_runs_again_when_the_budget_allows(server_factory, tmp_path):
    """GEPA keeps its state to resume a killed compile. Stopped by the budget, that state held the evaluations the
    budget refused, scored as failures: the same command with a larger budget made 0 new calls ("GEPA Optimization:
    0/754 rollouts") and kept the baseline. Now the state goes with the stop, and the second run optimizes for real
    (the calls the first paid are answered from the cache)."""
    teacher_srv, judge_srv = server_factory(), server_factory()
    sets = {"optimize.optimizer": "'gepa'", "optimize.max_metric_calls": 40, "optimize.auto": "'light'"}
    stopped_cfg = config(teacher_srv, tmp_path, **sets, **{"optimize.max_calls": 30})
    judge = user_lm(judge_srv)
    with pytest.raises(OptimizationStopped, match=r"LM-call budget of 30 is reached .*set by optimize.max_calls") as e:
        refed_dspy.optimize(stopped_cfg, judge=judge, program=RespondAndImprove(improve=False), trainset=examples())
    assert "raise optimize.max_calls" in str(e.value)
    assert not list((tmp_path / "opt" / "state").glob("gepa-*"))  # no saved state that would resume as spent
    first = served(teacher_srv) + served(judge_srv)
    assert first == e.value.usage["calls"] <= 30
    summary = json.loads((tmp_path / "opt" / "optimize_summary.json").read_text())
    assert summary["status"] == "budget" and summary["usage"]["calls"] == first
    # its reason says what was spent in all, not only what had been when the budget first refused (an attacker's
    # experiment cell said $0.1505 spent where its usage, and the server, said $0.2679)
    assert f"(the command has spent {first} LM calls" in summary["reason"], summary["reason"]
    result = refed_dspy.optimize(
        config(teacher_srv, tmp_path, **sets),
        judge=judge,
        program=RespondAndImprove(improve=False),
        trainset=examples(),
    )
    this = result.extra["this_invocation"]
    assert served(teacher_srv) + served(judge_srv) - first == this["calls"] > 30
    assert result.usage["calls"] == first + this["calls"]  # the command's whole spend: both invocations
    assert this["cached_calls"] >= first - 1  # what the stopped run paid is not paid again
    assert len(result.steps) > 1


def test_an_lm_pinned_to_a_predictor_is_counted_and_priced_in_a_synthesis(server_factory, tmp_path):
    """The synthesis engine collects each piece of work's calls itself; an LM pinned to one predictor of the program
    (another model, on another server) is called by no LM the run holds: its calls are counted with the work that
    makes them and priced at its own model's price."""
    from refed_dspy.programs import ReferenceSynthesis, RespondAndImprove

    teacher_srv, pinned_srv = server_factory(), server_factory()
    program = ReferenceSynthesis(respond=RespondAndImprove())
    pinned = dspy.LM("openai/gpt-4o", api_base=pinned_srv.api_base, api_key="unused", num_retries=0, max_tokens=2000)
    for name, predictor in program.named_predictors():
        if name.endswith("generate"):
            predictor.lm = pinned
    cfg = load_config(None, run_overrides(teacher_srv, tmp_path / "run", 6, **{"seeds.limit": 4}))
    summary = refed_dspy.synthesize(cfg, program=program)
    assert summary["samples"] == 6 and served(pinned_srv) > 0
    usage = summary["usage"]
    assert usage["calls"] == served(teacher_srv) + served(pinned_srv)
    assert usage["by_stage"]["generate"]["calls"] == served(pinned_srv)
    expected = _list_price(teacher_srv, 0.15, 0.60) + _list_price(pinned_srv, 2.5, 10.0)  # gpt-4o-mini, gpt-4o
    assert usage["cost_usd"] == pytest.approx(expected, rel=1e-6)
