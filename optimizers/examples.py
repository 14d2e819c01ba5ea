"""Train and validation examples: for the per-instruction program, from a finished run dir; for the
instructions and pipeline targets, the references themselves.

Each example is one synthesized instruction with its reference pair and the reference's response
feedback as inputs (what RespondAndImprove receives); the reference response stays available to the
judge as a point of comparison. The split is by reference and uses a fixed seed.

Where an optimization's examples come from (`optimization_examples`): the caller's (split when no valset is
given), the references themselves (targets instructions and pipeline), or for the respond target the samples of
`optimize.examples_run` or of a small refed synthesis into `<out>/examples`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.engine.progress import progress_within
from refed_dspy.errors import ConfigError, FinishedShort, RunDirError
from refed_dspy.ledger.call_log import unaccounted
from refed_dspy.ledger.usage import Totals
from refed_dspy.optimizers.plan import OptimizePlan, held_to
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.jsonl import read_jsonl
from refed_dspy.store.rundir import RunDir
from refed_dspy.store.seeds import split_by_reference
from refed_dspy.synthesis.api import arun_synthesis

INPUTS = ("reference_instruction", "reference_response", "instruction", "feedback")
EXAMPLES_STAGE = "examples"  # what the synthesis of an optimization's examples paid, on the optimization's ledger


def examples_spent(run_dir: Path) -> dict[str, Any]:
    """What the synthesis in `run_dir` has paid over all its invocations, as its files say (its records, and what its
    ledger holds that no record does); {} when there is none yet."""
    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        return {}
    totals = Totals()
    rd.load(repair=False, tally=totals.add)
    totals.add(unaccounted(rd.ledger))
    return totals.as_dict()


def examples_from_run(run_dir: str | Path, references: dict[str, tuple[str, str]]) -> list[dspy.Example]:
    """One Example per sample of `run_dir` whose reference (id -> (instruction, response)) is known.

    Args:
        run_dir: the run dir whose samples.jsonl (and feedback) the examples are read from.
        references: reference id -> (instruction, response); a sample of any other reference is skipped.

    Returns:
        The examples, in the samples' order, with INPUTS as inputs and `reference_id` set.

    Raises:
        RunDirError: `run_dir` has no samples.jsonl.
    """
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
    """Train and validation sets with disjoint references (fixed seed), at most n_train and n_val long.

    Args:
        examples: the examples to split, each with a `reference_id`.
        n_train: the most training examples kept.
        n_val: the most validation examples kept.
        seed: the seed that draws which references go to validation.
        val_fraction: the share of the examples that validation aims for (refed_dspy.store.seeds.split_by_reference).

    Returns:
        The training and validation lists, each in the input order.
    """
    train, val = split_by_reference(examples, val_fraction, seed, key=lambda e: e.reference_id)
    return train[:n_train], val[:n_val]


def reference_examples(references: list[Any]) -> list[dspy.Example]:
    """One Example per reference (input `reference`), for the instructions and pipeline targets: their programs
    start from a reference, as a synthesis run does."""
    return [dspy.Example(reference=ref, reference_id=ref.id).with_inputs("reference") for ref in references]


@dataclass(frozen=True)
class OptimizeExamples:
    """What an optimization trains and validates on, and where the examples came from."""

    train: list[dspy.Example]
    val: list[dspy.Example]
    run_dir: Path | None = None  # the run they were read from (optimize.examples_run, or <out>/examples)
    usage: dict[str, Any] = field(default_factory=dict)  # what the synthesis that made them spent ({}: none ran)


def optimization_examples(
    plan: OptimizePlan, max_calls: int | None = None, max_cost_usd: float | None = None
) -> OptimizeExamples:
    """The plan's examples: the caller's; for targets instructions and pipeline the references; for respond the
    samples of optimize.examples_run or of a small synthesis (made here, its run held to `max_calls` and
    `max_cost_usd` in all, what the optimization's limits leave). ConfigError (FinishedShort when the synthesis fell
    short) when either side would be empty."""
    cfg = plan.settings
    if plan.given.trainset is not None:
        train, val = _given_sets(plan.given.trainset, plan.given.valset, cfg)
        if not train or not val:
            raise ConfigError(
                f"{len(train)} training and {len(val)} validation examples: both sides need at "
                "least one (give a valset, or more examples)"
            )
        return OptimizeExamples(train, val)
    if cfg.target != "respond":  # the instructions and pipeline programs start from references
        train, val = split_examples(
            reference_examples(plan.references), cfg.n_train, cfg.n_val, cfg.seed, val_fraction=cfg.val_fraction
        )
        if not train or not val:
            raise ConfigError(
                f"{len(plan.references)} references give {len(train)} training and {len(val)} validation "
                f"examples for target {cfg.target!r}; both sides need at least one (more references)"
            )
        return OptimizeExamples(train, val)
    return _respond_examples(plan, max_calls, max_cost_usd)


def _respond_examples(plan: OptimizePlan, max_calls: int | None, max_cost_usd: float | None) -> OptimizeExamples:
    """The respond target's examples: the samples of optimize.examples_run, or of the synthesis made here."""
    cfg, references = plan.settings, plan.references
    examples_dir, summary = run_sync(_examples_run(plan, max_calls, max_cost_usd))
    if summary and not summary.get("samples"):
        raise FinishedShort(f"no optimization examples: {_what_happened(examples_dir, summary)}")
    exs = examples_from_run(examples_dir, {r.id: (r.instruction, r.response) for r in references})
    train, val = split_examples(exs, cfg.n_train, cfg.n_val, cfg.seed, val_fraction=cfg.val_fraction)
    if not train or not val:
        error = FinishedShort if summary else ConfigError
        raise error(
            f"{_what_happened(examples_dir, summary)}: that gives {len(train)} training and {len(val)} "
            "validation examples, and both sides need at least one (more samples, or more references)"
        )
    return OptimizeExamples(train, val, examples_dir, summary.get("usage", {}))


