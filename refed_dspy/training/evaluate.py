"""`refed evaluate`: two students answer the same instructions, and the judge compares their answers pairwise.

The student is a training's folder (`refed train --out DIR`: its student and adapter); the baseline another one, or
none: the student's own model without its adapter. Each answers every instruction of the evaluation set greedily (its
chat template, `[evaluate] max_new_tokens`), in this process (transformers; a GPU when torch sees one); each answer is
appended to `OUT/answers.jsonl` as it is made, so a stopped evaluation answers only what is missing. The judge then
compares the two answers of each instruction in both orders (the pairwise judge of `refed judge`: `CompareResponses`),
through the launch path as every judging goes: its calls in `OUT/judge_ledger.jsonl` before they are sent, under
`[evaluate] max_calls` and `max_cost_usd` (across re-runs), resumable, in batch mode or on Ray as [judging] says.

The figures (`evaluation.json`) count judgments, two per instruction: `decisive` those that were not ties, `win_rate`
the student's share of them, `interval` its 95% bootstrap interval over instructions, and `lc_win_rate` the win rate
with the answers' length difference regressed out (as AlpacaEval 2.0 controls for length): a logistic regression of
each decisive judgment on tanh(length difference / its spread), ridge-regularized so that a small or one-sided set still
gives a number, read at a difference of zero.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.config import Config
from refed_dspy.errors import ConfigError, SeedError
from refed_dspy.quality.judge import judge_in
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.jsonl import JsonlWriter, read_jsonl, write_json_atomic
from refed_dspy.store.ownership import check_output_dir, owned
from refed_dspy.store.results import Result
from refed_dspy.store.rundir import RunDir
from refed_dspy.training.fine_tune import check_plan, finished_training, import_peft
from refed_dspy.training.student import Student

PACKAGED_SET = Path(__file__).resolve().parent.parent / "data" / "eval_instructions.jsonl"
EVALUATION, ANSWERS, PLAN = "evaluation.json", "answers.jsonl", "evaluate_plan.json"
MIN_DECISIVE = 6  # fewer decisive judgments than this: the figures are given, the verdict is not
RIDGE = 0.5  # the length regression's penalty on its two coefficients (a prior of a fair coin, independent of length)


@dataclass(frozen=True)
class Side:
    """One of the two students compared: its role (`student`, `baseline`), its model and adapter (None: untuned)."""

    role: str
    model: str
    adapter: str | None
    label: str


def side_of(folder: str | Path, role: str) -> Side:
    """The student a finished training's folder holds; ConfigError when it holds none."""
    summary = finished_training(Path(folder))
    if summary is None:
        raise ConfigError(f"--{role} {folder} holds no finished training (train_summary.json): run `refed train` first")
    return Side(role, summary.student, summary.adapter, str(folder))


