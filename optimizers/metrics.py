"""The optimization metric: the judge scores what the per-instruction program produced.

The judge runs on its own LM (never the LM being optimized) with its own adapter. The value is
(1 - win_weight) * normalized pointwise score (1-10 -> 0-1) + win_weight * improvement win
(improved beats draft in both orders: 1, tie: 0.5, loses: 0; 0.5 when there is no improvement step).
A judge call that fails (an output that breaks its contract after repairs, an API error) scores the
example 0 and is counted; the optimization goes on. A refused call (the budget) is not a failure:
it stops the optimization.
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from typing import Any

import dspy

from refed_dspy.budget import BudgetExceeded
from refed_dspy.failures import classify
from refed_dspy.programs import PairwiseJudge, PointwiseJudge

_WIN = {"first": 1.0, "tie": 0.5, "second": 0.0}


class JudgeMetric:
    """A DSPy metric: `metric(gold, pred, trace=None)` -> float in [0, 1], or a bool (>= threshold) when tracing.

    `calls` counts the examples scored, `failures` those whose judging failed (scored 0), by reason.
    """

    def __init__(self, judge_lm: dspy.LM, criteria: list[str], threshold: float = 0.7, win_weight: float = 0.3,
                 adapter: dspy.Adapter | None = None):
        if not 0 <= win_weight <= 1:
            raise ValueError("win_weight must be in [0, 1]")
        self.lm = judge_lm
        self.adapter = adapter
        self.pointwise = PointwiseJudge(criteria)
        self.pairwise = PairwiseJudge()
        self.threshold = threshold
        self.win_weight = win_weight
        self._lock = threading.Lock()
        self.calls = 0
        self.failures: Counter = Counter()
        self.last_failure: str | None = None

    def _judge(self, gold: dspy.Example, pred: dspy.Prediction) -> dict[str, Any]:
        improved = (pred.get("improved_response") or "").strip()
        draft = (pred.get("response") or "").strip()
        final = improved or draft
        if not final:
            return {"score": 0.0, "pointwise": 0.0, "win": 0.0, "rationale": "the program produced no response"}
        with dspy.context(lm=self.lm, adapter=self.adapter):
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

    def judge(self, gold: dspy.Example, pred: dspy.Prediction) -> dict[str, Any]:
        """Score parts and rationale of one prediction; a failed judging scores 0 and says why."""
        try:
            result = self._judge(gold, pred)
        except BudgetExceeded:
            raise
        except Exception as err:  # noqa: BLE001 - a judge failure scores 0 and is counted
            failure = classify(err)
            with self._lock:
                self.calls += 1
                self.failures[failure.reason] += 1
                self.last_failure = failure.detail
            return {"score": 0.0, "pointwise": 0.0, "win": 0.0, "failed": failure.reason,
                    "rationale": f"The judge could not score this example ({failure.reason}: {failure.detail})."}
        with self._lock:
            self.calls += 1
        return result

    def failure_summary(self) -> dict[str, Any]:
        """Examples scored, judge failures by reason, and the last failure's detail."""
        with self._lock:
            return {"calls": self.calls, "failed": sum(self.failures.values()), "by_reason": dict(self.failures),
                    "last": self.last_failure}

    def __call__(self, gold: dspy.Example, pred: dspy.Prediction, trace=None) -> float | bool:
        score = self.judge(gold, pred)["score"]
        return score >= self.threshold if trace is not None else score


class GEPAJudgeMetric(JudgeMetric):
    """GEPA's metric signature: (gold, pred, trace, pred_name, pred_trace) -> Prediction(score, feedback)."""

    @classmethod
    def like(cls, metric: JudgeMetric) -> GEPAJudgeMetric:
        """The GEPA form of `metric` (same judge LM, adapter, rubric, threshold, weight and failure counts)."""
        new = cls.__new__(cls)
        new.__dict__ = metric.__dict__  # shared: failures counted through either form add up
        return new

    def __call__(self, gold, pred, trace=None, pred_name=None, pred_trace=None) -> dspy.Prediction:  # type: ignore[override]
        result = self.judge(gold, pred)
        return dspy.Prediction(score=result["score"], feedback=result["rationale"])


class CountingMetric:
    """A user's metric, made safe to optimize against: a call that raises scores 0 and is counted (by reason), as
    JudgeMetric does, so a metric that fails on most calls stops the optimization instead of deciding it.

    The metric is called as DSPy calls metrics: `(gold, pred, trace)`, and by GEPA with `pred_name, pred_trace`
    too when it takes them. It may return a number, a bool, or `dspy.Prediction(score=..., feedback=...)`.
    """

    def __init__(self, metric: Any, threshold: float | None = None):
        self.metric = metric
        self.threshold = threshold
        self._lock = threading.Lock()
        self.calls = 0
        self.failures: Counter = Counter()
        self.last_failure: str | None = None
        try:
            params = inspect.signature(metric).parameters
            self._gepa_args = len(params) >= 5 or any(p.kind is p.VAR_POSITIONAL for p in params.values())
        except (TypeError, ValueError):
            self._gepa_args = False

    def raw(self, gold, pred, trace=None, pred_name=None, pred_trace=None) -> Any:
        """What the metric returned (0.0 after a failure, which is counted)."""
        try:
            if self._gepa_args:
                out = self.metric(gold, pred, trace, pred_name, pred_trace)
            else:
                out = self.metric(gold, pred, trace)
        except BudgetExceeded:
            raise
        except Exception as err:  # noqa: BLE001 - a failing metric call scores 0 and is counted
            failure = classify(err)
            with self._lock:
                self.calls += 1
                self.failures[failure.reason] += 1
                self.last_failure = f"{type(err).__name__}: {failure.detail}"
            return 0.0
        with self._lock:
            self.calls += 1
        return out

    failure_summary = JudgeMetric.failure_summary

    def __call__(self, gold, pred, trace=None) -> float | bool:
        out = self.raw(gold, pred, trace)
        return float(out.score) if isinstance(out, dspy.Prediction) else out

    def for_gepa(self) -> Any:
        """The GEPA form: its 5 arguments, and a Prediction(score, feedback) back."""
        def gepa_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
            out = self.raw(gold, pred, trace, pred_name, pred_trace)
            if isinstance(out, dspy.Prediction):
                return out
            return dspy.Prediction(score=float(out), feedback="")
        return gepa_metric


TARGETS = ("respond",)


def make_metric(config: Any, target: str = "respond", judge: dspy.LM | None = None) -> JudgeMetric:
    """The metric `refed optimize` uses for `target`, built from a Config: the judge LM ([judge], or `judge`), its
    adapter, the judging criteria, optimize.threshold and optimize.win_weight."""
    from refed_dspy.adapters import build_adapter
    from refed_dspy.errors import ConfigError
    from refed_dspy.lm import build_lm

    if target not in TARGETS:
        raise ConfigError(f"optimize target {target!r} is not built yet; available: {', '.join(TARGETS)}")
    return JudgeMetric(judge or build_lm(config.judge, "judge"), config.judging.criteria,
                       threshold=config.optimize.threshold, win_weight=config.optimize.win_weight,
                       adapter=build_adapter(config.judge))
