"""The judge metric and BootstrapFewShot end to end on DummyLM (the first part of the optimization issue)."""

import dspy
import pytest
from dspy.utils import DummyLM

from refed_dspy.errors import ConfigError
from refed_dspy.optimizers.compile import evaluate, optimize
from refed_dspy.optimizers.examples import INPUTS
from refed_dspy.optimizers.metrics import JudgeMetric
from refed_dspy.programs import RespondAndImprove

IMPROVED = {
    "analysis": {"original_strengths": ["ok"], "improvement_opportunities": ["x"], "relevant_feedback": ["y"]},
    "implementation_strategy": {"planned_changes": ["z"], "rationale": "r"},
    "improved_response": "Improved answer.",
}


def judge_lm(score=9, verdicts=("A", "B")):
    return DummyLM(
        {
            "`[[ ## helpfulness ## ]]`": {"rationale": "good", "helpfulness": score, "accuracy": score},
            "[[ ## response_a ## ]]\nImproved": {"rationale": "first better", "verdict": verdicts[0]},
            "[[ ## response_a ## ]]\nDraft": {"rationale": "second better", "verdict": verdicts[1]},
        }
    )


def teacher_lm():
    return DummyLM({"`[[ ## analysis ## ]]`": IMPROVED, "`[[ ## response ## ]]`": {"response": "Draft answer."}})


def examples(n):
    return [
        dspy.Example(
            reference_instruction="Ref?",
            reference_response="Ref answer.",
            instruction=f"Task {i}?",
            feedback="Be concrete.",
            reference_id=f"r{i}",
        ).with_inputs(*INPUTS)
        for i in range(n)
    ]


def test_metric_values_and_trace_convention():
    pred = dspy.Prediction(response="Draft answer.", improved_response="Improved answer.")
    gold = examples(1)[0]
    metric = JudgeMetric(judge_lm(score=10), ["helpfulness", "accuracy"], threshold=0.9)
    assert metric(gold, pred) == 1.0  # (10-1)/9 = 1, improved wins both orders
    # with a trace (bootstrapping) the value is still the score, and its truth whether it passes the threshold (GEPA
    # reads the score of a traced call, BootstrapFewShot its truth)
    traced = metric(gold, pred, trace=[])
    assert bool(traced) is True and traced == 1.0
    low = JudgeMetric(judge_lm(score=1, verdicts=("B", "A")), ["helpfulness", "accuracy"])
    assert low(gold, pred) == 0.0 and bool(low(gold, pred, trace=[])) is False
    middling = JudgeMetric(judge_lm(score=7), ["helpfulness", "accuracy"], threshold=0.9)(gold, pred, trace=[])
    assert bool(middling) is False and middling == pytest.approx(0.7 * 6 / 9 + 0.3, abs=1e-4)
    assert (
        JudgeMetric(judge_lm(), ["helpfulness", "accuracy"])(gold, dspy.Prediction(response="", improved_response=""))
        == 0.0
    )
    gepa = JudgeMetric(judge_lm(score=7), ["helpfulness", "accuracy"])(gold, pred, None, "improve", None)
    assert gepa.score == pytest.approx(0.7 * 6 / 9 + 0.3, abs=1e-4) and "good" in gepa.feedback


def test_the_metric_asks_no_pairwise_judging_that_cannot_count():
    """Two calls of the judge per example are saved where the win weighs nothing, or the improved response is the draft
    (a tie that nothing could tell apart); the judgment still scores as the rubric says."""
    gold = examples(1)[0]
    for win_weight, pred, calls, score in [
        (0.3, dspy.Prediction(response="Draft answer.", improved_response="Improved answer."), 3, 0.7 * 8 / 9 + 0.3),
        (0.0, dspy.Prediction(response="Draft answer.", improved_response="Improved answer."), 1, 8 / 9),
        (0.3, dspy.Prediction(response="Draft answer.", improved_response=" Draft   answer.\n"), 1, 0.7 * 8 / 9 + 0.15),
    ]:
        lm = judge_lm(score=9)
        metric = JudgeMetric(lm, ["helpfulness", "accuracy"], win_weight=win_weight)
        assert metric(gold, pred) == pytest.approx(score, abs=1e-4) and len(lm.history) == calls


