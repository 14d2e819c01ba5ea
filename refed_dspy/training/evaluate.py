"""`refed evaluate`: two students answer the same instructions, and the judge compares their answers pairwise.

The student is a training's folder (`refed train --out DIR`: its student and adapter); the baseline another one, or
none: the student's own model without its adapter. Each answers every instruction of the evaluation set greedily (its
chat template, `[evaluate] max_new_tokens`), in this process (transformers; a GPU when torch sees one) or through the
server of `[evaluate] server` (refed_dspy.training.served); each answer is appended to `OUT/answers.jsonl` as it is
made, so a stopped evaluation answers only what is missing. The judge then compares the two answers of each
instruction in both orders (the pairwise judge of `refed judge`: `CompareResponses`), through the launch path as every
judging goes: its calls in `OUT/judge_ledger.jsonl` before they are sent, under
`[evaluate] max_calls` and `max_cost_usd` (across re-runs), resumable, in batch mode or on Ray as [judging] says.

The figures (`evaluation.json`) count judgments, two per instruction: `decisive` those that were not ties, `win_rate`
the student's share of them, `interval` its 95% bootstrap interval over instructions, and `lc_win_rate` the win rate
with the answers' length difference regressed out (as AlpacaEval 2.0 controls for length): a logistic regression of
each decisive judgment on tanh(length difference / its spread), ridge-regularized so that a small or one-sided set still
gives a number, read at a difference of zero.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.clients.destination import checking
from refed_dspy.config import Config
from refed_dspy.config.load import ConfigLike, given_config
from refed_dspy.engine.progress import Heartbeat, duration
from refed_dspy.errors import ConfigError, RefedError, SeedError
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.providers.keys import check_key
from refed_dspy.quality.judge import judge_in, judged_alike
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.jsonl import JsonlWriter, read_json, read_jsonl, write_json_atomic
from refed_dspy.store.ownership import check, check_output_dir, owned
from refed_dspy.store.results import Result
from refed_dspy.store.rundir import RunDir
from refed_dspy.training.fine_tune import ADAPTER, check_plan, finished_training, import_peft
from refed_dspy.training.served import (
    answering,
    answering_paid,
    check_served,
    left,
    served_answers,
    served_lm,
    served_model,
)
from refed_dspy.training.student import Student

PACKAGED_SET = Path(__file__).resolve().parent.parent / "data" / "eval_instructions.jsonl"
EVALUATION, ANSWERS, PLAN = "evaluation.json", "answers.jsonl", "evaluate_plan.json"
EVALUATION_DIR = "evaluation"  # an evaluation's folder in the student's, where none is given
MIN_DECISIVE = 6  # fewer decisive judgments than this: the figures are given, the verdict is not
RIDGE = 0.5  # the length regression's penalty on its slope (a prior of a preference independent of length)
INTERCEPT_RIDGE = 0.01  # and on its intercept: light, so that a student that wins every judgment stays finite


@dataclass(frozen=True)
class Side:
    """One of the two students compared: its role (`student`, `baseline`), its model, its adapter (None: untuned),
    how messages name it, and a hash of the adapter's weights (what its answers depend on)."""

    role: str
    model: str
    adapter: str | None
    label: str
    weights: str = ""


def side_of(folder: str | Path, role: str) -> Side:
    """The student a finished training's folder holds; ConfigError when it holds none."""
    summary = finished_training(Path(folder))
    if summary is None:
        raise ConfigError(f"--{role} {folder} holds no finished training (train_summary.json): run `refed train` first")
    adapter = Path(folder) / ADAPTER
    digest = hashlib.sha256()
    for part in sorted(adapter.glob("adapter_model*")):
        digest.update(part.read_bytes())
    return Side(role, summary.student, str(adapter), str(folder), digest.hexdigest()[:16])


def untuned(model: str) -> Side:
    return Side("baseline", model, None, f"untuned {model}")


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


