"""What `refed optimize` tunes: `[optimize]`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from refed_dspy.config.section import Registered, Section, UserPath
from refed_dspy.registry import OPTIMIZERS, TARGETS


class OptimizeConfig(Section):
    """What `refed optimize` tunes, on which examples, and how much it may spend."""

    target: Annotated[str, AfterValidator(Registered(TARGETS))] = Field(
        "respond",
        description="What is tuned: respond (the per-instruction program: generate and improve; examples are synthesized instructions), instructions (describe and synthesize: what the dataset is about; examples are references, judged on instruction quality and novelty), or pipeline (every predictor of the method; examples are references, judged on the samples' value and diversity).",
    )
    optimizer: Annotated[str, AfterValidator(Registered(OPTIMIZERS))] = Field(
        "miprov2",
        description="The optimizer (refed_dspy.optimizers.teleprompters; an optimizer you register is accepted too).",
    )
    auto: Literal["light", "medium", "heavy"] | None = Field(
        "light",
        description="MIPROv2 and GEPA preset. Unset: num_candidates/num_trials (MIPROv2) or max_metric_calls (GEPA) decide.",
    )
    examples_run: UserPath | None = Field(
        None,
        description="A finished run dir (method refed) whose samples give the examples. Unset: synthesize n_train + n_val samples into <out>/examples first.",
    )
    n_train: int = Field(20, gt=0, description="Training examples at most.")
    n_val: int = Field(
        10, gt=0, description="Validation examples at most (disjoint references from the training ones)."
    )
    seed: int = Field(0, description="Seed of the split and of the optimizer.")
    max_demos: int = Field(
        2, ge=0, description="Bootstrapped demos per predictor (bootstrap, random search, MIPROv2, SIMBA)."
    )
    num_candidates: int = Field(
        4,
        gt=0,
        description="Candidate programs (random search, SIMBA) or instruction candidates (MIPROv2 without auto).",
    )
    num_trials: int | None = Field(None, gt=0, description="MIPROv2 without auto: optimization trials.")
    max_metric_calls: int | None = Field(None, gt=0, description="GEPA: metric calls in all (overrides auto).")
    max_steps: int = Field(4, gt=0, description="SIMBA: optimization steps.")
    bsize: int = Field(8, gt=0, description="SIMBA: mini-batch size (at most the trainset size).")
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Metric value at or above which a bootstrapped trace counts as a success (it becomes a demo); "
        "unset: the starting program's mean score on validation, so a trace at least as good as the program's "
        "typical output is kept whatever the metric's scale.",
    )
    win_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Weight of the improvement's win over the draft in the metric (the rest is the normalized rubric score).",
    )
    novelty_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="instructions target: weight of the instructions' novelty (1 - ROUGE-L against the reference and their siblings) in the metric (the rest is their judged quality).",
    )
    diversity_weight: float = Field(
        0.2,
        ge=0,
        le=1,
        description="pipeline target: weight of the diversity of the samples' instructions (1 - mean pairwise ROUGE-L) in the metric (the rest is the samples' judged value).",
    )
    instructions_per_feature: int = Field(
        2,
        gt=0,
        le=20,
        description="instructions and pipeline targets: new instructions per feature the program makes from each example reference.",
    )
    num_threads: int = Field(4, gt=0, le=256, description="Threads the optimizer evaluates with.")
    max_calls: int | None = Field(
        None, gt=0, description="Stop before teacher + judge LM calls would exceed this (cache hits are free)."
    )
    max_cost_usd: float | None = Field(None, gt=0, description="Stop before teacher + judge cost would exceed this.")
    out: UserPath | None = Field(
        None,
        description="Output directory (program.json, instructions.txt, before_after.md, optimize_summary.json). Unset: <run.dir>/optimize.",
    )
    before_after_examples: int = Field(
        3, ge=0, description="Validation examples shown before and after in before_after.md."
    )

    @property
    def val_fraction(self) -> float:
        """The share of examples (or references) that goes to validation: n_val / (n_train + n_val)."""
        return self.n_val / (self.n_train + self.n_val)