def test_dspy_s_line_for_each_example_a_budget_refused_is_recognized():
    """The optimization says its budget's stop once; DSPy's line for each example left unscored is dropped, for a
    budget that is reached and for a cost budget made blind by an LM that reports no token usage."""
    from refed_dspy.clients.calls import CallInfo
    from refed_dspy.ledger.budget import BudgetExceeded, CallBudget
    from refed_dspy.optimizers.compile import _budget_refusal

    reached = CallBudget(max_calls=1)
    reached.reserve(1, 0.0)
    blind = CallBudget(max_cost_usd=1.0)
    blind.record([CallInfo(stage="judge", model="openai/mine", tokens_unknown=True)], None, "judge")
    for budget in (reached, blind):
        with pytest.raises(BudgetExceeded) as err:
            budget.reserve(1, 0.0)
        line = f"Error for Example({{'instruction': 'Task 1?'}}) (input_keys={{'instruction'}}): {err.value}. Set x"
        assert _budget_refusal(line), line
    assert not _budget_refusal("Error for Example(...): reply cut off at max_tokens (512 completion tokens).")


def test_bootstrap_few_shot_end_to_end_on_dummy_lm():
    metric = JudgeMetric(judge_lm(score=9), ["helpfulness", "accuracy"], threshold=0.5)
    result = optimize(RespondAndImprove(), examples(4), examples(2), metric=metric, lm=teacher_lm(), max_demos=2)
    compiled = result["program"]
    assert result["score_before"] == result["score_after"] == pytest.approx(0.7 * 8 / 9 + 0.3, abs=1e-4)
    assert len(compiled.generate.demos) == 2 and len(compiled.improve.demos) == 2
    assert compiled.improve.demos[0]["improved_response"] == "Improved answer."
    assert evaluate(compiled, [], metric, teacher_lm()) == 0.0
    with pytest.raises(ConfigError, match="needs a non-empty valset"):
        optimize(RespondAndImprove(), examples(2), [], metric=metric, lm=teacher_lm(), optimizer="gepa")
    with pytest.raises(ConfigError, match="unknown optimizer"):
        optimize(RespondAndImprove(), examples(2), [], metric=metric, lm=teacher_lm(), optimizer="sgd")


def test_examples_from_a_run_split_by_reference(server_factory, tmp_path):
    from conftest import run_overrides

    from refed_dspy.config import load_config
    from refed_dspy.optimizers.examples import examples_from_run, split_examples
    from refed_dspy.store.seeds import load_references
    from refed_dspy.synthesis.api import synthesize

    srv = server_factory()
    synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 24, **{"synthesis.instructions_per_feature": 2})))
    refs = {r.id: (r.instruction, r.response) for r in load_references()}
    exs = examples_from_run(tmp_path / "run", refs)
    assert len(exs) == 24 and all(e.feedback and e.reference_instruction for e in exs)
    assert set(exs[0].inputs().keys()) == set(INPUTS)
    train, val = split_examples(exs, 100, 100, seed=1)
    assert train and val and len(train) + len(val) == 24
    assert not {e.reference_id for e in train} & {e.reference_id for e in val}
    assert split_examples(exs, 100, 100, seed=1) == (train, val)


def test_miprov2_leaves_a_traced_verdict_to_the_metric():
    """MIPROv2 is built without DSPy's metric_threshold: DSPy would compare the metric's value with it, so a user's
    metric that answers a traced call with a bool (DSPy's idiom) kept no demo at a threshold above 1 (True >= 6.2 is
    False). The verdict is the value's truth, which our Score sets at the threshold."""
    from refed_dspy.optimizers.teleprompters import OPTIMIZERS
    from refed_dspy.optimizers.teleprompters.base import CompileSettings

    def user_metric(example, pred, trace=None):
        return True if trace is not None else 7.0

    user_metric.threshold = 6.2  # what an optimization sets on the metric it wraps: the starting program's mean
    lm = DummyLM([{"response": "x"}])
    tp = OPTIMIZERS.get("miprov2").build(user_metric, CompileSettings(lm=lm, proposer_lm=lm))
    assert tp.metric_threshold is None


def test_a_teleprompter_that_refuses_its_settings_says_so_before_anything_is_paid():
    """GEPA with neither auto nor max_metric_calls: the one line comes before the starting program is scored on the
    validation examples (the teacher and the judge are not called)."""
    judge, teacher = judge_lm(score=9), teacher_lm()
    metric = JudgeMetric(judge, ["helpfulness", "accuracy"])
    with pytest.raises(ConfigError, match="GEPA needs optimize.auto or optimize.max_metric_calls"):
        optimize(RespondAndImprove(), examples(2), examples(2), metric=metric, lm=teacher, optimizer="gepa", auto=None)
    assert not judge.history and not teacher.history
