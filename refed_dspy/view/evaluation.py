"""An evaluation folder (`refed evaluate`'s) as the viewer shows it: each instruction with the two students' answers,
the judge's verdict in each order with its reason, and the figures of evaluation.json; read from the files as they
are, so an evaluation still answering or judging shows what it has.

The outcome of an instruction is the student's: `win` (more of its two judgments for the student than against),
`loss`, `tie` (both ties), `split` (one each way: the judge's position bias, or a close call), `unjudged`. An empty
answer is decided without the judge, as evaluation.json counts it (refed_dspy.training.evaluate.verdicts_of).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refed_dspy.store.jsonl import read_json, read_jsonl
from refed_dspy.store.ownership import kind_of
from refed_dspy.training.evaluate import ANSWERS, EVALUATION, EVALUATION_DIR, PLAN, outcomes, sample_id, verdicts_of

OUTCOMES = ("win", "loss", "tie", "split", "unjudged")
SIDES = {1: "student", -1: "baseline", 0: "tie"}
EMPTY = "an empty answer: decided without the judge"


@dataclass(frozen=True)
class Answered:
    """One instruction of an evaluation: both answers, and how the judge decided between them.

    Attributes:
        id: the instruction's id in the evaluation set.
        instruction: its text.
        student: the student's answer ('' until it answers).
        baseline: the baseline's answer.
        outcome: the student's outcome (OUTCOMES).
        verdicts: each order's verdict, as the side it chose: 'student', 'baseline' or 'tie' (empty: unjudged).
        reasons: the judge's reason for each verdict, in the same order.
    """

    id: str
    instruction: str
    student: str
    baseline: str
    outcome: str
    verdicts: tuple[str, ...]
    reasons: tuple[str, ...]


def evaluation_in(path: Path) -> Path | None:
    """The evaluation folder `path` is (by refed's marker, or by its answers and plan), or for a training folder the
    one `refed evaluate` puts there by default (`STUDENT/evaluation`); None when neither."""
    folders = (path, path / EVALUATION_DIR) if kind_of(path) == "train" else (path,)
    for folder in folders:
        if kind_of(folder) == "evaluate" or ((folder / ANSWERS).is_file() and (folder / PLAN).is_file()):
            return folder
    return None


def outcome_of(verdicts: list[int] | None) -> str:
    if verdicts is None:
        return "unjudged"
    total = sum(verdicts)
    if total:
        return "win" if total > 0 else "loss"
    return "split" if any(verdicts) else "tie"


def answered_rows(path: Path) -> list[Answered]:
    """Each instruction of the folder's answers.jsonl that its evaluation.json covers (all of them before it is first
    written; a later run may have asked fewer, `[evaluate] limit`), in the order first answered, with each side's last
    answer to the id's newest text (as the evaluation keeps them: an answer to an earlier text of the id is not this
    one's; a line torn by a kill skipped, nothing written), and the judgments in judgments.jsonl of exactly those two."""
    covered = set(read_json(path / EVALUATION).get("ids") or ()) or None
    texts: dict[str, str] = {}
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for row in read_jsonl(path / ANSWERS):
        if covered is not None and row["id"] not in covered:
            continue
        texts[row["id"]] = row["instruction"]
        last[(row["id"], row["role"])] = row
    judgments = list(read_jsonl(path / "judgments.jsonl"))
    found = outcomes(judgments)
    reasons = {row["sample_id"]: (row.get("pairwise") or {}).get("rationales") or [] for row in judgments}
    out = []
    for key, text in texts.items():
        sides = {role: last.get((key, role)) for role in ("student", "baseline")}
        said = {role: row["answer"] for role, row in sides.items() if row and row["instruction"] == text}
        mine, theirs = said.get("student", ""), said.get("baseline", "")
        verdicts = verdicts_of(key, text, mine, theirs, found) if len(said) == 2 else None
        why = reasons.get(sample_id(key, text, mine, theirs), []) if len(said) == 2 else []
        if verdicts is not None and not why:
            why = [EMPTY, EMPTY]
        shown = tuple(SIDES[v] for v in verdicts or [])
        out.append(Answered(key, text, mine, theirs, outcome_of(verdicts), shown, tuple(str(r) for r in why)))
    return out
