"""`refed_dspy.optimize` from Python: a user's program, examples, metric and teleprompter; the rules that decide
what is saved (a metric failing on most calls saves nothing; a worse program keeps the baseline); the public
surface; and the call inside a running event loop."""

import asyncio
import inspect
import json

import dspy
import pytest
from conftest import run_overrides
from dspy.teleprompt import Teleprompter
from loopback_server import read_log

import refed_dspy
from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError
from refed_dspy.optimizers import CountingMetric, JudgeMetric, OptimizationStopped, make_metric
from refed_dspy.programs import RespondAndImprove

INPUTS = ("reference_instruction", "reference_response", "instruction", "feedback")
TOPICS = ["tides", "rainbows", "volcanoes", "eclipses", "glaciers", "earthquakes", "auroras", "monsoons"]


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


def cfg(srv, tmp_path, **extra):
    # the judge points at a closed port: a test that passes its own metric must never reach it
    over = run_overrides(
        srv,
        tmp_path / "run",
        4,
        **{
            "judge.api_base": "'http://127.0.0.1:9/v1'",
            "judge.api_key_env": "''",
            "optimize.out": f"'{tmp_path / 'opt'}'",
            "optimize.num_threads": 1,
            **extra,
        },
    )
    return load_config(None, over)


def length_metric(gold, pred, trace=None):
    score = min(1.0, len(pred.response or "") / 200)
    return score >= 0.5 if trace is not None else score


def test_bring_your_own_program_examples_metric_and_teleprompter(server_factory, tmp_path):
    srv = server_factory()
    tp = dspy.BootstrapFewShot(metric=length_metric, max_bootstrapped_demos=1, max_labeled_demos=0)
    result = refed_dspy.optimize(
        cfg(srv, tmp_path),
        program=RespondAndImprove(improve=False),
        trainset=examples(),
        metric=length_metric,
        optimizer=tp,
    )
    assert result.optimizer == "BootstrapFewShot" and result.n_train + result.n_val == 8 and result.n_val >= 1
    assert isinstance(result.program, RespondAndImprove) and result.program.improve is None
    summary = json.loads((tmp_path / "opt" / "optimize_summary.json").read_text())
    assert summary["examples_run"] is None and summary["metric_failures"]["failed"] == 0
    assert summary["usage"]["by_role"].keys() == {"teacher"}  # no judge call was made
    assert not (tmp_path / "opt" / "examples").exists()  # no examples were synthesized
    assert summary["usage"]["calls"] == len(read_log(srv.cfg.log_path))
    state = json.loads((tmp_path / "opt" / "program.json").read_text())
    assert state["refed"]["optimizer"] == "BootstrapFewShot" and state["refed"]["kept"] in ("compiled", "baseline")
    # the same optimizer by name, and the metric factories from a config
    again = refed_dspy.optimize(
        cfg(srv, tmp_path, **{"optimize.out": f"'{tmp_path / 'opt2'}'"}),
        program=RespondAndImprove(improve=False),
        trainset=examples(),
        metric=length_metric,
        optimizer="bootstrap",
    )
    assert again.optimizer == "bootstrap"
    metric = make_metric(cfg(srv, tmp_path))
    assert isinstance(metric, JudgeMetric) and metric.win_weight == 0.3
    assert type(make_metric(cfg(srv, tmp_path), target="pipeline")).__name__ == "PipelineMetric"
    assert (
        type(make_metric(cfg(srv, tmp_path, **{"optimize.target": "'instructions'"}))).__name__ == "InstructionMetric"
    )
    with pytest.raises(ConfigError, match="'everything' is not one of respond, instructions, pipeline"):
        make_metric(cfg(srv, tmp_path), target="everything")


def test_bad_arguments_are_refused_before_any_call(server_factory, tmp_path):
    srv = server_factory()
    c = cfg(srv, tmp_path)
    cases = [
        ({"optimizer": "sgd"}, "is not one of"),
        ({"optimizer": object()}, "has no compile method"),
        ({"program": "program.json"}, "takes a DSPy module"),
        ({"metric": 0.5}, "takes a callable"),
        ({"trainset": ["not an example"]}, "list of dspy.Example"),
        ({"on_mismatch": "keep"}, "on_mismatch='keep'"),
    ]
    for kwargs, message in cases:
        args = {"trainset": examples(), "program": RespondAndImprove(improve=False), "metric": length_metric, **kwargs}
        with pytest.raises(ConfigError, match=message):
            refed_dspy.optimize(c, **args)
    assert read_log(srv.cfg.log_path) == []


