"""The optimization metric: the judge scores what the per-instruction program produced.

A metric here is called as every DSPy optimizer calls one: `(gold, pred)` returns the score; `(gold, pred, trace)`
(bootstrapping a trace) a `Score`, the same value whose truth is whether it reaches the threshold (BootstrapFewShot
keeps a trace that is true; GEPA reads the value of a traced call); and GEPA's five-argument call `(gold, pred, trace,
pred_name, pred_trace)` returns `dspy.Prediction(score=, feedback=)` with the judge's reasons.

The judge runs on its own LM (never the LM being optimized) with its own adapter. The value is
(1 - win_weight) * normalized pointwise score (1-10 -> 0-1) + win_weight * improvement win
(improved beats draft in both orders: 1, tie: 0.5, loses: 0; 0.5 when there is no improvement step).
A judge call that fails (an output that breaks its contract after repairs, an API error) scores the
example 0 and is counted; the optimization goes on. A refused call (the budget) is not a failure:
it stops the optimization.

A prediction that copies its example's reference scores 0 before any judge call is paid, with feedback naming the
copy (what GEPA reflects on): its response against the reference's response (respond target), each instruction
against the reference's instruction (instructions), each sample's instruction and final response (pipeline), by
ROUGE-L or by long runs found word for word (refed_dspy.text.closeness; `quality.copy_threshold`, 0.8). The program is shown
the reference pair, and a judge reads a copy of a curated answer as an excellent one: without this, an optimizer
could learn to copy. Copies are counted apart from judge failures (`failure_summary()["copies"]`).
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import dspy

from refed_dspy.adapters import build_adapter
from refed_dspy.clients.calls import stage
from refed_dspy.clients.lm_routing import METRIC_STAGE
from refed_dspy.config.load import ConfigLike, as_config
from refed_dspy.engine.failures import classify
from refed_dspy.errors import ConfigError
from refed_dspy.launch.plan import held_lm
from refed_dspy.ledger.budget import BudgetExceeded
from refed_dspy.programs import PairwiseJudge, PointwiseJudge
from refed_dspy.programs.judge import check_scores
from refed_dspy.registry import TARGETS, rewrites_reference
from refed_dspy.signatures import INSTRUCTION_CRITERIA, RateInstruction
from refed_dspy.store.records import Reference
from refed_dspy.text.closeness import COPY_THRESHOLD, first_copy
from refed_dspy.text.overlap import mean_pairwise_rouge, rouge_l, tokens

_WIN = {"first": 1.0, "tie": 0.5, "second": 0.0}
_UNSET = object()


class Score(float):
    """A metric's value on a traced call that is also its verdict: a float (what GEPA compares), true when it reaches the
    metric's threshold (what bootstrapping keeps a trace for). Only a traced call gets one: elsewhere a score of 0.3 is
    a plain float, which code that writes `score or 0.0` reads as it is."""

    threshold: float | None = None

    def __new__(cls, value: float, threshold: float | None) -> Score:
        score = super().__new__(cls, value)
        score.threshold = float(threshold) if threshold is not None else None
        return score

    def __bool__(self) -> bool:
        # no threshold (optimize.threshold unset, outside an optimization that sets one): a judging that failed or
        # an empty response (0) never makes a demo
        return float(self) > 0 if self.threshold is None else float(self) >= self.threshold

    def __reduce__(self) -> tuple:
        return (Score, (float(self), self.threshold))


@dataclass(frozen=True)
class Target:
    """What `optimize.target` can tune (`rank`: where it is listed), each with its metric (make_metric)."""

    name: str
    rank: int


for _rank, _name in enumerate(("respond", "instructions", "pipeline")):
    TARGETS.register(Target(_name, _rank))


class CountedCalls:
    """Calls of a metric and its failures by reason (thread-safe: optimizers evaluate in threads)."""

    def _start_counts(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.failures: Counter = Counter()
        self.last_failure: str | None = None
        self.copies = 0  # predictions scored 0 for copying their reference (not judge failures)
        self.traced = (0, 0)  # traced calls (bootstrapping a demo) scored, and those that passed the threshold

    def _count_traced(self, passed: bool) -> None:
        with self._lock:
            self.traced = (self.traced[0] + 1, self.traced[1] + int(passed))

    def _count(self, reason: str | None = None, detail: str | None = None) -> None:
        with self._lock:
            self.calls += 1
            if reason is not None:
                self.failures[reason] += 1
                self.last_failure = detail

    def _count_copy(self) -> None:
        with self._lock:
            self.calls += 1
            self.copies += 1

    def failure_summary(self) -> dict[str, Any]:
        """Calls, failures by reason, the last failure's detail, and the predictions that copied their reference."""
        with self._lock:
            return {
                "calls": self.calls,
                "failed": sum(self.failures.values()),
                "by_reason": dict(self.failures),
                "last": self.last_failure,
                "copies": self.copies,
            }