def plan_of(config: Config, sides: list[Side], dtype: str) -> dict[str, Any]:
    """What decides each answer but its instruction: the two students' models and weights, how they answer (in this
    process: its dtype; by a server: the names it serves them under). An answer is kept for its
    instruction's id and text (`answered`), so more instructions add answers."""
    ev = config.evaluate
    settings = {
        **{s.role: [s.model, s.weights or "untuned"] for s in sides},
        "max_new_tokens": ev.max_new_tokens,
        "max_prompt_tokens": ev.max_prompt_tokens,
    }
    if ev.server:  # the names the server serves them under; the server itself may move (another port)
        settings["served"] = [served_model(config, s.role) for s in sides]
    else:
        settings["dtype"] = dtype
    return {"settings": settings, "data": "", "count": ""}


def answered(path: Path, items: list[tuple[str, str]], repair: bool = True) -> dict[tuple[str, str], str]:
    """(instruction id, role) -> answer, of the answers a folder holds to `items` as they read now (the last line for
    each; a line torn by a kill dropped, and with `repair` cut off; an answer to another text of the id left out)."""
    texts = dict(items)
    rows = {(row["id"], row["role"]): row for row in read_jsonl(path, repair=repair)}
    return {key: row["answer"] for key, row in rows.items() if texts.get(key[0]) == row.get("instruction")}


def baseline_of(settings: dict[str, Any]) -> dict[str, Any]:
    """What a plan's settings say of the baseline's answers alone: all but the student (and its served name)."""
    served = settings.get("served")
    return {k: v for k, v in settings.items() if k not in ("student", "served")} | {"served": served and served[-1:]}