def read_instructions(path: str | Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(id, instruction) of each line of a JSONL evaluation set (`instruction`, else `prompt` or `text`; `id` where
    given, else the line number); SeedError naming the first line it cannot use."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SeedError(f"cannot read the evaluation set {p}: {getattr(err, 'strerror', None) or err}") from None
    out, seen = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SeedError(f"{p}:{n}: not JSON ({err.msg})") from None
        text = next((row[k] for k in ("instruction", "prompt", "text") if isinstance(row, dict) and row.get(k)), None)
        if not isinstance(text, str) or not text.strip():
            raise SeedError(f"{p}:{n}: no instruction (an `instruction`, `prompt` or `text` field of text)")
        key = str(row.get("id", f"line{n}"))
        if key in seen:
            raise SeedError(f"{p}:{n}: the id {key!r} is there twice")
        seen.add(key)
        out.append((key, text.strip()))
    if not out:
        raise SeedError(f"{p} has no instructions")
    return out[:limit] if limit else out


def plan_of(config: Config, sides: list[Side], items: list[tuple[str, str]]) -> dict[str, Any]:
    """What decides the answers: the two students, how they answer, and the instructions."""
    ev, train = config.evaluate, config.train
    settings = {
        **{f"{s.role}": [s.model, s.adapter] for s in sides},
        "max_new_tokens": ev.max_new_tokens,
        "max_prompt_tokens": ev.max_prompt_tokens,
        "dtype": train.dtype,
    }
    digest = hashlib.sha256(json.dumps(items).encode()).hexdigest()
    return {"settings": settings, "data": digest, "count": f"{len(items)} instructions"}


def answered(path: Path) -> dict[tuple[str, str], str]:
    """(instruction id, role) -> answer, of the answers a folder holds (a line torn by a kill dropped)."""
    return {(row["id"], row["role"]): row["answer"] for row in read_jsonl(path, repair=True)}


def answer_all(
    sides: list[Side], items: list[tuple[str, str]], config: Config, path: Path
) -> dict[tuple[str, str], str]:
    """Each side's answer to each instruction, those `path` lacks made now and appended one by one; returns them all."""
    have = answered(path)
    ev = config.evaluate
    writer = JsonlWriter(path)
    try:
        for model in dict.fromkeys(s.model for s in sides):  # one load of each model, for every side on it
            mine = [s for s in sides if s.model == model and any((key, s.role) not in have for key, _ in items)]
            if not mine:
                continue
            student = Student(model, config.train.device, config.train.dtype).load()
            with warnings.catch_warnings():  # transformers' and peft's notes on their own internals
                warnings.simplefilter("ignore")
                for side, weights in _weights(student, mine):
                    todo = [(key, text) for key, text in items if (key, side.role) not in have]
                    for start in range(0, len(todo), ev.batch_size):
                        batch = todo[start : start + ev.batch_size]
                        texts = student.answer(weights, [t for _, t in batch], ev.max_prompt_tokens, ev.max_new_tokens)
                        for (key, text), answer in zip(batch, texts, strict=True):
                            writer.append({"id": key, "role": side.role, "instruction": text, "answer": answer})
                            have[(key, side.role)] = answer
    finally:
        writer.close()
    return have


def _weights(student: Student, sides: list[Side]) -> Any:
    """(side, the model to answer with) for each side on `student`'s model: its adapter loaded under its role's name,
    or the model itself for an untuned side."""
    peft = import_peft()
    base = student.model.to(student.device).eval()
    tuned = [s for s in sides if s.adapter]
    model = base
    if tuned:
        model = peft.PeftModel.from_pretrained(base, tuned[0].adapter, adapter_name=tuned[0].role)
        for side in tuned[1:]:
            model.load_adapter(side.adapter, adapter_name=side.role)
        model.eval()
    for side in sides:
        if side.adapter:
            model.set_adapter(side.role)
            yield side, model
        elif tuned:
            with model.disable_adapter():
                yield side, model
        else:
            yield side, base


def judged_samples(items: list[tuple[str, str]], answers: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    """The instructions as the pairwise judge takes a sample: the student's answer as the one improved, the
    baseline's as the draft (`refed judge` compares those two, in both orders)."""
    return [
        {
            "instruction": text,
            "response": answers[(key, "baseline")],
            "improved_response": answers[(key, "student")],
            "meta": {"id": key, "method": "evaluation"},
        }
        for key, text in items
    ]


class Evaluation(Result):
    """What `refed evaluate` wrote to `OUT/evaluation.json`: the student's win rate against the baseline, by the
    judge, over two judgments an instruction (each order once)."""

    student: str = Field(description="The student's training folder.")
    baseline: str = Field(description="The baseline's training folder, or `untuned <model>`.")
    eval_set: str
    instructions: int = Field(description="Instructions of the evaluation set asked (after [evaluate] limit).")
    pairs: int = Field(description="Instructions judged (each in both orders).")
    decisive: int = Field(description="Judgments that were not ties, both orders counted.")
    ties: int = Field(description="Judgments that were ties (an instruction's identical answers are two).")
    wins: int = Field(description="Decisive judgments for the student.")
    win_rate: float | None = Field(description="The student's share of the decisive judgments (None: none).")
    interval: list[float] | None = Field(description="95% bootstrap interval of win_rate over instructions.")
    lc_win_rate: float | None = Field(description="The win rate at no length difference (None: see lc_note).")
    lc_note: str = Field("", description="Why lc_win_rate is None ('' when it is a number).")
    verdict: str = Field(description="The figures in one sentence, or why there is no verdict.")
    judge: str
    judge_calls: int = Field(description="The judge's calls answered (the provider's count).")
    cost_usd: float | None
    status: str = Field(description="complete, or the judging's status when it did not finish.")
    answers: str = Field(description="The file of both students' answers.")


def outcomes(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Instruction id -> its judgments as +1 (the student), -1 (the baseline), 0 (a tie), one per order."""
    out = {}
    for row in rows:
        pair = row.get("pairwise")
        if not pair:
            continue
        first, second = (list(pair.get("verdicts") or []) + ["tie", "tie"])[:2]
        out[row["sample_id"]] = [{"A": 1, "B": -1}.get(first, 0), {"A": -1, "B": 1}.get(second, 0)]
    return out


def win_rate(judged: list[list[int]]) -> float | None:
    wins = sum(v > 0 for js in judged for v in js)
    decisive = sum(v != 0 for js in judged for v in js)
    return wins / decisive if decisive else None


def interval(judged: list[list[int]], resamples: int, seed: int) -> list[float] | None:
    """The 2.5th and 97.5th percentiles of the win rate over `resamples` draws of the instructions with replacement."""
    rng = random.Random(seed)
    rates = []
    for _ in range(resamples):
        rate = win_rate([judged[rng.randrange(len(judged))] for _ in judged])
        if rate is not None:
            rates.append(rate)
    if not rates:
        return None
    rates.sort()
    return [round(rates[int(0.025 * (len(rates) - 1))], 4), round(rates[int(0.975 * (len(rates) - 1))], 4)]


def length_controlled(points: list[tuple[int, float]]) -> tuple[float | None, str]:
    """(the win rate at no length difference, '') from (outcome +1/-1, length difference) of the decisive judgments:
    a ridge-penalized logistic regression on tanh(difference / its standard deviation), fitted by Newton's method; or
    (None, why)."""
    if len(points) < MIN_DECISIVE:
        return None, f"{len(points)} decisive judgments, {MIN_DECISIVE} needed"
    diffs = [d for _, d in points]
    mean = sum(diffs) / len(diffs)
    spread = math.sqrt(sum((d - mean) ** 2 for d in diffs) / len(diffs)) or 1.0
    xs = [(1.0, math.tanh(d / spread)) for _, d in points]
    ys = [1.0 if won > 0 else 0.0 for won, _ in points]
    w = [0.0, 0.0]
    for _ in range(50):
        grad, hess = [-RIDGE * w[0], -RIDGE * w[1]], [[RIDGE, 0.0], [0.0, RIDGE]]
        for x, y in zip(xs, ys, strict=True):
            p = 1 / (1 + math.exp(-(w[0] * x[0] + w[1] * x[1])))
            for i in range(2):
                grad[i] += (y - p) * x[i]
                for j in range(2):
                    hess[i][j] += p * (1 - p) * x[i] * x[j]
        det = hess[0][0] * hess[1][1] - hess[0][1] * hess[1][0]
        step = [
            (hess[1][1] * grad[0] - hess[0][1] * grad[1]) / det,
            (hess[0][0] * grad[1] - hess[1][0] * grad[0]) / det,
        ]
        w = [w[0] + step[0], w[1] + step[1]]
        if max(abs(step[0]), abs(step[1])) < 1e-9:
            break
    return round(1 / (1 + math.exp(-w[0])), 4), ""


def figures(
    items: list[tuple[str, str]], answers: dict[tuple[str, str], str], rows: list[dict], seeds: tuple[int, int]
) -> dict[str, Any]:
    """The evaluation's figures from the judgments `rows` of the instructions `items` (`seeds`: the bootstrap's
    resamples and seed)."""
    found = outcomes(rows)
    keys = [key for key, _ in items if key in found]
    judged = [found[key] for key in keys]
    points = [
        (v, len(answers[(key, "student")]) - len(answers[(key, "baseline")]))
        for key in keys
        for v in found[key]
        if v != 0
    ]
    rate = win_rate(judged)
    lc, lc_note = length_controlled(points)
    return {
        "pairs": len(keys),
        "decisive": len(points),
        "ties": sum(v == 0 for js in judged for v in js),
        "wins": sum(v > 0 for v, _ in points),
        "win_rate": None if rate is None else round(rate, 4),
        "interval": interval(judged, *seeds) if points else None,
        "lc_win_rate": lc,
        "lc_note": lc_note,
    }


def verdict_of(f: dict[str, Any]) -> str:
    """The figures in one sentence, or why they are no verdict (fewer than MIN_DECISIVE decisive judgments)."""
    if f["decisive"] < MIN_DECISIVE:
        return (
            f"no verdict: {f['decisive']} decisive judgments of {2 * f['pairs']} ({f['ties']} ties); at least "
            f"{MIN_DECISIVE} are needed: evaluate on more instructions"
        )
    low, high = f["interval"]
    side = "better than" if low > 0.5 else "worse than" if high < 0.5 else "not distinguishable from"
    return (
        f"the student won {f['wins']} of {f['decisive']} decisive judgments ({f['win_rate']:.0%}, 95% interval "
        f"{low:.0%}-{high:.0%}): {side} the baseline by this judge"
    )


async def aevaluate(
    student: str | Path,
    eval_set: str | Path | None = None,
    out: str | Path | None = None,
    config: Config | None = None,
    *,
    baseline: str | Path | None = None,
    judge_lm: Any = None,
    on_mismatch: str = "error",
    show_progress: bool = False,
) -> Evaluation:
    """`evaluate_students`, in a running event loop."""
    config = config or Config()
    ev = config.evaluate
    first = side_of(student, "student")
    second = (
        side_of(baseline, "baseline") if baseline else Side("baseline", first.model, None, f"untuned {first.model}")
    )
    source = Path(eval_set or ev.eval_set or PACKAGED_SET)
    items = read_instructions(source, ev.limit)
    out = Path(out) if out is not None else Path(student) / "evaluation"
    ours = {"kind": "evaluate", "existing": True, "flag": "--out"}
    check_output_dir(out, [])
    with owned(out, "evaluate", "refed evaluate", flag="--out"):
        check_plan(out / PLAN, plan_of(config, [first, second], items))
        answers = answer_all([first, second], items, config, out / ANSWERS)
    judging = config.model_copy(
        update={
            "judging": config.judging.model_copy(
                update={
                    "pointwise": False,
                    "pairwise": True,
                    "max_calls": ev.max_calls,
                    "max_cost_usd": ev.max_cost_usd,
                }
            )
        }
    )
    rundir = RunDir(out)
    summary = await judge_in(
        rundir, judging, ours, judge_lm, on_mismatch, show_progress, False, judged_samples(items, answers)
    )
    found = figures(items, answers, list(read_jsonl(rundir.judgments)), (ev.bootstrap, ev.seed))
    result = Evaluation(
        student=first.label,
        baseline=second.label,
        eval_set=str(source),
        instructions=len(items),
        **found,
        verdict=verdict_of(found),
        judge=summary.judge,
        judge_calls=int(summary.usage.get("calls") or 0),
        cost_usd=summary.cost_usd,
        status=summary.status,
        answers=str(out / ANSWERS),
    )
    write_json_atomic(out / EVALUATION, result.to_json())
    return result


def evaluate_students(
    student: str | Path,
    eval_set: str | Path | None = None,
    out: str | Path | None = None,
    config: Config | None = None,
    *,
    baseline: str | Path | None = None,
    judge: Any = None,
    on_mismatch: str = "error",
    show_progress: bool = False,
) -> Evaluation:
    """Compare a trained student with a baseline: both answer an evaluation set, the judge compares their answers in
    both orders; `refed evaluate` from Python.

    Args:
        student: a `refed train` output folder.
        eval_set: a JSONL file of instructions; None: [evaluate] eval_set, else the package's own 40.
        out: the evaluation's folder; None: `STUDENT/evaluation`.
        config: [evaluate] (generation, caps, bootstrap), [train] device and dtype, [judge] and [judging] (the mode,
            concurrency, retries); None: defaults.
        baseline: another `refed train` output folder; None: the student's model without its adapter.
        judge: a dspy.LM (or any dspy.BaseLM) to judge with instead of building one from [judge].
        on_mismatch: for judgments made with another judge config: "error", "resume" or "fresh" (as `judge_run`).
        show_progress: print the judging's progress lines on stderr.

    Returns:
        What `out/evaluation.json` holds: pairs, decisive judgments, ties, the win rate, its interval, the
            length-controlled win rate, the judge's calls and cost, and the verdict in one sentence.

    Raises:
        ConfigError: a folder holds no finished training, or `out` holds an evaluation of other students, settings or
            instructions (before any model loads).
        SeedError: the evaluation set cannot be read.
        RunDirError: `out` is not refed's to take.
        RunInterrupted: a signal stopped the judging (the same call again resumes: answers and judgments are kept).
    """
    return run_sync(
        aevaluate(
            student,
            eval_set,
            out,
            config,
            baseline=baseline,
            judge_lm=judge,
            on_mismatch=on_mismatch,
            show_progress=show_progress,
        )
    )
