"""The optimization metric: the judge scores what the per-instruction program produced.

The judge runs on its own LM (never the LM being optimized). The value is
(1 - win_weight) * normalized pointwise score (1-10 -> 0-1) + win_weight * improvement win
(improved beats draft in both orders: 1, tie: 0.5, loses: 0; 0.5 when there is no improvement step).
"""

from __future__ import annotations

from typing import Any

import dspy

from refed_dspy.programs import PairwiseJudge, PointwiseJudge

_WIN = {"first": 1.0, "tie": 0.5, "second": 0.0}


class JudgeMetric:
    """A DSPy metric: `metric(gold, pred, trace=None)` -> float in [0, 1], or a bool (>= threshold) when tracing."""

    def __init__(self, judge_lm: dspy.LM, criteria: list[str], threshold: float = 0.7, win_weight: float = 0.3):
        if not 0 <= win_weight <= 1:
            raise ValueError("win_weight must be in [0, 1]")
        self.lm = judge_lm
        self.pointwise = PointwiseJudge(criteria)
        self.pairwise = PairwiseJudge()
        self.threshold = threshold
        self.win_weight = win_weight

    def judge(self, gold: dspy.Example, pred: dspy.Prediction) -> dict[str, Any]:
        """Score parts and rationale of one prediction."""
        improved = (pred.get("improved_response") or "").strip()
        draft = (pred.get("response") or "").strip()
        final = improved or draft
        if not final:
            return {"score": 0.0, "pointwise": 0.0, "win": 0.0, "rationale": "the program produced no response"}
        with dspy.context(lm=self.lm):
            point = self.pointwise(instruction=gold.instruction, response=final)
            win, why = 0.5, ""
            if improved and draft:
                pair = self.pairwise(instruction=gold.instruction, first=improved, second=draft)
                win = _WIN[pair.winner]
                why = f" Improved vs draft: {pair.winner}. {pair.rationales[0]}"
        normalized = (point.overall - 1) / 9
        score = (1 - self.win_weight) * normalized + self.win_weight * win
        return {"score": round(score, 4), "pointwise": round(normalized, 4), "win": win,
                "rationale": f"Scores {point.scores}. {point.rationale}{why}"}

    def __call__(self, gold: dspy.Example, pred: dspy.Prediction, trace=None) -> float | bool:
        score = self.judge(gold, pred)["score"]
        return score >= self.threshold if trace is not None else score


class GEPAJudgeMetric(JudgeMetric):
    """GEPA's metric signature: (gold, pred, trace, pred_name, pred_trace) -> Prediction(score, feedback)."""

    @classmethod
    def like(cls, metric: JudgeMetric) -> GEPAJudgeMetric:
        """The GEPA form of `metric` (same judge LM, rubric, threshold and weight)."""
        new = cls.__new__(cls)
        new.__dict__.update(metric.__dict__)
        return new

    def __call__(self, gold, pred, trace=None, pred_name=None, pred_trace=None) -> dspy.Prediction:  # type: ignore[override]
        result = self.judge(gold, pred)
        return dspy.Prediction(score=result["score"], feedback=result["rationale"])
