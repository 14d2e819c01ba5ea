"""An experiment resolved once, before any call: `plan_experiment` turns its settings, its base config and the LMs
handed in into an `ExperimentPlan` (each cell's config, the references split once, each cell's level, the ledger of
what every invocation spent), which experiment.py then runs.

Before the experiment's directory is taken, `check_given_lms` refuses what cannot run (a grid varying an LM handed
in; under a cost budget, an LM with no price). Under its lock, the plan pins the split (`split.json`: a resumed
experiment whose references would split otherwise is refused) and refuses a finished cell whose settings changed.
The parts share one DSPy cache per set of endpoints (`cache_dir`).

Its examples (`experiment_examples`): the references themselves, or (the respond target) the samples of one refed
synthesis over all references, made within what the experiment's budget leaves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.config import Config
from refed_dspy.errors import ConfigError, FinishedShort
from refed_dspy.experiments.config import (
    GRID_FILE,
    Cell,
    ExperimentSettings,
    cell_config,
    cells,
    example_key,
    finished_hashes,
)
from refed_dspy.experiments.spend import left_to_spend, lesser
from refed_dspy.launch.plan import check_role, endpoints_of
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.ledger.spend import Spend
from refed_dspy.optimizers.examples import examples_from_run, reference_examples
from refed_dspy.optimizers.run import examples_config
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.cache import shared_cache
from refed_dspy.store.jsonl import read_json, write_json_atomic
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import RunDir
from refed_dspy.store.seeds import interleaved, read_seeds, split_three
from refed_dspy.synthesis.api import arun_synthesis
from refed_dspy.synthesis.program import with_lm_of
from refed_dspy.synthesis.summary import shortfall_cause


@dataclass(frozen=True)
class ExperimentPlan:
    """An experiment resolved before any call (see the module docstring)."""

    settings: ExperimentSettings
    base: dict[str, Any]  # the run config the cells' values are laid over
    base_config: Config
    grid: list[Cell]
    configs: dict[str, Config]  # each cell's config by cell id: its values, optimize.seed + its repeat
    out: Path
    teacher: Any  # handed in (None: each cell's config builds its own); judge the same
    judge: Any
    sides: dict[str, list[Reference]]  # the references split once: train, val, test
    cell_level: float  # each cell's interval's level: 1 - (1 - level) / cells (Bonferroni)
    spend: Spend  # what the experiment spent, by part, over every invocation; its ledger holds the budget

    @property
    def check(self) -> tuple[list[Reference], int] | None:
        """The synthesis check's test references and size (None: experiment.synthesize is 0)."""
        return (self.sides["test"], self.settings.synthesize) if self.settings.synthesize else None

    def model(self, role: str, cfg: Config) -> str:
        """The model `role` ("teacher", "judge") runs under `cfg`: the LM's handed in, else the config's."""
        given = getattr(self, role)
        return getattr(cfg if given is None else with_lm_of(cfg, role, given), role).model

    def cache(self, cfg: Config) -> Path:
        """The DSPy cache of every part that runs `cfg` (see cache_dir)."""
        return cache_dir(self.out, cfg, self.teacher, self.judge)


def check_given_lms(settings: ExperimentSettings, base: dict[str, Any], lms: dict[str, Any]) -> None:
    """Before the experiment's directory is taken: an LM handed in (`lms`: role -> LM or None) may not be varied by
    the grid, every cell's LMs send their keys only to their providers' hosts (KeyProviderError: no cell has spent
    yet), and under experiment.max_cost_usd every LM that will spend it needs a price (ConfigError)."""
    for role, lm in lms.items():
        varied = [p for p in settings.grid if p == role or p.startswith(f"{role}.")]
        if lm is not None and varied:
            raise ConfigError(f"{role}= is given, so the grid cannot vary {', '.join(varied)}")
    for cell in cells(settings.grid, settings.repeats):
        cfg = cell_config(base, cell.overrides(0))
        for role, spec in (("teacher", cfg.teacher), ("judge", cfg.judge)):
            if lms[role] is None:
                check_role(spec, role, None)
    if settings.max_cost_usd is not None:  # before any call: every LM that will spend the budget needs a price
        for cell in cells(settings.grid, settings.repeats):
            cfg = cell_config(base, cell.overrides(0))
            for role, spec, given in (("teacher", cfg.teacher, lms["teacher"]), ("judge", cfg.judge, lms["judge"])):
                used = spec if given is None else getattr(with_lm_of(cfg, role, given), role)
                check_role(used, role, "experiment.max_cost_usd", key=False, handed_in=given is not None)


