"""optimize.target = instructions | pipeline: their metrics, and a pipeline compiled with GEPA and with MIPROv2
driving a synthesis run whose records carry the compiled pipeline's content hash."""

import json

import dspy
import pytest
from cli_helpers import STAGE_OF, lines, sets
from cli_helpers import run_refed as refed
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.methods import METHODS
from refed_dspy.optimizers.metrics import InstructionMetric, PipelineMetric, diversity, novelty
from refed_dspy.optimizers.run import optimize
from refed_dspy.programs.saved import load_program
from refed_dspy.store.records import Reference
from refed_dspy.synthesis.program import program_hash

REF = Reference.make("Explain how vaccines train the immune system.", "They show it a harmless look-alike...", "t")


def target_overrides(srv, tmp_path, target, optimizer, **extra):
    return run_overrides(srv, tmp_path / "run", 10) + [
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        f"optimize.target='{target}'",
        f"optimize.optimizer='{optimizer}'",
        "optimize.n_train=3",
        "optimize.n_val=2",
        "optimize.num_threads=2",
        "optimize.instructions_per_feature=1",
        "seeds.limit=5",
        "judging.criteria=['helpfulness','accuracy']",
        *[f"{k}={v}" for k, v in extra.items()],
    ]


def test_novelty_and_diversity():
    assert novelty("Explain how vaccines train the immune system.", [REF.instruction]) == (0.0, REF.instruction)
    assert novelty("Write a haiku about tides.", [REF.instruction])[0] == 1.0
    assert diversity(["a b c", "a b c"]) == 0.0 and diversity(["a b c", "x y z"]) == 1.0 and diversity(["one"]) == 1.0


def rating(n):
    return [
        {"rationale": "Fine.", "clear": 8, "self_contained": 8, "answerable": 8, "complexity": 8, "grounded": 8}
    ] * n


def test_the_instruction_metric_cannot_be_won_by_copying():
    gold = dspy.Example(reference=REF, reference_id=REF.id).with_inputs("reference")
    copied = dspy.Prediction(
        features=[("subject_areas", "immunology")], instructions=[("subject_areas", REF.instruction)]
    )
    novel = dspy.Prediction(
        features=[("subject_areas", "immunology")],
        instructions=[("subject_areas", "Why do some vaccines need booster shots?")],
    )
    # novelty alone (the copy check off): the judge rates both alike, and the copy loses on novelty
    metric = InstructionMetric(dspy.utils.DummyLM(rating(5)), ["helpfulness"], novelty_weight=0.3, copy_threshold=None)
    low, high = metric.judge(gold, copied), metric.judge(gold, novel)
    assert low["quality"] == high["quality"] == pytest.approx(7 / 9, abs=1e-4)  # the judge rates both alike
    assert low["novelty"] == 0.0 and high["novelty"] > 0.6 and low["score"] < high["score"]
    feedback = metric(gold, copied, None, "synthesizer.synthesize", None).feedback
    assert "novelty 0.00" in feedback and "closest to" in feedback  # GEPA is told why
    # with the copy check (the default), a copied instruction scores 0 before the judge is asked (it has no answer)
    guarded = InstructionMetric(dspy.utils.DummyLM([]), ["helpfulness"])
    out = guarded(gold, copied, None, "synthesizer.synthesize", None)
    assert out.score == 0.0 and "instruction copies its reference's instruction: ROUGE-L 1.00" in out.feedback
    assert guarded.copies == 1 and guarded.failure_summary()["failed"] == 0
    # a judge whose rating breaks its contract: a counted failure scoring 0, not a crash
    bad = InstructionMetric(dspy.utils.DummyLM([{"rationale": "x", "clear": "many"}] * 4), ["helpfulness"])
    assert bad(gold, novel) == 0.0 and bad.failure_summary()["failed"] == 1


def test_the_pipeline_metric_weighs_value_and_diversity():
    gold = dspy.Example(reference=REF, reference_id=REF.id).with_inputs("reference")
    point = [{"rationale": "Good.", "helpfulness": 10}]
    metric = PipelineMetric(dspy.utils.DummyLM(point * 4), ["helpfulness"], win_weight=0.0, diversity_weight=0.5)
    same = dspy.Prediction(
        samples=[dspy.Prediction(instruction="Explain tides.", response="r", improved_response=None)] * 2
    )
    apart = dspy.Prediction(
        samples=[
            dspy.Prediction(instruction="Explain tides.", response="r", improved_response=None),
            dspy.Prediction(instruction="Write a poem on rain.", response="r", improved_response=None),
        ]
    )
    assert metric(gold, same) == pytest.approx(0.5) and metric(gold, apart) == pytest.approx(1.0)
    assert metric(gold, dspy.Prediction(samples=[])) == 0.0


