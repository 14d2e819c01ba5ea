"""An experiment's examples: the references themselves, or (the respond target) the samples of one refed synthesis
over all references, made within what the experiment's budget leaves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.config import Config
from refed_dspy.errors import FinishedShort
from refed_dspy.experiments.allowance import _least, _left
from refed_dspy.experiments.experiment_config import ExperimentSettings
from refed_dspy.experiments.optimize import examples_config
from refed_dspy.experiments.spend import Spend
from refed_dspy.optimizers.examples import examples_from_run, reference_examples
from refed_dspy.store.jsonl import read_json
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import RunDir
from refed_dspy.sync import run_sync
from refed_dspy.synthesis.api import arun_synthesis
from refed_dspy.synthesis.shortfall import shortfall_cause

log = logging.getLogger(__name__)


def _examples(
    target: str,
    settings: ExperimentSettings,
    config: Config,
    out: Path,
    teacher: Any,
    references: list[Reference],
    spend: Spend,
) -> list[dspy.Example]:
    """The examples of `target`, each with its reference_id (the respond target's from a complete synthesis run, within
    what the experiment's budget leaves: a run it cut short stops the experiment, which the same command resumes)."""
    if target != "respond":
        return reference_examples(references)
    ex_config = examples_config(config, out, size=settings.examples)
    rd = RunDir(ex_config.run.dir)
    finished = read_json(rd.summary).get("status") in ("complete", "exhausted")
    if not finished:
        calls, cost = _left(spend.ledger, "the examples synthesis")
        syn = ex_config.synthesis
        update = {"max_calls": _least(syn.max_calls, calls), "max_cost_usd": _least(syn.max_cost_usd, cost)}
        ex_config = ex_config.model_copy(update={"synthesis": syn.model_copy(update=update)})
        summary = run_sync(
            arun_synthesis(ex_config, teacher=teacher, references=references, on_mismatch="error", show_progress=False)
        )
        spend.set_total("examples", summary.get("usage"))
        cause = shortfall_cause(summary) or summary.get("exhausted") or "see its rejects.jsonl"
        if summary.get("status") == "exhausted" and summary.get("samples"):
            # the references gave all they will (what was rejected is final): these are the examples, if every side
            # has some (checked by the caller)
            log.warning(
                "warning: experiment: the examples synthesis gave %s of %d samples: its references yield no more (%s)",
                summary.get("samples"),
                settings.examples,
                cause,
            )
        elif summary.get("status") == "budget":
            raise FinishedShort(
                f"the examples synthesis into {rd.path} was stopped by the experiment's budget with "
                f"{summary.get('samples')} of {settings.examples} samples; every cell must see the same examples, so "
                "none started (raise experiment.max_calls / max_cost_usd; the same command goes on)"
            )
        elif summary.get("status") != "complete":
            raise FinishedShort(
                f"the examples synthesis into {rd.path} ended {summary.get('status')} with {summary.get('samples')} of "
                f"{settings.examples} samples; every cell must see the same examples, so none started ({cause}; the "
                "same command goes on)"
            )
    refs = {r.id: (r.instruction, r.response) for r in references}
    return examples_from_run(rd.path, refs)