def test_a_metric_failing_on_most_calls_saves_nothing(server_factory, tmp_path):
    srv = server_factory()
    seen = []

    def flaky(gold, pred, trace=None):
        seen.append(1)
        if len(seen) % 3:  # 2 calls of every 3 raise
            raise ValueError("the scorer broke")
        return 1.0

    with pytest.raises(
        OptimizationStopped, match=r"the metric failed on \d+ of its \d+ calls.*ValueError: the scorer broke"
    ):
        refed_dspy.optimize(
            cfg(srv, tmp_path),
            program=RespondAndImprove(improve=False),
            trainset=examples(12),  # validation: 3 examples (the share of 4 references nearest a third), 1 scored
            metric=flaky,
            optimizer="bootstrap",
        )
    assert not (tmp_path / "opt" / "program.json").exists()
    counted = CountingMetric(flaky)
    assert [counted(None, None) for _ in range(3)].count(0.0) == 2 and counted.failure_summary()["failed"] == 2


def test_a_program_that_got_worse_keeps_the_baseline(server_factory, tmp_path):
    srv = server_factory()
    n_val = []

    def souring(gold, pred, trace=None):
        # the first validation pass (the baseline) scores 1; everything after it scores 0.2
        if trace is not None:
            return True
        n_val.append(1)
        return 1.0 if len(n_val) <= baseline_calls[0] else 0.2

    baseline_calls = [0]
    train_val = examples()
    from refed_dspy.optimizers.examples import _given_sets

    _, val = _given_sets(train_val, None, cfg(srv, tmp_path).optimize)
    baseline_calls[0] = len(val)
    start = RespondAndImprove(improve=False)
    result = refed_dspy.optimize(
        cfg(srv, tmp_path), program=start, trainset=train_val, metric=souring, optimizer="bootstrap"
    )
    assert result.score_before == 1.0 and result.score_after == 0.2
    assert result.program is start and result.kept == "baseline"
    out = tmp_path / "opt"
    assert json.loads((out / "program.json").read_text())["refed"]["kept"] == "baseline"
    candidate = json.loads((out / "program.candidate.json").read_text())
    assert candidate["generate"]["demos"]  # the compiled program is kept beside, with its demos
    assert json.loads((out / "optimize_summary.json").read_text())["candidate_program"] == str(
        out / "program.candidate.json"
    )


class RewritesNothing(Teleprompter):
    """Gives the program back with every instruction set to what it was, as GEPA may: each signature is rebuilt (DSPy
    names it StringSignature) and asks exactly what it asked before."""

    def compile(self, student, *, trainset, valset=None, **kwargs):
        program = student.deepcopy()
        for predictor in program.predictors():
            predictor.signature = predictor.signature.with_instructions(predictor.signature.instructions)
        return program


def test_a_program_given_back_unchanged_is_the_baseline_and_scores_as_it(server_factory, tmp_path):
    """Its validation score after equals the one before (the same requests, answered from the run's cache), and the
    result is the program we started from: an experiment scores it as its baseline, a difference of exactly 0."""
    srv = server_factory()
    start = RespondAndImprove()
    result = refed_dspy.optimize(
        cfg(srv, tmp_path), program=start, trainset=examples(), metric=length_metric, optimizer=RewritesNothing()
    )
    assert result.program is start and result.kept == "baseline"
    assert result.score_after == result.score_before
    # every request of the scoring after was one of the scoring before: the server saw each body once
    bodies = [e["sha"] for e in read_log(srv.cfg.log_path) if e.get("status") == 200]
    assert bodies and len(bodies) == len(set(bodies))


def test_a_program_with_a_forward_of_its_own_is_not_the_baseline():
    """DSPy's KNNFewShot gives the program back with its predictors as they were and a new forward: not unchanged."""
    from refed_dspy.optimizers.run import same_prompts

    start, loaded = RespondAndImprove(), RespondAndImprove()
    loaded.load_state(start.dump_state())
    assert same_prompts(start, loaded)
    knn = start.deepcopy()
    knn.forward = lambda **inputs: start(**inputs)
    assert not same_prompts(start, knn) and not same_prompts(start, RespondAndImprove(improve=False))