class JudgeMetric(CountedCalls):
    """A DSPy metric: `metric(gold, pred, trace=None)` -> float in [0, 1], or a Score (true when >= threshold) when
    tracing. `threshold` None (optimize.threshold unset, as make_metric passes it): an optimization sets it to the
    starting program's mean validation score for the length of its compile (optimizers.compile.threshold_at); used
    outside one, a trace that scored above 0 passes.

    `copy_threshold`: a prediction whose final response reaches this closeness to the example's `reference_response`
    (refed_dspy.text.closeness) scores 0 unjudged, its feedback naming the copy; None: no check.

    `calls` counts the examples scored, `failures` those whose judging failed (scored 0), by reason; `copies` those
    scored 0 for copying their reference; `traced` the traced calls and those that passed.
    """

    def __init__(
        self,
        judge_lm: dspy.LM,
        criteria: list[str],
        threshold: float | None = None,
        win_weight: float = 0.3,
        adapter: dspy.Adapter | None = None,
        copy_threshold: float | None = COPY_THRESHOLD,
    ):
        if not 0 <= win_weight <= 1:
            raise ValueError("win_weight must be in [0, 1]")
        if copy_threshold is not None and not 0 < copy_threshold <= 1:
            raise ValueError("copy_threshold must be in (0, 1], or None")
        self.lm = judge_lm
        self.adapter = adapter
        self.pointwise = PointwiseJudge(criteria)
        self.pairwise = PairwiseJudge()
        self.threshold = threshold
        self.win_weight = win_weight
        self.copy_threshold = copy_threshold
        self._start_counts()

    def copies_of(self, gold: dspy.Example, pred: dspy.Prediction) -> list[tuple[str, str, str]]:
        """(part, text, reference text) triples of what `pred` made that must not copy the example's reference: its
        final response against `reference_response` (none when the example holds no reference).

        Args:
            gold: the example, which may hold a `reference_response`.
            pred: the program's prediction, read for `improved_response` or else `response`.

        Returns:
            The (part, text, reference text) triples to check for copies; empty when there is no reference.
        """
        reference = gold.get("reference_response")
        if not reference:
            return []
        final = (pred.get("improved_response") or "").strip() or (pred.get("response") or "").strip()
        return [("response", final, reference)]

    def copied(self, gold: dspy.Example, pred: dspy.Prediction) -> str | None:
        """Why `pred` copies its example's reference (refed_dspy.text.closeness.copy_reason), or None.

        Args:
            gold: the example holding the reference.
            pred: the program's prediction.

        Returns:
            The reason naming the first copy found, or None when nothing copies or `copy_threshold` is None.
        """
        if self.copy_threshold is None:
            return None
        return first_copy(self.copies_of(gold, pred), self.copy_threshold)

    def _judge(self, gold: dspy.Example, pred: dspy.Prediction) -> dict[str, Any]:
        return self.score_response(gold.instruction, pred)

    def score_response(self, instruction: str, pred: Any) -> dict[str, Any]:
        """The judged value of one response (and its improvement over the draft) to `instruction`.

        Args:
            instruction: the instruction the response answers.
            pred: a prediction (or sample) holding `response` and, when improved, `improved_response`.

        Returns:
            A dict of `score` (the combined value in [0, 1]), `pointwise` (the normalized pointwise score), `win`
                (1, 0.5 or 0 for the improvement against the draft) and `rationale` (the judge's reasons).
        """
        improved = (pred.get("improved_response") or "").strip()
        draft = (pred.get("response") or "").strip()
        final = improved or draft
        if not final:
            return {"score": 0.0, "pointwise": 0.0, "win": 0.0, "rationale": "the program produced no response"}
        with dspy.context(lm=self.lm, adapter=self.adapter):
            point = self.pointwise(instruction=instruction, response=final)
            win, why = 0.5, ""
            if improved and draft and self.win_weight > 0:  # a win that weighs nothing is not asked for
                pair = self.pairwise(instruction=instruction, first=improved, second=draft)
                win = _WIN[pair.winner]
                why = f" Improved vs draft: {pair.winner}. {pair.rationales[0]}"
        normalized = (point.overall - 1) / 9
        score = (1 - self.win_weight) * normalized + self.win_weight * win
        return {
            "score": round(score, 4),
            "pointwise": round(normalized, 4),
            "win": win,
            "rationale": f"Scores {point.scores}. {point.rationale}{why}",
        }

    def judge(self, gold: dspy.Example, pred: dspy.Prediction) -> dict[str, Any]:
        """Score parts and rationale of one prediction; a failed judging scores 0 and says why, and so does a copy of
        the reference, before any judge call.

        Args:
            gold: the example the prediction was made for.
            pred: the program's prediction.

        Returns:
            A dict of `score`, its parts and `rationale`; with `copied` (why) for a copy of the reference, or
                `failed` (the reason) for a judging that failed.

        Raises:
            BudgetExceeded: a judge call was refused by the budget (not counted as a failure: it stops the
                optimization).
        """
        copy = self.copied(gold, pred)
        if copy is not None:
            self._count_copy()
            return {
                "score": 0.0,
                "pointwise": 0.0,
                "win": 0.0,
                "copied": copy,
                "rationale": (
                    f"Scored 0 without judging: the {copy}. A copy of the reference adds nothing to the dataset, "
                    "however good it reads: write new text for this example, and take from the reference only how "
                    "good it is, not its words."
                ),
            }
        try:
            result = self._judge(gold, pred)
        except BudgetExceeded:
            raise
        except Exception as err:  # noqa: BLE001 - a judge failure scores 0 and is counted
            failure = classify(err)
            self._count(failure.reason, failure.detail)
            return {
                "score": 0.0,
                "pointwise": 0.0,
                "win": 0.0,
                "failed": failure.reason,
                "rationale": f"The judge could not score this example ({failure.reason}: {failure.detail}).",
            }
        self._count()
        return result

    def __call__(
        self, gold: dspy.Example, pred: dspy.Prediction, trace=None, pred_name=_UNSET, pred_trace=_UNSET
    ) -> float | Score | dspy.Prediction:
        """The judged value of `pred`: a float; a Score on a traced call; Prediction(score, feedback) for GEPA's
        five-argument call."""
        result = self.judge(gold, pred)
        if pred_name is not _UNSET or pred_trace is not _UNSET:
            return dspy.Prediction(score=result["score"], feedback=result["rationale"])
        if trace is None:
            return result["score"]
        score = Score(result["score"], self.threshold)
        self._count_traced(bool(score))
        return score