def plan_experiment(
    settings: ExperimentSettings, base: dict[str, Any], lms: dict[str, Any], references: list[Reference] | None
) -> ExperimentPlan:
    """The experiment of `settings` over `base`, with the LMs handed in (`lms`: role -> LM or None) and `references`
    (None: the base config's [seeds]), resolved; run under the experiment directory's lock (it pins the split)."""
    base_config = cell_config(base, {})
    grid = cells(settings.grid, settings.repeats)
    out = Path(settings.out)
    if references is None:
        references, _ = read_seeds(base_config.seeds)
    sides = pinned_sides(out / "split.json", references, settings)
    _check_finished_cells(grid, base, out)
    # the grid of this invocation, for `refed status`: a cell not yet started has no file of its own
    write_json_atomic(out / GRID_FILE, {"cells": [{"id": c.id, "label": c.label} for c in grid]})
    seed = base_config.optimize.seed
    return ExperimentPlan(
        settings=settings,
        base=base,
        base_config=base_config,
        grid=grid,
        configs={cell.id: cell_config(base, cell.overrides(seed)) for cell in grid},
        out=out,
        teacher=lms["teacher"],
        judge=lms["judge"],
        sides=sides,
        cell_level=1 - (1 - settings.level) / max(1, len(grid)),
        # the whole experiment's calls and cost, started from what earlier invocations spent (spent.json)
        spend=Spend(
            out / "spent.json", CallBudget(settings.max_calls, settings.max_cost_usd), base_config.run.new_ledger
        ),
    )


SIDES = ("train", "val", "test")


def _rule(settings: ExperimentSettings) -> dict[str, Any]:
    """What decides the split of the references, as split.json keeps it."""
    return {"seed": settings.seed, "test_fraction": settings.test_fraction, "val_fraction": settings.val_fraction}


def pinned_sides(path: Path, references: list[Reference], settings: ExperimentSettings) -> dict[str, list[Reference]]:
    """The references' sides for the life of the experiment (`split.json`): drawn once (`_split`) and kept with the
    settings that drew them; a resumed experiment takes the sides it pinned (in the references' order) as long as those
    settings and the references are the same, even where a later version of refed would draw them otherwise, so that
    nothing paid for is paid again. ConfigError when the references or the settings changed: its cells would not
    compare."""
    before = read_json(path)
    ids = {r.id for r in references}
    kept = {side: before.get(side) for side in SIDES}
    same_refs = all(isinstance(v, list) for v in kept.values()) and sorted(
        i for v in kept.values() for i in v
    ) == sorted(ids)
    if before and same_refs and before.get("rule") == _rule(settings):
        return {side: [r for r in references if r.id in set(kept[side])] for side in SIDES}
    sides = _split(references, settings)
    check_pinned(path, {side: sorted(r.id for r in refs) for side, refs in sides.items()}, {"rule": _rule(settings)})
    return sides


def _split(references: list[Reference], settings: ExperimentSettings) -> dict[str, list[Reference]]:
    """The references split once, seeded and by reference, into train / val / test; ConfigError when a side is empty."""
    train_refs, val_refs, test_refs = split_three(
        references, settings.test_fraction, settings.val_fraction, settings.seed, key=lambda r: r.id
    )
    sides = {"train": train_refs, "val": val_refs, "test": test_refs}
    if not all(sides.values()):
        raise ConfigError(
            f"{len(references)} references split into {len(train_refs)} train, {len(val_refs)} validation and "
            f"{len(test_refs)} test: every side needs at least one (more references, or other fractions)"
        )
    return sides


def _check_finished_cells(grid: list[Cell], base: dict[str, Any], out: Path) -> None:
    """Before any call: a finished cell whose config has changed since (judge, teacher, optimizer settings) is refused,
    since its scores would be compared with another baseline's."""
    for cell in grid:
        row = read_json(out / "cells" / cell.id / "cell.json")
        cfg = cell_config(base, cell.overrides(cell_config(base, {}).optimize.seed))
        if row.get("status") != "done" or row.get("config_hash") in finished_hashes(cfg):
            continue
        raise ConfigError(
            f"cell {cell.id} finished under other settings (the judge, teacher or optimizer settings, or the prompt "
            "format of this refed, changed since): its scores would be compared with another baseline's; give "
            "experiment.out a new directory"
        )


def check_pinned(path: Path, sides: dict[str, list[str]], extra: dict[str, Any] | None = None) -> None:
    """The split (of references, `split.json`; of each target's examples, `examples-<target>.json`) is fixed for the
    life of the experiment: a resumed one whose sides would hold other items is refused. `extra` is kept beside the
    sides (what drew them)."""
    before = read_json(path)
    if before and {k: v for k, v in before.items() if k in sides} != sides:
        raise ConfigError(
            f"{path}: the references or examples now split differently (other seeds, fractions, references or "
            "experiment.examples) than when this experiment began; its cells would not compare: give experiment.out "
            "a new directory"
        )
    if not before:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**sides, **(extra or {})})


def cache_dir(out: Path, cfg: Config, teacher: Any = None, judge: Any = None) -> Path:
    """The experiment's one DSPy cache for the endpoints `cfg` (or the LMs handed in) reach: every part (examples,
    baselines, cells, synthesis checks, resumes) that asks the same thing of them is answered once. DSPy's cache key
    ignores api_base, so cells whose LMs differ only in their endpoint keep apart."""
    ends = {
        role: endpoints_of(spec, lm)
        for role, spec, lm in (("teacher", cfg.teacher, teacher), ("judge", cfg.judge, judge))
    }
    return out / "cache" / hashlib.sha256(json.dumps(ends, sort_keys=True).encode()).hexdigest()[:10]


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
