"""An optimizer cannot win by copying: the judge metric of every target scores a prediction that copies its example's
reference 0, with feedback naming the copy, before any judge call is paid (the loopback server's count stays where it
was); a prediction that does not copy is judged; a method that rewrites its reference is not checked; and an
experiment's scoring of its test examples, which uses the same metric, does the same."""

from types import SimpleNamespace

import dspy
import pytest
from conftest import run_overrides

from refed_dspy.config import load_config
from refed_dspy.experiments.cell import score
from refed_dspy.experiments.config import baseline_key
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.ledger.spend import Spend
from refed_dspy.optimizers import make_metric
from refed_dspy.optimizers.metrics import Score
from refed_dspy.store.seeds import read_references

INPUTS = ("reference_instruction", "reference_response", "instruction", "feedback")
REF = read_references()[0][0]
NEW = "Describe how a bicycle's gears make climbing a hill easier, for someone who has just started cycling."
ANSWER = (
    "Lower gears turn each push of the pedals into a smaller turn of the back wheel, so every stroke needs less force "
    "while you move more slowly. On a hill that trade is welcome: shift down before the slope gets steep and keep "
    "your legs turning at a steady, comfortable pace."
)


def config(srv, tmp_path, *more: str):
    return load_config(
        None,
        run_overrides(srv, tmp_path / "run", 4, **{"judge.api_base": f"'{srv.api_base}'", "judge.api_key_env": "''"})
        + list(more),
    )


def example(instruction: str = NEW) -> dspy.Example:
    return dspy.Example(
        reference_instruction=REF.instruction,
        reference_response=REF.response,
        instruction=instruction,
        feedback="Be concrete.",
    ).with_inputs(*INPUTS)


def test_a_response_that_copies_its_reference_fails_unjudged_with_feedback_naming_the_copy(server_factory, tmp_path):
    srv = server_factory()
    metric = make_metric(config(srv, tmp_path), "respond")
    copy = dspy.Prediction(response=ANSWER, improved_response=REF.response)
    before = srv.state.count
    assert metric(example(), copy) == 0.0
    traced = metric(example(), copy, trace=[])
    assert isinstance(traced, Score) and float(traced) == 0.0 and not traced
    gepa = metric(example(), copy, None, "respond.improve", None)
    assert gepa.score == 0.0
    assert gepa.feedback.startswith(
        "Scored 0 without judging: the response copies its reference's response: ROUGE-L 1.00 >= 0.8."
    )
    assert srv.state.count == before  # no judge call was made
    assert metric.failure_summary() | {"by_reason": None} == {
        "calls": 3,
        "failed": 0,
        "by_reason": None,
        "last": None,
        "copies": 3,
    }
    # the same prediction with a response of its own is judged: the judge is reachable, so the count above means it
    new = dspy.Prediction(response=ANSWER, improved_response=ANSWER + " Practise on gentle slopes first.")
    assert metric(example(), new) > 0 and srv.state.count > before
    # a draft that copies under an improved response that does not is not a copy: the final response counts
    judged = srv.state.count
    metric(example(), dspy.Prediction(response=REF.response, improved_response=ANSWER))
    assert srv.state.count > judged and metric.copies == 3


def test_unset_or_a_rewriting_method_judges_a_copy(server_factory, tmp_path):
    srv = server_factory()
    copy = dspy.Prediction(response=ANSWER, improved_response=REF.response)
    for i, more in enumerate((["quality.copy_threshold=none"], ["synthesis.method='reflection'"])):
        metric = make_metric(config(srv, tmp_path, *more), "respond")
        before = srv.state.count
        metric(example(f"{NEW} ({i})"), copy)  # another instruction each time: the judge's cache does not answer
        assert srv.state.count > before and metric.copies == 0, more


def test_the_instructions_and_pipeline_targets_fail_a_copy_unjudged(server_factory, tmp_path):
    srv = server_factory()
    cfg = config(srv, tmp_path)
    gold = dspy.Example(reference=REF, reference_id=REF.id).with_inputs("reference")
    edited = REF.instruction.replace(REF.instruction.split()[-1], "today.")
    proposals = dspy.Prediction(
        features=[("subject_areas", "x")], instructions=[("subject_areas", NEW), ("subject_areas", edited)]
    )
    before = srv.state.count
    out = make_metric(cfg, "instructions")(gold, proposals, None, "synthesizer", None)
    assert out.score == 0.0 and "instruction copies its reference's instruction: ROUGE-L" in out.feedback
    samples = [
        dspy.Example(instruction=NEW, response=ANSWER, improved_response=ANSWER),
        dspy.Example(instruction=NEW + " Keep it short.", response=ANSWER, improved_response=REF.response),
    ]
    out = make_metric(cfg, "pipeline")(gold, dspy.Prediction(samples=samples), None, "respond", None)
    assert out.score == 0.0 and "response copies its reference's response" in out.feedback
    assert srv.state.count == before


class Copier(dspy.Module):
    """A program that answers with the reference's response (no LM call of its own)."""

    def forward(self, reference_instruction, reference_response, instruction, feedback=None):
        return dspy.Prediction(response=ANSWER, improved_response=reference_response)


class Writer(Copier):
    def forward(self, reference_instruction, reference_response, instruction, feedback=None):
        return dspy.Prediction(response=ANSWER, improved_response=ANSWER + " Practise on gentle slopes first.")


@pytest.mark.parametrize("program,copies", [(Copier(), True), (Writer(), False)])
def test_an_experiments_test_scoring_fails_a_copy_unjudged(server_factory, tmp_path, program, copies):
    srv = server_factory()
    cfg = config(srv, tmp_path, "optimize.num_threads=1")
    plan = SimpleNamespace(
        spend=Spend(tmp_path / "spent.json", CallBudget(None, None)), teacher=None, judge=None, out=tmp_path
    )
    scored = score(plan, cfg, program, [example(), example()], "k", "test:baseline")
    if copies:
        assert scored["mean"] == 0.0 and set(scored["scores"].values()) == {0.0}
        assert scored["usage"]["calls"] == 0 and srv.state.count == 0 and scored["judge_failures"] == 0
    else:
        assert scored["mean"] > 0 and scored["usage"]["calls"] > 0 and srv.state.count > 0


def test_a_baseline_scored_with_another_copy_threshold_is_another_baseline(server_factory, tmp_path):
    srv = server_factory()
    keys = {baseline_key(config(srv, tmp_path, *more)) for more in ([], ["quality.copy_threshold=0.9"])}
    keys.add(baseline_key(config(srv, tmp_path, "quality.copy_threshold=none")))
    assert len(keys) == 3