@pytest.mark.parametrize(
    "optimizer,extra",
    [
        ("gepa", {"optimize.max_metric_calls": 30}),
        ("miprov2", {"optimize.num_candidates": 2, "optimize.num_trials": 3, "optimize.max_demos": 1}),
    ],
)
def test_a_compiled_pipeline_drives_a_synthesis_run(server_factory, tmp_path, optimizer, extra):
    srv = server_factory(log_prompts=True)
    cfg = load_config(None, target_overrides(srv, tmp_path, "pipeline", optimizer, **extra))
    if optimizer == "miprov2":  # without a preset: num_candidates and num_trials decide (no --set spelling for unset)
        cfg = cfg.model_copy(update={"optimize": cfg.optimize.model_copy(update={"auto": None})})
    result = optimize(cfg)
    state = json.loads(result.program_path.read_text())
    assert state["refed"]["target"] == "pipeline" and result.extra["target"] == "pipeline"
    predictors = {k for k, v in state.items() if isinstance(v, dict) and "signature" in v}
    assert predictors == {
        "collect.describe",
        "collect.critique",
        "synthesizer.synthesize",
        "respond.generate",
        "respond.improve",
    }
    compiled, _ = load_program(str(result.program_path), METHODS.get("refed"))
    assert program_hash(compiled) == program_hash(result.program)
    # the compiled pipeline drives every stage of a run: each request carries its predictor's compiled instructions
    syn = server_factory(log_prompts=True)
    run = tmp_path / "syn"
    code, _, err = refed(
        "synthesize",
        "--program",
        str(result.program_path),
        *sets(run_overrides(syn, run, 4, **{"synthesis.instructions_per_feature": 2})),
    )
    assert code == 0, err
    wanted = {name: " ".join(pred.signature.instructions.split()) for name, pred in compiled.named_predictors()}
    for entry in read_log(syn.cfg.log_path):
        name = STAGE_OF[tuple(entry["outputs"])]
        assert wanted[name] in " ".join(entry["system"].split()), name
    samples = lines(run / "samples.jsonl")
    assert len(samples) == 4 and {s["meta"]["program_hash"] for s in samples} == {program_hash(compiled)}
    # the optimizer really worked on the pipeline: its proposer wrote new instructions (GEPA: its reflection, for one
    # predictor after another; MIPROv2: its grounded proposer). Which candidate won is the random stand-in judge's
    # draw; the requests above carry the winner's instructions either way.
    proposals = [
        e for e in read_log(srv.cfg.log_path) if tuple(e["outputs"]) not in STAGE_OF and "rationale" not in e["outputs"]
    ]
    assert proposals, "the optimizer proposed no instruction"


def test_the_instructions_target_tunes_describe_and_synthesize(server_factory, tmp_path, monkeypatch):
    srv = server_factory()
    monkeypatch.chdir(tmp_path)  # the sqlite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = {"tracking.enabled": "true", "tracking.mlflow_uri": f"'{uri}'"}
    result = optimize(
        load_config(
            None, target_overrides(srv, tmp_path, "instructions", "bootstrap", **{"optimize.max_demos": 1, **tracking})
        )
    )
    state = json.loads(result.program_path.read_text())
    assert {k for k, v in state.items() if isinstance(v, dict) and "signature" in v} == {
        "collect.describe",
        "synthesizer.synthesize",
    }
    summary = json.loads((result.out_dir / "optimize_summary.json").read_text())
    assert summary["target"] == "instructions" and summary["examples_run"] is None  # references are the examples
    assert summary["usage"]["by_role"]["judge"]["calls"] > 0
    assert "**Reference:**" in (result.out_dir / "before_after.md").read_text()
    # its state loads into the method's pipeline: a synthesis run uses it
    run = tmp_path / "syn"
    code, _, err = refed("synthesize", "--program", str(result.program_path), *sets(run_overrides(srv, run, 3)))
    assert code == 0, err
    assert len(lines(run / "samples.jsonl")) == 3
    # logged to MLflow, the compiled front half drives a run from its URI, and its pyfunc predicts from a reference
    syn2 = tmp_path / "syn-mlflow"
    code, _, err = refed("synthesize", "--program", result.model_uri, *sets(run_overrides(srv, syn2, 3, **tracking)))
    assert code == 0, err
    assert {s["meta"]["program"] for s in lines(syn2 / "samples.jsonl")} == {result.model_uri}
    import mlflow

    from refed_dspy.tracking.mlflow_runs import keep_active_model

    mlflow.set_tracking_uri(uri)
    with keep_active_model():
        pyfunc = mlflow.pyfunc.load_model(result.model_uri)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    out = pyfunc.predict({"reference": REF.model_dump_json()})
    assert out["instructions"] and out["features"]
    # examples_run belongs to the respond target
    code, _, err = refed(
        "optimize",
        *sets(
            target_overrides(
                srv, tmp_path, "instructions", "bootstrap", **{"optimize.examples_run": f"'{run}'", **tracking}
            )
        ),
    )
    assert code == 2 and "optimize.examples_run" in err
