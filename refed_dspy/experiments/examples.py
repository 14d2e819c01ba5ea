"""An experiment's examples: the references themselves, or (the respond target) the samples of one refed synthesis
over all references, made within what the experiment's budget leaves."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import dspy

from refed_dspy.errors import ConfigError, FinishedShort
from refed_dspy.experiments.config import example_key
from refed_dspy.experiments.plan import SIDES, ExperimentPlan, check_pinned
from refed_dspy.experiments.spend import left_to_spend, lesser
from refed_dspy.optimizers.examples import examples_from_run, reference_examples
from refed_dspy.optimizers.run import examples_config
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.cache import shared_cache
from refed_dspy.store.jsonl import read_json
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import RunDir
from refed_dspy.store.seeds import interleaved
from refed_dspy.synthesis.api import arun_synthesis
from refed_dspy.synthesis.summary import shortfall_cause

log = logging.getLogger(__name__)


def experiment_examples(plan: ExperimentPlan) -> dict[str, dict[str, list[dspy.Example]]]:
    """Each target's examples (target -> side -> examples), split with their references; each target's split pinned
    (`examples-<target>.json`). ConfigError when a side has none."""
    sides, examples = plan.sides, {}
    # the examples synthesis takes references side by side: should it reach its size early, every side has some
    ordered = interleaved([sides["test"], sides["val"], sides["train"]])
    for target in sorted({cfg.optimize.target for cfg in plan.configs.values()}):
        with shared_cache(plan.cache(plan.base_config)):
            exs = _examples(plan, target, ordered)
        examples[target] = {
            side: [e for e in exs if e.reference_id in {r.id for r in refs}] for side, refs in sides.items()
        }
        if not all(examples[target].values()):  # checked before the split is pinned: no cell ever saw this one
            raise ConfigError(
                f"target {target}: the examples split into "
                + ", ".join(f"{len(v)} {k}" for k, v in examples[target].items())
                + ": every side needs at least one"
                + (
                    " (the examples synthesis went on for it, a pass over the references at most: its references' "
                    f"replies were rejected, see {plan.out / 'examples' / 'rejects.jsonl'}; add references or change "
                    "the teacher, with experiment.out a new directory)"
                    if target == "respond"
                    else " (add references)"
                )
            )
        pin = plan.out / f"examples-{target}.json"
        if not all(read_json(pin).get(side, True) for side in SIDES):
            pin.unlink()  # an earlier version pinned a split with an empty side before it refused it: no cell saw it
        check_pinned(pin, {side: sorted(example_key(e) for e in v) for side, v in examples[target].items()})
    return examples


def _examples(plan: ExperimentPlan, target: str, references: list[Reference]) -> list[dspy.Example]:
    """The examples of `target`, each with its reference_id (the respond target's from a complete synthesis run, within
    what the experiment's budget leaves: a run it cut short stops the experiment, which the same command resumes).

    A synthesis that reaches its size with a side still lacking examples (its references' replies were rejected while
    the others' were kept) goes on, by as many samples as there are sides (or a tenth of the references) at a time and
    one more pass over the references at most, until every side has one: its units take the references side by side,
    so each step reaches the lacking side's next ones."""
    if target != "respond":
        return reference_examples(references)
    refs = {r.id: (r.instruction, r.response) for r in references}
    sides = {side: {r.id for r in side_refs} for side, side_refs in plan.sides.items()}
    size, most = plan.settings.examples, plan.settings.examples + len(references)
    step = max(len(sides), math.ceil(len(references) / 10))
    while True:
        run_dir, status = _synthesized(plan, references, size)
        exs = examples_from_run(run_dir, refs)
        lacking = [side for side, ids in sides.items() if not any(e.reference_id in ids for e in exs)]
        size = max(size, len(exs))
        if not lacking or status != "complete" or size >= most:
            return exs
        size = min(size + step, most)
        log.info(
            "experiment: the examples synthesis gave no %s examples; it goes on to %d samples",
            " or ".join(lacking),
            size,
        )


def _synthesized(plan: ExperimentPlan, references: list[Reference], size: int) -> tuple[Path, str | None]:
    """The examples synthesis run to `size` samples (unless it holds them, or ended exhausted with some); its
    directory and how it ended. FinishedShort when it ended otherwise (the experiment's budget, a failure)."""
    spend, teacher = plan.spend, plan.teacher
    ex_config = examples_config(plan.base_config, plan.out, size=size)
    rd = RunDir(ex_config.run.dir)
    ended = read_json(rd.summary)
    # examples to use: a complete run (one that went on for a side holds `size` samples), or one exhausted with some
    # (what its references gave is final); one that ended with none is made again: with the setting its message advised
    # changed, its records (rejects only) were made by another config, and start over (the experiment's cache keeps
    # every paid answer)
    status, held = ended.get("status"), ended.get("samples") or 0
    if (status == "complete" and (held >= size or size == plan.settings.examples)) or (status == "exhausted" and held):
        return rd.path, status
    calls, cost = left_to_spend(spend.ledger, "the examples synthesis")
    syn = ex_config.synthesis
    update = {"max_calls": lesser(syn.max_calls, calls), "max_cost_usd": lesser(syn.max_cost_usd, cost)}
    ex_config = ex_config.model_copy(update={"synthesis": syn.model_copy(update=update)})
    mismatch = "error" if rd.samples.exists() else "fresh"  # no example made yet: nothing a cell has seen
    summary = run_sync(
        arun_synthesis(ex_config, teacher=teacher, references=references, on_mismatch=mismatch, show_progress=False)
    )
    spend.set_total("examples", summary.get("usage"), "teacher")
    cause = shortfall_cause(summary) or summary.get("exhausted") or "see its rejects.jsonl"
    if summary.get("status") == "exhausted" and summary.get("samples"):
        # the references gave all they will (what was rejected is final): these are the examples, if every side
        # has some (checked by the caller)
        log.warning(
            "warning: experiment: the examples synthesis gave %s of %d samples: its references yield no more (%s)",
            summary.get("samples"),
            size,
            cause,
        )
    elif summary.get("status") == "budget":
        raise FinishedShort(
            f"the examples synthesis into {rd.path} was stopped by the experiment's budget with "
            f"{summary.get('samples')} of {size} samples; every cell must see the same examples, so "
            "none started (raise experiment.max_calls / max_cost_usd; the same command goes on)"
        )
    elif summary.get("status") != "complete":
        again = (
            "change that, and the same command makes the examples again"
            if summary.get("status") == "exhausted"  # with none: what its references gave so far is nothing
            else "the same command goes on"
        )
        raise FinishedShort(
            f"the examples synthesis into {rd.path} ended {summary.get('status')} with {summary.get('samples')} of "
            f"{size} samples; every cell must see the same examples, so none started ({cause}; {again})"
        )
    return rd.path, summary.get("status")
