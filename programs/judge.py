"""The LLM judge as DSPy modules: rubric scores, and a both-orders pairwise preference."""

from __future__ import annotations

from statistics import fmean

import dspy

from refed_dspy.adapters.degenerate import normalized
from refed_dspy.engine.failures import gather_settled
from refed_dspy.programs.parts import Call, Steps, arun_steps, run_steps
from refed_dspy.signatures.judge import CompareResponses, pointwise_signature, rubric_text


def check_scores(pred: dspy.Prediction, criteria: list[str]) -> dict[str, int]:
    """The per-criterion scores of a judge prediction; ValueError for a missing or out-of-range one."""
    scores = {}
    for name in criteria:
        value = pred.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"judge gave no integer score for {name} (got {value!r})")
        if not 1 <= value <= 10:
            raise ValueError(f"judge score {name}={value} is outside 1-10")
        scores[name] = int(value)
    return scores


def combine_verdicts(first_order: str, second_order: str) -> tuple[str, bool]:
    """Winner from two verdicts on (x, y) then (y, x): 'first' (x), 'second' (y) or 'tie'; and whether the
    verdict flipped with the order (both decisive, pointing at the same position: position bias).

    Two verdicts that disagree give a tie, as Arena-Hard does.

    Args:
        first_order: the verdict ('A', 'B' or 'tie') with x shown as A.
        second_order: the verdict with y shown as A.

    Returns:
        The winner ('first', 'second' or 'tie') and whether the verdict flipped with the order.
    """
    one = {"A": "first", "B": "second"}.get(first_order, "tie")
    two = {"A": "second", "B": "first"}.get(second_order, "tie")
    flipped = one != "tie" and two != "tie" and one != two
    return (one if one == two else "tie"), flipped


class PointwiseJudge(dspy.Module):
    """(instruction, response) -> Prediction(scores={criterion: 1-10}, overall=mean, rationale)."""

    def __init__(self, criteria: list[str]):
        super().__init__()
        self.criteria = list(criteria)
        self.rubric = rubric_text(self.criteria)
        self.score = dspy.Predict(pointwise_signature(self.criteria))

    def _result(self, pred: dspy.Prediction) -> dspy.Prediction:
        scores = check_scores(pred, self.criteria)
        return dspy.Prediction(scores=scores, overall=round(fmean(scores.values()), 4), rationale=pred.rationale)

    def steps(self, instruction: str, response: str) -> Steps:
        """One call: the rubric's scores and the rationale.

        Args:
            instruction: the instruction the response answers.
            response: the response to score.

        Yields:
            The scoring call, sent back its prediction.

        Returns:
            Prediction(scores={criterion: 1-10}, overall=their mean, rationale).

        Raises:
            ValueError: a criterion's score is missing, not an integer, or outside 1-10 (`check_scores`).
        """
        pred = yield Call(
            self.score, "judge_pointwise", dict(instruction=instruction, response=response, rubric=self.rubric)
        )
        return self._result(pred)

    async def aforward(self, instruction: str, response: str) -> dspy.Prediction:
        return await arun_steps(self.steps(instruction, response))

    def forward(self, instruction: str, response: str) -> dspy.Prediction:
        return run_steps(self.steps(instruction, response))


SAME_TEXT = "The two responses are the same text (whitespace and surrounding quotes aside): a tie, not asked."


class PairwiseJudge(dspy.Module):
    """(instruction, first, second) -> Prediction(winner='first'|'second'|'tie', verdicts, flipped, rationales).

    Judged in both orders; the two calls run concurrently. Two responses that are the same text are a tie without
    a call: nothing can tell them apart, so the two calls would buy nothing.
    """

    def __init__(self):
        super().__init__()
        self.compare = dspy.Predict(CompareResponses)

    @staticmethod
    def _same(first: str, second: str) -> dspy.Prediction | None:
        if normalized(first) != normalized(second):
            return None
        return dspy.Prediction(winner="tie", verdicts=["tie", "tie"], flipped=False, rationales=[SAME_TEXT, SAME_TEXT])

    def _result(self, ab: dspy.Prediction, ba: dspy.Prediction) -> dspy.Prediction:
        winner, flipped = combine_verdicts(ab.verdict, ba.verdict)
        return dspy.Prediction(
            winner=winner, verdicts=[ab.verdict, ba.verdict], flipped=flipped, rationales=[ab.rationale, ba.rationale]
        )

    def steps(self, instruction: str, first: str, second: str) -> Steps:
        """The two orders at once, or no call for the same text twice.

        Args:
            instruction: the instruction both responses answer.
            first: the response shown first in the first order.
            second: the response shown first in the second order.

        Yields:
            The two comparison calls at once (none for the same text), sent back their two predictions.

        Returns:
            Prediction(winner='first'|'second'|'tie', verdicts, flipped, rationales).
        """
        same = self._same(first, second)
        if same is not None:
            return same
        ab, ba = yield [
            Call(self.compare, "judge_pairwise", dict(instruction=instruction, response_a=first, response_b=second)),
            Call(self.compare, "judge_pairwise", dict(instruction=instruction, response_a=second, response_b=first)),
        ]
        return self._result(ab, ba)

    async def aforward(self, instruction: str, first: str, second: str) -> dspy.Prediction:
        return await arun_steps(self.steps(instruction, first, second))

    def forward(self, instruction: str, first: str, second: str) -> dspy.Prediction:
        return run_steps(self.steps(instruction, first, second))


class JudgeSample(dspy.Module):
    """One sample judged: the rubric scores of its final response (pointwise) and its improved response against its
    draft (pairwise, when it has both), concurrently -> the judgment's fields as a dict. What `refed judge run` runs
    per sample, here or on a Ray worker."""

    def __init__(self, pointwise: PointwiseJudge | None, pairwise: PairwiseJudge | None):
        super().__init__()
        self.pointwise, self.pairwise = pointwise, pairwise

    async def aforward(self, instruction: str, response: str, improved: str, draft: str) -> dict:
        out: dict = {}
        parts = []
        if self.pointwise is not None:
            parts.append(self.pointwise.acall(instruction=instruction, response=response))
        pairwise = self.pairwise is not None and bool(improved) and bool(draft)
        if pairwise:
            parts.append(self.pairwise.acall(instruction=instruction, first=improved, second=draft))
        results = await gather_settled(*parts)
        if self.pointwise is not None:
            p = results[0]
            out["pointwise"] = {"scores": p.scores, "overall": p.overall, "rationale": p.rationale}
        if pairwise:
            q = results[-1]
            out["pairwise"] = {
                "winner": {"first": "improved", "second": "draft"}.get(q.winner, "tie"),
                "verdicts": q.verdicts,
                "flipped": q.flipped,
                "rationales": q.rationales,
            }
        return out