class CountingMetric(CountedCalls):
    """A user's metric, made safe to optimize against: a call that raises scores 0 and is counted (by reason), as
    JudgeMetric does, so a metric that fails on most calls stops the optimization instead of deciding it.

    The metric is called as DSPy calls metrics: `(gold, pred, trace)`, and by GEPA with `pred_name, pred_trace`
    too when it takes them. It may return a number, a bool, or `dspy.Prediction(score=..., feedback=...)`.
    """

    def __init__(self, metric: Any, threshold: float | None = None):
        self.metric = metric
        self.threshold = threshold
        self._start_counts()
        try:
            params = inspect.signature(metric).parameters
            self._gepa_args = len(params) >= 5 or any(p.kind is p.VAR_POSITIONAL for p in params.values())
        except (TypeError, ValueError):
            self._gepa_args = False

    def raw(self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None) -> Any:
        """What the metric returned (0.0 after a failure, which is counted). The LM calls it makes are tagged with the
        stage `metric` (and an LM of its own is counted under the role `metric`: refed_dspy.clients.lm_routing).

        Args:
            gold: the example.
            pred: the program's prediction.
            trace: the DSPy trace of a traced call, or None.
            pred_name: GEPA's name of the predictor being optimized (passed only to a metric that takes five arguments).
            pred_trace: GEPA's trace of that predictor (passed only to a metric that takes five arguments).

        Returns:
            What the metric returned (a number, a bool or a dspy.Prediction), or 0.0 when the call raised.

        Raises:
            BudgetExceeded: a call the metric made was refused by the budget (not counted as a failure).
        """
        try:
            with stage(METRIC_STAGE):
                if self._gepa_args:
                    out = self.metric(gold, pred, trace, pred_name, pred_trace)
                else:
                    out = self.metric(gold, pred, trace)
        except BudgetExceeded:
            raise
        except Exception as err:  # noqa: BLE001 - a failing metric call scores 0 and is counted
            failure = classify(err)
            self._count(failure.reason, f"{type(err).__name__}: {failure.detail}")
            return 0.0
        self._count()
        return out

    def __call__(self, gold, pred, trace=None, pred_name=_UNSET, pred_trace=_UNSET) -> Any:
        """What the metric says of `pred`, as the caller asks it: GEPA's five-argument call gets Prediction(score,
        feedback); the others the score (a Prediction's score taken out)."""
        if pred_name is not _UNSET or pred_trace is not _UNSET:
            out = self.raw(gold, pred, trace, pred_name, pred_trace)
            return out if isinstance(out, dspy.Prediction) else dspy.Prediction(score=float(out), feedback="")
        out = self.raw(gold, pred, trace)
        out = float(out.score) if isinstance(out, dspy.Prediction) else out
        if trace is None:
            return out
        if self.threshold is not None and isinstance(out, (int, float)) and not isinstance(out, bool):
            out = Score(out, self.threshold)  # a number's truth is whether it reaches the threshold, as ours
        self._count_traced(bool(out))
        return out