def lent(folders: list[Path], plan: dict[str, Any], items: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The baseline's answers to `items` that other evaluations' folders hold where their plans say the same baseline
    answered the same way (`baseline_of`): `refed compare --train` evaluates every method's student against one
    baseline, which answers the set once. Read only."""
    found: dict[tuple[str, str], str] = {}
    for folder in folders:
        theirs = read_json(folder / PLAN).get("settings")
        if isinstance(theirs, dict) and baseline_of(theirs) == baseline_of(plan["settings"]):
            found |= {k: v for k, v in answered(folder / ANSWERS, items, repair=False).items() if k[1] == "baseline"}
    return found


class AnswerLine:
    """The progress line of the answering: answers made of those asked, seconds an answer up to the last one made (a
    batch under way does not stretch the figure), the time left."""

    def __init__(self, total: int, clock: Any = time.monotonic):
        self.total, self.done, self.clock = total, 0, clock
        self.started = self.last = clock()

    def add(self, made: int) -> None:
        """Count `made` answers made now."""
        self.done += made
        self.last = self.clock()

    def __call__(self) -> str:
        line = f"answering: {self.done}/{self.total} answers"
        if not self.done:
            return f"{line}, ETA unknown"
        each = (self.last - self.started) / self.done
        left = max(0.0, each * (self.total - self.done) - (self.clock() - self.last))
        return f"{line}, {each:.1f} s an answer, ETA {duration(left)}"


def answer_all(
    sides: list[Side],
    items: list[tuple[str, str]],
    config: Config,
    out: Path,
    plan: dict[str, Any],
    borrow: Sequence[Path] = (),
) -> dict[tuple[str, str], str]:
    """Each side's answer to each instruction: those `out` lacks taken from the folders of `borrow` where they hold
    the same baseline's (`lent`), else made now (in this process, or by the server of `[evaluate] server`), recorded
    in its answers.jsonl batch by batch (the plan before the first; the answers taken with the first made, if any are
    to be made); returns them all."""
    have = answered(out / ANSWERS, items)
    taken = {key: said for key, said in lent(list(borrow), plan, items).items() if key not in have}
    known = have | taken
    todo = [(s, key, text) for s in sides for key, text in items if (key, s.role) not in known]
    if not (todo or taken):
        if not (out / PLAN).exists():
            write_json_atomic(out / PLAN, plan)
        return have
    writer = JsonlWriter(out / ANSWERS)
    texts = dict(items)
    taken_lines = [(key, role, texts[key], said) for (key, role), said in taken.items()]
    try:
        if todo:
            _answer_into(writer, todo, config, out, plan, taken_lines)
        else:
            _record(writer, out, plan, taken_lines)
    finally:
        writer.close()
    return answered(out / ANSWERS, items)


def _record(writer: JsonlWriter, out: Path, plan: dict[str, Any], answers: list[tuple[str, str, str, str]]) -> None:
    """Append (id, role, instruction, answer) lines to answers.jsonl, the plan recorded before the first (and not
    before there is one: a batch that made nothing leaves the folder free for other settings)."""
    if not answers:
        return
    if not (out / PLAN).exists():
        write_json_atomic(out / PLAN, plan)
    for key, role, text, said in answers:
        writer.append({"id": key, "role": role, "instruction": text, "answer": said})


def _answer_into(
    writer: JsonlWriter,
    todo: list[tuple[Side, str, str]],
    config: Config,
    out: Path,
    plan: dict[str, Any],
    first: list[tuple[str, str, str, str]],
) -> None:
    """Have each side answer its instructions of `todo`, `[evaluate] batch_size` at a time, each batch's answers
    recorded as it ends (those it made before an error too; with the first made, the lines `first`), with a progress
    line."""
    line = AnswerLine(len(todo))
    beat = Heartbeat("refed evaluate", line, config.run.progress_every_s) if config.run.progress else None
    served = config.evaluate.server is not None
    with beat or contextlib.nullcontext(), answering(config, out) if served else contextlib.nullcontext() as budget:
        for side, asked, answer in _served(todo, config, budget) if served else _in_process(todo, config):
            for start in range(0, len(asked), config.evaluate.batch_size):
                batch = asked[start : start + config.evaluate.batch_size]
                said = answer([t for _, t in batch])
                made = [(key, side.role, text, one) for (key, text), one in zip(batch, said, strict=True)]
                made = [m for m in made if not isinstance(m[3], RefedError)]
                if made:
                    _record(writer, out, plan, first + made)
                    first = []
                line.add(sum(not isinstance(one, RefedError) for one in said))
                failed = next((one for one in said if isinstance(one, RefedError)), None)
                if failed is not None:  # the batch's other answers are kept
                    raise failed


def _asked_of(todo: list[tuple[Side, str, str]], side: Side) -> list[tuple[str, str]]:
    return [(key, text) for s, key, text in todo if s == side]


def _in_process(todo: list[tuple[Side, str, str]], config: Config) -> Any:
    """(side, its instructions, a function answering a batch of them) for each side, its model loaded here once for
    every side on it, each adapter beside the other."""
    peft, ev = import_peft(), config.evaluate
    with warnings.catch_warnings():  # transformers' and peft's own notes
        warnings.simplefilter("ignore")
        for model in dict.fromkeys(s.model for s, _, _ in todo):
            student = Student(model, config.train.device, config.train.dtype, what="an evaluated student").load()
            mine = list(dict.fromkeys(s for s, _, _ in todo if s.model == model))
            for side, weights in _weights(peft, student, mine):

                def answer(texts: list[str], weights: Any = weights, student: Student = student) -> list[str]:
                    return student.answer(weights, texts, ev.max_prompt_tokens, ev.max_new_tokens)

                yield side, _asked_of(todo, side), answer


def _served(todo: list[tuple[Side, str, str]], config: Config, budget: CallBudget) -> Any:
    """(side, its instructions, a function answering a batch of them: each an answer or the error it met) for each
    side, asked of `[evaluate] server` (each side's name checked there first: `check_served`), each call counted on
    `budget`."""
    sides = list(dict.fromkeys(s for s, _, _ in todo))
    check_served(config, [side.role for side in sides], budget)
    for side in sides:
        lm = served_lm(config, side.role, budget)
        yield side, _asked_of(todo, side), lambda texts, lm=lm: served_answers(lm, texts, config.evaluate)


def _weights(peft: Any, student: Student, sides: list[Side]) -> Any:
    """(side, the model to answer with) for each side on `student`'s model: its adapter loaded under its role's name,
    or the model itself for an untuned side."""
    base = student.model.to(student.device).eval()
    tuned = [s for s in sides if s.adapter]
    model = base
    try:
        if tuned:
            with checking():  # an adapter named on the Hub is downloaded with $HF_TOKEN: checked where it goes
                model = peft.PeftModel.from_pretrained(base, tuned[0].adapter, adapter_name=tuned[0].role)
                for side in tuned[1:]:
                    model.load_adapter(side.adapter, adapter_name=side.role)
            model.eval()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"an adapter of {', '.join(s.label for s in tuned)} cannot be loaded: {first[:300]}"
        ) from None
    for side in sides:
        if side.adapter:
            model.set_adapter(side.role)
            yield side, model
        elif tuned:
            with model.disable_adapter():
                yield side, model
        else:
            yield side, base


def sample_id(key: str, text: str, mine: str, theirs: str) -> str:
    """The id a judgment of an instruction's two answers is kept under: its id and a hash of what was judged (an
    answer made again, or the instruction changed, is judged again)."""
    return f"{key}#{hashlib.sha256(json.dumps([text, mine, theirs]).encode()).hexdigest()[:12]}"


def judged_samples(items: list[tuple[str, str]], answers: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    """The instructions as the pairwise judge takes a sample: the student's answer as the one improved, the
    baseline's as the draft (`refed judge` compares those two, in both orders). An instruction one side left
    unanswered (an empty answer) is not sent: it is decided without the judge (`figures`)."""
    out = []
    for key, text in items:
        mine, theirs = answers[(key, "student")], answers[(key, "baseline")]
        if mine.strip() and theirs.strip():
            meta = {"id": sample_id(key, text, mine, theirs), "method": "evaluation"}
            out.append({"instruction": text, "response": theirs, "improved_response": mine, "meta": meta})
    return out


class Evaluation(Result):
    """What `refed evaluate` wrote to `OUT/evaluation.json`: the student's win rate against the baseline, by the
    judge, over two judgments an instruction (each order once)."""

    student: str = Field(description="The student's training folder.")
    baseline: str = Field(description="The baseline's training folder, or `untuned <model>`.")
    eval_set: str
    instructions: int = Field(description="Instructions of the evaluation set asked (after [evaluate] limit).")
    ids: list[str] = Field(default_factory=list, description="Their ids, in the set's order.")
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
    answer_calls: int = Field(
        0, description="The students' server's calls answered, over every invocation (0: they answered in process)."
    )
    answer_cost_usd: float | None = Field(0.0, description="What those calls cost (None: a model with no price).")


def outcomes(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """A judgment's sample id (`sample_id`) -> its verdicts as +1 (the student), -1 (the baseline), 0 (a tie), one
    per order."""
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
    a logistic regression on tanh(difference / its standard deviation), fitted by Newton's method, the slope
    ridge-penalized (RIDGE) and the intercept lightly (a one-sided set stays finite); or (None, why): too few
    judgments, or length differences that never change sign, where length and student cannot be told apart."""
    if len(points) < MIN_DECISIVE:
        return None, f"{len(points)} decisive judgments, {MIN_DECISIVE} needed"
    diffs = [d for _, d in points]
    if min(diffs) >= 0 or max(diffs) <= 0:
        side = "longer than" if max(diffs) > 0 else "shorter than" if min(diffs) < 0 else "as long as"
        return (
            None,
            f"the student's answers are {side} the baseline's in every decisive judgment: length and student cannot "
            "be told apart",
        )
    mean = sum(diffs) / len(diffs)
    spread = math.sqrt(sum((d - mean) ** 2 for d in diffs) / len(diffs))
    xs = [(1.0, math.tanh(d / spread)) for d in diffs]
    ys = [1.0 if won > 0 else 0.0 for won, _ in points]
    penalty = (INTERCEPT_RIDGE, RIDGE)
    w = [0.0, 0.0]
    for _ in range(100):
        grad = [-penalty[0] * w[0], -penalty[1] * w[1]]
        hess = [[penalty[0], 0.0], [0.0, penalty[1]]]
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


def verdicts_of(key: str, text: str, mine: str, theirs: str, found: dict[str, list[int]]) -> list[int] | None:
    """An instruction's two judgments as the student's (+1 won, -1 lost, 0 tie), from the judge's `found`
    (`outcomes`), or decided without it where an answer is empty; None when not judged (yet)."""
    if not mine.strip() or not theirs.strip():
        return [0, 0] if not mine.strip() and not theirs.strip() else [1, 1] if mine.strip() else [-1, -1]
    return found.get(sample_id(key, text, mine, theirs))


def figures(
    items: list[tuple[str, str]], answers: dict[tuple[str, str], str], rows: list[dict], seeds: tuple[int, int]
) -> dict[str, Any]:
    """The evaluation's figures from the judgments `rows` of the instructions `items` (`seeds`: the bootstrap's
    resamples and seed). An empty answer against another loses both judgments; two empty answers are two ties."""
    found = outcomes(rows)
    judged: list[list[int]] = []
    points = []
    for key, text in items:
        mine, theirs = answers[(key, "student")], answers[(key, "baseline")]
        verdicts = verdicts_of(key, text, mine, theirs, found)
        if verdicts is None:
            continue  # not judged (yet)
        judged.append(verdicts)
        points += [(v, len(mine) - len(theirs)) for v in verdicts if v != 0]
    rate = win_rate(judged)
    lc, lc_note = length_controlled(points)
    return {
        "pairs": len(judged),
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


def prepare(
    student: str | Path, eval_set: str | Path | None, out: str | Path | None, config: Config, baseline: Any
) -> tuple[Path, list[Side], list[tuple[str, str]], Path]:
    """(the evaluation's folder, the two sides, the instructions, the evaluation set's path), checked before any model
    loads: the training folders, the set, the folder refed may take and the plan it holds."""
    first = side_of(student, "student")
    second = side_of(baseline, "baseline") if baseline else untuned(first.model)
    source = Path(eval_set or config.evaluate.eval_set or PACKAGED_SET)
    items = read_instructions(source, config.evaluate.limit)
    folder = Path(out) if out is not None else Path(student) / EVALUATION_DIR
    check_output_dir(folder, [])
    check(folder, "evaluate", flag="--out")
    check_same_set(folder, items, source)
    return folder, [first, second], items, source


def check_same_set(folder: Path, items: list[tuple[str, str]], source: Path) -> None:
    """Refuse (ConfigError) a folder holding answers to another set: one whose instructions, by id, neither hold all
    of `items` nor are all among them, or whose ids in common with it all read otherwise (a set without ids numbers
    its lines). More instructions of a set add answers, [evaluate] limit asks fewer, an instruction edited is asked
    anew."""
    rows = read_jsonl(folder / ANSWERS, repair=False) if (folder / ANSWERS).is_file() else ()
    held = {row["id"]: row["instruction"] for row in rows}
    texts = dict(items)
    common = held.keys() & texts.keys()
    nested = held.keys() <= texts.keys() or texts.keys() <= held.keys()
    if held and not (nested and any(held[key] == texts[key] for key in common)):
        raise ConfigError(
            f"{folder} holds answers to another set than {source} ({len(held.keys() - texts.keys())} of its "
            f"instructions are not in it, and of the {len(common)} ids both hold, "
            f"{sum(held[key] == texts[key] for key in common)} read the same): evaluate into another folder, or "
            "remove that one"
        )


def evaluate_students(
    student: str | Path,
    eval_set: str | Path | None = None,
    out: str | Path | None = None,
    config: ConfigLike | None = None,
    *,
    baseline: str | Path | None = None,
    judge: Any = None,
    on_mismatch: str = "error",
    show_progress: bool = False,
    reuse: Sequence[str | Path] = (),
) -> Evaluation:
    """Compare a trained student with a baseline: both answer an evaluation set, the judge compares their answers in
    both orders; `refed evaluate` from Python.

    Args:
        student: a `refed train` output folder.
        eval_set: a JSONL file of instructions; None: [evaluate] eval_set, else the package's own 40.
        out: the evaluation's folder; None: `STUDENT/evaluation`.
        config: [evaluate] (generation, the students' server, caps, bootstrap), [train] device and dtype, [judge]
            and [judging] (the mode, concurrency, retries), [run] progress; None: defaults.
        baseline: another `refed train` output folder; None: the student's model without its adapter.
        judge: a dspy.LM (or any dspy.BaseLM) to judge with instead of building one from [judge].
        on_mismatch: for judgments made with another judge config: "error", "resume" or "fresh" (as `judge_run`).
        show_progress: print the answering's and the judging's progress lines on stderr.
        reuse: other evaluations' folders whose baseline answers this one takes where their plans say the same
            baseline answered the same way (`refed compare --train` passes its other methods': the baseline answers
            the set once); read only.

    Returns:
        What `out/evaluation.json` holds: pairs, decisive judgments, ties, the win rate, its interval, the
            length-controlled win rate, the judge's calls and cost, and the verdict in one sentence.

    Raises:
        ConfigError: a folder holds no finished training, an adapter cannot be loaded, the students' server refuses
            a request (a model it does not serve), or `out` holds an evaluation of other students or settings (before
            any model loads where it can be told then).
        RunAborted: the students' server cannot be reached or does not answer (busy, timed out: the same call again
            resumes).
        MissingKeyError: the judge's key, or the students' server's ([evaluate] api_key_env), is not set (before any
            student answers).
        KeyProviderError: a key would reach another provider's host.
        SeedError: the evaluation set cannot be read.
        RunDirError: `out` is not refed's to take.
        RunInterrupted: a signal stopped the answering or the judging (the same call again resumes: the answers and
            judgments made are kept).
    """
    config = given_config(config) or Config()
    if not show_progress:
        config = config.model_copy(update={"run": config.run.model_copy(update={"progress": False})})
    out, sides, items, source = prepare(student, eval_set, out, config, baseline)
    if judge is None:
        check_key(config.judge, "judge")  # before the students answer: a judging that cannot start is said first
    served = config.evaluate.server is not None
    plan = plan_of(config, sides, "" if served else Student.dtype_for(config.train.device, config.train.dtype))
    with owned(out, "evaluate", "refed evaluate", flag="--out"):
        check_plan(out / PLAN, plan, write=False)
        answers = answer_all(sides, items, config, out, plan, [Path(p) for p in reuse])
    return run_sync(_judged(out, sides, items, source, answers, config, judge, on_mismatch, show_progress))


async def _judged(
    out: Path,
    sides: list[Side],
    items: list[tuple[str, str]],
    source: Path,
    answers: dict[tuple[str, str], str],
    config: Config,
    judge_lm: Any,
    on_mismatch: str,
    show_progress: bool,
) -> Evaluation:
    """The judging of the answers on the launch path (as `refed judge` runs, its [judging] under [evaluate]'s caps),
    then the figures written to evaluation.json."""
    ev, paid = config.evaluate, answering_paid(out)
    calls, cost = left(config, paid)  # the caps hold the students' server's answers too (judge_in counts its own)
    caps = {"pointwise": False, "pairwise": True, "max_calls": calls, "max_cost_usd": cost}
    judging = config.model_copy(update={"judging": config.judging.model_copy(update=caps)})
    rundir, ours = RunDir(out), {"kind": "evaluate", "existing": True, "flag": "--out"}
    samples = judged_samples(items, answers)
    if on_mismatch == "fresh" and judged_alike(rundir, judging):  # only judgments of another judge config are deleted
        on_mismatch = "error"  # (and with them what they paid, which the caps count: the same config's are kept)
    summary = await judge_in(rundir, judging, ours, judge_lm, on_mismatch, show_progress, False, samples)
    found = figures(items, answers, list(read_jsonl(rundir.judgments)), (ev.bootstrap, ev.seed))
    result = Evaluation(
        student=sides[0].label,
        baseline=sides[1].label,
        eval_set=str(source),
        instructions=len(items),
        ids=[key for key, _ in items],
        **found,
        verdict=verdict_of(found),
        judge=summary.judge,
        judge_calls=int(summary.usage.get("calls") or 0),
        cost_usd=summary.cost_usd,
        status=summary.status,
        answers=str(out / ANSWERS),
        answer_calls=int(paid["calls"]),
        answer_cost_usd=paid["cost_usd"],
    )
    write_json_atomic(out / EVALUATION, result.to_json())
    return result