def test_public_surface():
    assert {"synthesize", "optimize", "compare", "build_lm", "make_metric"} <= set(dir(refed_dspy))
    params = inspect.signature(refed_dspy.synthesize).parameters
    assert {"teacher", "program", "respond", "references", "on_mismatch"} <= params.keys()
    params = inspect.signature(refed_dspy.optimize).parameters
    assert {"program", "trainset", "valset", "metric", "optimizer"} <= params.keys()
    import refed_dspy.optimizers as opt

    assert {"make_metric", "JudgeMetric", "compile_program", "load_program", "save_program"} <= set(opt.__all__)


def test_optimize_inside_a_running_event_loop(server_factory, tmp_path):
    srv = server_factory()

    async def cell():
        return refed_dspy.optimize(
            cfg(srv, tmp_path),
            program=RespondAndImprove(improve=False),
            trainset=examples(),
            metric=length_metric,
            optimizer="bootstrap",
        )

    assert asyncio.run(cell()).program_path.exists()


def test_the_python_guide_runs(server_factory, tmp_path):
    """The "Compile and run from Python" guide's example (docs/guides/python.md), as written, against loopback
    servers standing in for configs/local.toml's server: it exits 0 and leaves what it says it makes."""
    from doc_examples import checked_block, run, workspace

    block = checked_block("tests/optimizers/test_optimize_python.py::test_the_python_guide_runs")
    assert 'refed_dspy.load_config("configs/local.toml", [' in block.code  # the config every user has
    srv, judge = server_factory(), server_factory()
    result = run(block, tmp_path, workspace(tmp_path, srv.api_base, judge.api_base))
    assert result.returncode == 0, f"{block} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    samples = [json.loads(x) for x in (tmp_path / "runs" / "guide" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and samples[0]["meta"]["program"].startswith("python:")
    assert (tmp_path / "runs" / "guide-pipeline.json").exists()
    # 16 training and 8 validation examples, and the MIPROv2 case ran with its own LMs counted
    opt = json.loads((tmp_path / "runs" / "guide-opt" / "optimize_summary.json").read_text())
    assert (opt["n_train"], opt["n_val"]) == (16, 8)
    mipro = json.loads((tmp_path / "runs" / "guide-mipro" / "optimize_summary.json").read_text())
    assert mipro["optimizer"] == "MIPROv2" and mipro["usage"]["calls"] > 0
    assert mipro["status"] == "complete"
    # every request the teacher's server answered is on a ledger: the two optimizations' and the synthesis's (MIPROv2's
    # proposer calls copies of the build_lm teacher it holds; they were on none), and no warning says otherwise
    synthesis = json.loads((tmp_path / "runs" / "guide" / "summary.json").read_text())
    answered = [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]
    usages = [opt["usage"], mipro["usage"], synthesis["usage"]]
    assert sum(u["calls"] for u in usages) == len(answered)
    assert sum(u["prompt_tokens"] for u in usages) == sum(e["prompt_tokens"] for e in answered)
    assert "its calls are counted" not in result.stderr
    state = json.loads((tmp_path / "runs" / "guide-pipeline.json").read_text())
    assert {"collect.describe", "synthesizer.synthesize", "respond.generate", "respond.improve"} <= state.keys()


class Broken(dspy.Module):
    def __init__(self):
        super().__init__()
        self.generate = RespondAndImprove(improve=False).generate

    def forward(self, reference_instruction, reference_response, instruction, feedback=None):
        raise RuntimeError("reply cut off at max_tokens")


def test_a_program_that_fails_on_every_example_saves_nothing(server_factory, tmp_path):
    srv = server_factory()
    with pytest.raises(OptimizationStopped, match=r"the program failed on \d+ of \d+ validation examples.*cut off"):
        refed_dspy.optimize(
            cfg(srv, tmp_path), program=Broken(), trainset=examples(), metric=length_metric, optimizer="bootstrap"
        )
    assert not (tmp_path / "opt" / "program.json").exists()


