"""Train and validation examples: for the per-instruction program, from a finished run dir; for the
instructions and pipeline targets, the references themselves.

Each example is one synthesized instruction with its reference pair and the reference's response
feedback as inputs (what RespondAndImprove receives); the reference response stays available to the
judge as a point of comparison. The split is by reference and uses a fixed seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy

from refed_dspy.errors import RunDirError
from refed_dspy.store.jsonl import read_jsonl
from refed_dspy.store.rundir import RunDir
from refed_dspy.store.split import split_by_reference

INPUTS = ("reference_instruction", "reference_response", "instruction", "feedback")


def examples_from_run(run_dir: str | Path, references: dict[str, tuple[str, str]]) -> list[dspy.Example]:
    """One Example per sample of `run_dir` whose reference (id -> (instruction, response)) is known."""
    rd = RunDir(run_dir)
    if not rd.samples.exists():
        raise RunDirError(f"{rd.path} has no samples.jsonl; synthesize first to get optimization examples")
    feedback = {row["reference_id"]: row.get("response_feedback") or "" for row in read_jsonl(rd.feedback)}
    out = []
    for s in read_jsonl(rd.samples):
        ref = references.get(s["meta"]["reference_id"])
        if ref is None:
            continue
        out.append(
            dspy.Example(
                reference_instruction=ref[0],
                reference_response=ref[1],
                instruction=s["instruction"],
                feedback=feedback.get(s["meta"]["reference_id"], ""),
                reference_id=s["meta"]["reference_id"],
            ).with_inputs(*INPUTS)
        )
    return out


def split_examples(
    examples: list[dspy.Example], n_train: int, n_val: int, seed: int = 0, val_fraction: float = 1 / 3
) -> tuple[list, list]:
    """Train and validation sets with disjoint references (fixed seed), at most n_train and n_val long."""
    train, val = split_by_reference(examples, val_fraction, seed, key=lambda e: e.reference_id)
    return train[:n_train], val[:n_val]


def reference_examples(references: list[Any]) -> list[dspy.Example]:
    """One Example per reference (input `reference`), for the instructions and pipeline targets: their programs
    start from a reference, as a synthesis run does."""
    return [dspy.Example(reference=ref, reference_id=ref.id).with_inputs("reference") for ref in references]
