"""An optimization's examples: the caller's (split when no valset is given), the references themselves (targets
instructions and pipeline), or for the respond target the samples of `optimize.examples_run` or of a small refed
synthesis into `<out>/examples`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy

from refed_dspy.config import Config
from refed_dspy.errors import ConfigError
from refed_dspy.optimizers.examples import split_examples
from refed_dspy.store.records import Reference
from refed_dspy.synthesis.api import arun_synthesis


def examples_config(config: Config, out: Path, size: int | None = None) -> Config:
    """The small refed synthesis into `out/examples` that provides examples when no examples_run is given: `size`
    samples (default: optimize.n_train + n_val)."""
    data = config.model_dump(mode="json")
    cfg = config.optimize
    data["run"]["dir"] = str(out / "examples")
    data["synthesis"].update(
        method="refed", size=size or cfg.n_train + cfg.n_val, instructions_per_feature=1, program=None, mode="online"
    )
    data["tracking"]["enabled"] = False
    return Config.model_validate(data)


async def _examples(
    config: Config, out: Path, teacher: dspy.LM, references: list[Reference], on_mismatch: str
) -> tuple[Path, dict[str, Any]]:
    """The run dir the examples come from, and the summary of the synthesis that made them ({} when given)."""

    if config.optimize.examples_run:
        return Path(config.optimize.examples_run), {}
    ex_config = examples_config(config, out)
    summary = await arun_synthesis(
        ex_config, teacher=teacher, references=references, on_mismatch=on_mismatch, show_progress=config.run.progress
    )
    return Path(ex_config.run.dir), summary


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