def test_the_lms_of_a_user_teleprompter_are_counted_and_given_back(server_factory, tmp_path):
    """MIPROv2 built by the user with its own prompt and task models: the task model is the teacher handed to
    optimize, the prompt model another server. Every call either makes is counted, by the server's own count, and
    the teleprompter holds the user's LMs again afterwards."""
    srv, proposer_srv = server_factory(), server_factory()
    mine = dspy.LM("openai/gpt-4o-mini", api_base=srv.api_base, api_key="unused", num_retries=0)
    proposer = dspy.LM("openai/gpt-4o-mini", api_base=proposer_srv.api_base, api_key="unused", num_retries=0)
    tp = dspy.MIPROv2(metric=length_metric, auto="light", prompt_model=proposer, task_model=mine, num_threads=1)
    result = refed_dspy.optimize(
        cfg(srv, tmp_path),
        teacher=mine,
        program=RespondAndImprove(improve=False),
        trainset=examples(8),
        metric=length_metric,
        optimizer=tp,
    )
    by_role = result.usage["by_role"]
    assert by_role["optimizer"]["calls"] == len(read_log(proposer_srv.cfg.log_path)) > 0
    assert by_role["teacher"]["calls"] == len(read_log(srv.cfg.log_path)) > 0
    assert tp.prompt_model is proposer and tp.task_model is mine
    # its trials' scores are read as those of optimizer="miprov2": on the metric's 0-1 scale, like the scores
    assert result.steps and all(0 <= s <= 1 for s in result.steps)


def test_a_teleprompter_gets_its_lms_back_when_optimize_fails_and_an_unpriced_one_is_refused(server_factory, tmp_path):
    srv, proposer_srv = server_factory(), server_factory()
    proposer = dspy.LM("openai/gpt-4o-mini", api_base=proposer_srv.api_base, api_key="unused", num_retries=0)
    teacher = refed_dspy.build_lm(cfg(srv, tmp_path).teacher, "teacher")
    tp = dspy.MIPROv2(metric=length_metric, auto="light", prompt_model=proposer, task_model=teacher, num_threads=1)
    tp.teacher_settings = {"lm": proposer}

    def broken(gold, pred, trace=None):
        raise RuntimeError("this metric always fails")

    with pytest.raises(OptimizationStopped):
        refed_dspy.optimize(
            cfg(srv, tmp_path),
            teacher=teacher,
            program=RespondAndImprove(improve=False),
            trainset=examples(8),
            metric=broken,
            optimizer=tp,
        )
    assert tp.prompt_model is proposer and tp.task_model is teacher and tp.teacher_settings["lm"] is proposer
    assert teacher.budget is None and teacher.role == "teacher"  # the user's own LM was never the one budgeted
    # a cost budget and an LM with no price in the teleprompter: refused before any call
    unpriced = dspy.LM("openai/no-such-priced-model", api_base=proposer_srv.api_base, api_key="unused")
    tp.prompt_model = unpriced
    before = len(read_log(srv.cfg.log_path)) + len(read_log(proposer_srv.cfg.log_path))
    with pytest.raises(ConfigError, match="needs a price for the LM 'openai/no-such-priced-model'"):
        refed_dspy.optimize(
            cfg(srv, tmp_path, **{"optimize.max_cost_usd": 1.0, "teacher.model": "'openai/gpt-4o-mini'"}),
            program=RespondAndImprove(improve=False),
            trainset=examples(8),
            metric=length_metric,
            optimizer=tp,
        )
    assert len(read_log(srv.cfg.log_path)) + len(read_log(proposer_srv.cfg.log_path)) == before


def test_a_judge_with_a_metric_of_your_own_is_not_called(server_factory, tmp_path):
    srv, judge_srv = server_factory(), server_factory()
    judge = dspy.LM("openai/gpt-4o-mini", api_base=judge_srv.api_base, api_key="unused")
    result = refed_dspy.optimize(
        cfg(srv, tmp_path),
        judge=judge,
        program=RespondAndImprove(improve=False),
        trainset=examples(),
        metric=length_metric,
        optimizer="bootstrap",
    )
    assert result.usage["by_role"].keys() == {"teacher"} and read_log(judge_srv.cfg.log_path) == []