def novelty(text: str, others: list[str]) -> tuple[float, str]:
    """1 - the highest ROUGE-L F1 of `text` against `others`, and the most similar of them ('' when none)."""
    mine = tokens(text)
    best, closest = 0.0, ""
    for other in others:
        value = rouge_l(mine, tokens(other))
        if value > best:
            best, closest = value, other
    return round(1 - best, 4), closest


def diversity(texts: list[str]) -> float:
    """1 - the mean pairwise ROUGE-L F1 of `texts` (the report's figure, over all of them; 1.0 for fewer than two)."""
    mean = mean_pairwise_rouge(texts, len(texts))
    return 1.0 if mean is None else round(1 - mean, 4)


class InstructionMetric(JudgeMetric):
    """The instructions target's metric: each synthesized instruction rated by the judge on RateInstruction's
    criteria (clear, self-contained, answerable, close to the reference's complexity, grounded in its feature),
    combined with its novelty against the reference and its siblings (1 - ROUGE-L), so that copying the
    reference cannot win: (1 - novelty_weight) * mean quality + novelty_weight * mean novelty.

    Examples hold `reference` (a Reference); predictions `features` and `instructions` (ProposeInstructions).
    """

    def __init__(
        self,
        judge_lm: dspy.LM,
        criteria: list[str],
        threshold: float | None = None,
        novelty_weight: float = 0.3,
        adapter: dspy.Adapter | None = None,
        copy_threshold: float | None = COPY_THRESHOLD,
    ):
        super().__init__(
            judge_lm, criteria, threshold=threshold, win_weight=0.0, adapter=adapter, copy_threshold=copy_threshold
        )
        if not 0 <= novelty_weight <= 1:
            raise ValueError("novelty_weight must be in [0, 1]")
        self.novelty_weight = novelty_weight
        self.rate = dspy.Predict(RateInstruction)

    def copies_of(self, gold: dspy.Example, pred: dspy.Prediction) -> list[tuple[str, str, str]]:
        """Each proposed instruction against the reference's instruction."""
        reference = Reference.coerce(gold.reference)
        return [("instruction", str(t), reference.instruction) for _, t in (pred.get("instructions") or [])]

    def _judge(self, gold: dspy.Example, pred: dspy.Prediction) -> dict[str, Any]:
        reference = Reference.coerce(gold.reference)
        items = [(f, t) for f, t in (pred.get("instructions") or []) if str(t).strip()]
        if not items:
            return {"score": 0.0, "rationale": "the program proposed no instruction"}
        described = dict(pred.get("features") or [])
        texts = [t for _, t in items]
        rated = []
        with dspy.context(lm=self.lm, adapter=self.adapter):
            for i, (feature, text) in enumerate(items):
                out = self.rate(
                    reference_instruction=reference.instruction,
                    instruction=text,
                    feature=f"{feature}: {described.get(feature, '')}".strip(": "),
                )
                scores = check_scores(out, list(INSTRUCTION_CRITERIA)).values()
                quality = (sum(scores) / len(scores) - 1) / 9
                new, closest = novelty(text, [reference.instruction] + texts[:i] + texts[i + 1 :])
                rated.append((quality, new, closest, text, out.rationale))
        quality = sum(r[0] for r in rated) / len(rated)
        new = sum(r[1] for r in rated) / len(rated)
        score = (1 - self.novelty_weight) * quality + self.novelty_weight * new
        weakest = min(rated, key=lambda r: (1 - self.novelty_weight) * r[0] + self.novelty_weight * r[1])
        return {
            "score": round(score, 4),
            "quality": round(quality, 4),
            "novelty": round(new, 4),
            "rationale": (
                f"{len(rated)} instructions: mean quality {quality:.2f}, novelty {new:.2f} (1 - ROUGE-L "
                f"against the reference and siblings). Weakest: {weakest[3][:300]!r}: {weakest[4]} "
                f"Its novelty {weakest[1]:.2f}" + (f", closest to {weakest[2][:200]!r}." if weakest[2] else ".")
            ),
        }