async def _examples_run(
    plan: OptimizePlan, max_calls: int | None, max_cost_usd: float | None
) -> tuple[Path, dict[str, Any]]:
    """The run dir the examples come from, and the summary of the synthesis that made them ({} when given)."""
    if plan.examples_config is None:
        return Path(plan.settings.examples_run), {}
    with progress_within("optimize: its examples"):  # not the run's own synthesis: the lines say whose it is
        summary = await arun_synthesis(
            held_to(plan.examples_config, max_calls, max_cost_usd),
            teacher=plan.teacher,
            references=plan.references,
            on_mismatch=plan.on_mismatch,
            show_progress=plan.run.progress,
        )
    return Path(plan.examples_config.run.dir), summary


def _what_happened(examples_dir: Path, summary: dict[str, Any]) -> str:
    """For an error message: what the examples synthesis made and why it made no more."""
    if not summary:
        return f"{examples_dir} (optimize.examples_run)"
    rejects = ", ".join(f"{n} {r}" for r, n in sorted((summary.get("rejects") or {}).items(), key=lambda kv: -kv[1]))
    return (
        f"the examples synthesis into {examples_dir} made {summary.get('samples', 0)} samples from "
        f"{(summary.get('usage') or {}).get('calls', 0)} LM calls ({summary.get('status')}; rejects: {rejects or 'none'}; "
        f"see its rejects.jsonl)"
    )


def _given_sets(trainset: list, valset: list | None, cfg: Any) -> tuple[list, list]:
    """A caller's examples: checked, and split (by reference when they carry reference_id) when no valset is given."""
    import random

    for name, items in (("trainset", trainset), ("valset", valset or [])):
        if not isinstance(items, list) or not all(isinstance(e, dspy.Example) for e in items):
            raise ConfigError(f"{name} takes a list of dspy.Example (with .with_inputs(...) set)")
    if valset:
        return list(trainset), list(valset)
    if all(e.get("reference_id") for e in trainset):
        return split_examples(trainset, len(trainset), len(trainset), cfg.seed, val_fraction=cfg.val_fraction)
    order = list(trainset)
    random.Random(cfg.seed).shuffle(order)
    n_val = max(1, round(len(order) * cfg.val_fraction)) if len(order) > 1 else 0
    return order[n_val:], order[:n_val]
