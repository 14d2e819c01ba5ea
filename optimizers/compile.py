"""Compile the per-instruction program with a DSPy optimizer against the judge metric.

Only the bootstrap optimizers are wired and tested so far; MIPROv2, GEPA and SIMBA are named in
OPTIMIZERS but raise until their stand-in tests exist (see the optimization issue).
"""

from __future__ import annotations

from typing import Any

import dspy

from refed_dspy.errors import ConfigError

OPTIMIZERS = ("bootstrap", "bootstrap_random_search", "miprov2", "gepa", "simba")
BUILT = ("bootstrap", "bootstrap_random_search")


def evaluate(program: dspy.Module, devset: list[dspy.Example], metric, lm: dspy.LM) -> float:
    """Mean metric value of `program` (run on `lm`) over `devset`, sequentially (0.0 for an empty set)."""
    if not devset:
        return 0.0
    total = 0.0
    for ex in devset:
        with dspy.context(lm=lm):
            pred = program(**ex.inputs())
        total += float(metric(ex, pred))
    return round(total / len(devset), 4)


def optimize(program: dspy.Module, trainset: list[dspy.Example], valset: list[dspy.Example], *, metric, lm: dspy.LM,
             optimizer: str = "bootstrap", max_demos: int = 2, num_candidates: int = 4, seed: int = 0) -> dict[str, Any]:
    """Compile `program` on `lm` against `metric`; returns {program, optimizer, score_before, score_after}."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{optimizer}'; available: {', '.join(OPTIMIZERS)}")
    if optimizer not in BUILT:
        raise ConfigError(f"optimizer '{optimizer}' is not built yet; built: {', '.join(BUILT)}")
    if not trainset:
        raise ConfigError("the optimization trainset is empty")
    before = evaluate(program, valset, metric, lm)
    with dspy.context(lm=lm):
        if optimizer == "bootstrap":
            tp = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=max_demos, max_labeled_demos=0)
            compiled = tp.compile(program.deepcopy(), trainset=trainset)
        else:
            tp = dspy.BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=max_demos, max_labeled_demos=0,
                                                       num_candidate_programs=num_candidates, num_threads=1)
            compiled = tp.compile(program.deepcopy(), trainset=trainset, valset=valset or None)
    after = evaluate(compiled, valset, metric, lm)
    return {"program": compiled, "optimizer": optimizer, "score_before": before, "score_after": after}