class PipelineMetric(JudgeMetric):
    """The pipeline target's metric: the judged value of every sample the whole pipeline made from a reference (as
    JudgeMetric scores one), combined with the diversity of their instructions (1 - mean pairwise ROUGE-L):
    (1 - diversity_weight) * mean sample value + diversity_weight * diversity.

    Examples hold `reference`; predictions `samples` (ReferenceSynthesis).
    """

    def __init__(
        self,
        judge_lm: dspy.LM,
        criteria: list[str],
        threshold: float | None = None,
        win_weight: float = 0.3,
        diversity_weight: float = 0.2,
        adapter: dspy.Adapter | None = None,
        copy_threshold: float | None = COPY_THRESHOLD,
    ):
        super().__init__(
            judge_lm,
            criteria,
            threshold=threshold,
            win_weight=win_weight,
            adapter=adapter,
            copy_threshold=copy_threshold,
        )
        if not 0 <= diversity_weight <= 1:
            raise ValueError("diversity_weight must be in [0, 1]")
        self.diversity_weight = diversity_weight

    def copies_of(self, gold: dspy.Example, pred: dspy.Prediction) -> list[tuple[str, str, str]]:
        """Each sample's instruction and final response against the reference's (none for a recycling pipeline, whose
        one pair is the reference rewritten)."""
        made = pred.get("samples")
        if made is None:
            return []
        reference = Reference.coerce(gold.reference)
        out = []
        for sample in made:
            final = (sample.get("improved_response") or "").strip() or (sample.get("response") or "").strip()
            out += [
                ("instruction", sample.get("instruction") or "", reference.instruction),
                ("response", final, reference.response),
            ]
        return out

    def _judge(self, gold: dspy.Example, pred: dspy.Prediction) -> dict[str, Any]:
        made = pred.get("samples")
        made = made if made is not None else [pred]  # a recycling pipeline (ReflectionTuning) makes one pair
        samples = [s for s in made if (s.get("instruction") or "").strip()]
        if not samples:
            return {"score": 0.0, "rationale": "the pipeline made no sample from this reference"}
        judged = [self.score_response(s.instruction, s) for s in samples]
        quality = sum(j["score"] for j in judged) / len(judged)
        spread = diversity([s.instruction for s in samples])
        score = (1 - self.diversity_weight) * quality + self.diversity_weight * spread
        worst = min(range(len(judged)), key=lambda i: judged[i]["score"])
        return {
            "score": round(score, 4),
            "quality": round(quality, 4),
            "diversity": spread,
            "rationale": (
                f"{len(samples)} samples: mean judged value {quality:.2f}, instruction diversity "
                f"{spread:.2f} (1 - mean pairwise ROUGE-L). Weakest sample, instruction "
                f"{samples[worst].instruction[:300]!r}: {judged[worst]['rationale']}"
            ),
        }


def make_metric(config: ConfigLike | None, target: str | None = None, judge: dspy.LM | None = None) -> JudgeMetric:
    """The metric `refed optimize` uses for `target`, built from a Config: the judge LM, its adapter, the judging
    criteria and the optimize section's weights and threshold.

    Args:
        config: the config (a Config, a TOML path, a mapping of its tables, or None for the defaults) whose [judge],
            [judging] and [optimize] the metric follows (`quality.copy_threshold`: a prediction that copies its
            reference scores 0 unjudged; not checked for a method that rewrites its reference, reflection).
        target: respond, instructions or pipeline (see TARGETS); None: optimize.target.
        judge: a dspy.LM to judge with instead of building one from [judge].

    Returns:
        A metric any DSPy optimizer takes, GEPA's five-argument call included (the score, and the judge's reasons
            as feedback); its judge's calls are counted when it runs inside `optimize` or an experiment.

    Raises:
        ConfigError: `target` is not one of TARGETS, `judge` is not a dspy.BaseLM, or [judge] does not fit its model
            (as `build_lm` says).
        MissingKeyError, KeyProviderError: the judge's key variable is unset, or its key would reach a host that is
            not its provider's.
    """

    config = as_config(config)
    target = target or config.optimize.target
    if target not in TARGETS:
        raise ConfigError(f"optimize target {target!r} is not one of {', '.join(TARGETS)}")
    opt = config.optimize
    judge = judge or held_lm(config.judge, "judge")
    adapter = build_adapter(config.judge)
    # a method that rewrites its reference (reflection) is meant to stay close to it
    copies = None if rewrites_reference(config.synthesis.method) else config.quality.copy_threshold
    if target == "instructions":
        return InstructionMetric(
            judge,
            config.judging.criteria,
            threshold=opt.threshold,
            novelty_weight=opt.novelty_weight,
            adapter=adapter,
            copy_threshold=copies,
        )
    if target == "pipeline":
        return PipelineMetric(
            judge,
            config.judging.criteria,
            threshold=opt.threshold,
            win_weight=opt.win_weight,
            diversity_weight=opt.diversity_weight,
            adapter=adapter,
            copy_threshold=copies,
        )
    return JudgeMetric(
        judge,
        config.judging.criteria,
        threshold=opt.threshold,
        win_weight=opt.win_weight,
        adapter=adapter,
        copy_threshold=copies,
    )
