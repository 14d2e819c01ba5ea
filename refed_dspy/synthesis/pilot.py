"""`refed estimate --pilot N`: pay for N real samples, then project the whole run from what they measured.

The pilot is a real run of the config with `synthesis.size = N`, in `<run.dir>/pilot` (resumable like any run,
and kept: its samples were paid for), on the references nearest the mean length first (`typical_first`). Per stage, its
calls and tokens are scaled by the tasks the stage serves: the feedback stage by the references the full run will
collect feedback from (one per unit it needs, at most every reference), the instructions' stage by the units it needs
(its size over the samples a pilot's unit gave: the instructions it kept, less the share lost as rejects), every other
stage by samples (the pilot's calls per kept sample already include its rejects, repairs and dedup drops). A
reasoning model's hidden reasoning tokens, which no walk-through can count, are what the pilot measured (billed as
output: inside the completion tokens, said apart).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from refed_dspy.config import Config, config_hash
from refed_dspy.config.lm import unpriced_text
from refed_dspy.errors import ConfigError, FinishedShort, RunDirError
from refed_dspy.methods import METHODS
from refed_dspy.store.ownership import claim
from refed_dspy.store.records import Reference
from refed_dspy.store.seeds import read_seeds
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.estimate import (
    Estimate,
    pilot_local_time,
    priced,
    priced_tiers,
    run_wall,
    tokenizer_of,
)
from refed_dspy.synthesis.next_work import TASK_STAGES
from refed_dspy.synthesis.replies import ReplyLengths, mean_lengths, stage_sums
from refed_dspy.synthesis.summary import RunSummary

# of the completion tokens, a reasoning model's hidden ones are measured apart (billed as output, inside them)
_FIELDS = ("calls", "prompt_tokens", "cached_tokens", "cache_write_tokens", "completion_tokens", "reasoning_tokens")


def pilot_dir(config: Config) -> Path:
    return Path(config.run.dir) / "pilot"


def pilot_config(config: Config, n: int) -> Config:
    """The config of the pilot: the same, with size `n`, in `<run.dir>/pilot`."""
    return config.model_copy(
        update={
            "synthesis": config.synthesis.model_copy(update={"size": n}),
            "run": config.run.model_copy(update={"dir": str(pilot_dir(config))}),
        }
    )


_BEFORE_SAMPLES = ("feedback", "synthesize")  # rejects of these stages were never kept instructions


def _full_units(config: Config, pilot: RunSummary, samples: int, n_refs: int) -> int:
    """The synthesis units the full run takes: its size over the samples a pilot's unit gives, the instructions it kept
    less the share of them lost as rejects (a pilot smaller than a unit's yield used one unit for 3 samples of its 10:
    not a unit for every 3 samples), else the method's count."""
    units, kept = int(pilot["units"]), int(pilot.get("instructions_kept") or 0)
    lost = sum(n for stage, n in (pilot.get("rejects_by_stage") or {}).items() if stage not in _BEFORE_SAMPLES)
    if units and kept >= samples:
        return math.ceil(config.synthesis.size / (kept / units * samples / (samples + lost)))
    return METHODS.get(config.synthesis.method).work_counts(config.synthesis, n_refs)["unit"]


def project(config: Config, pilot: RunSummary, n_refs: int) -> Estimate:
    """The full run's calls, tokens and cost, scaled from a pilot's summary (pure)."""
    samples = int(pilot["samples"])
    if samples <= 0:
        raise FinishedShort(f"the pilot kept no sample ({pilot['status']}): there is nothing to project from")
    size, units = config.synthesis.size, int(pilot["units"])
    full_units = _full_units(config, pilot, samples, n_refs)
    feedback_done = int(pilot["feedback_collected"])
    full_feedback = min(n_refs, full_units) if feedback_done else 0
    # each stage by the tasks it serves: feedback per reference, instructions per unit, the rest per sample
    scales = {TASK_STAGES["feedback"]: (full_feedback, feedback_done), TASK_STAGES["unit"]: (full_units, units)}
    stages: dict[str, dict[str, Any]] = {}
    for name, used in (pilot["usage"].get("by_stage") or {}).items():
        full, done = scales.get(name, (size, samples))
        stages[name] = {f: float(used.get(f) or 0) * (full / done if done else size / samples) for f in _FIELDS}
    total = {f: sum(row[f] for row in stages.values()) for f in _FIELDS}
    price, tiers = priced_tiers(config)
    factor = config.teacher.batch_price_factor
    work = METHODS.get(config.synthesis.method).work_counts(config.synthesis, n_refs)
    work.update(unit=full_units, feedback=full_feedback)
    used = pilot["usage"]
    per_call = float(used.get("lm_seconds") or 0.0) / used["calls"] if used.get("calls") else None
    wall_s = float(pilot.get("wall_s_total") or 0.0)
    local = pilot_local_time(config, wall_s * size / samples)  # a model served here: the pilot's own time, scaled
    return Estimate(
        **{
            "model": config.teacher.model,
            "method": config.synthesis.method,
            "size": size,
            "config_hash": config_hash(config, endpoints=False),
            "references": n_refs,
            "work": work,
            "lengths": {},
            "price_known": price is not None,
            "unpriced": None if price is not None else unpriced_text(config.teacher, "teacher"),
            "batch_price_factor": factor,
            "stages": {name: priced(row, price, factor, tiers) for name, row in stages.items()},
            "total": priced(total, price, factor, tiers),
            "service_tier": config.teacher.service_tier,
            "tiers": list(tiers),
            "wall": None if local else run_wall(config, total, work, len(stages), seconds_per_call=per_call),
            "local": local,
            "adapter": pilot.get("adapter"),
            "tokenizer": tokenizer_of(config.teacher.model),
            "replies": pilot_replies(config, pilot, samples),
            "pilot": {
                "dir": pilot["run_dir"],
                "samples": samples,
                "status": pilot["status"],
                "calls": pilot["usage"]["calls"],
                "cost_usd": pilot["cost_usd"],
                "wall_s": wall_s,
            },
        }
    )


def pilot_replies(config: Config, pilot: RunSummary, samples: int) -> ReplyLengths:
    """The reply lengths the pilot measured, by stage: what its projection rests on (pure)."""
    lengths = mean_lengths([stage_sums(pilot["usage"])])
    return ReplyLengths(
        tokens=lengths,
        source=dict.fromkeys(lengths, "pilot"),
        measured_in=[str(pilot["run_dir"])],
        pilot_samples=samples,
        max_tokens=config.teacher.output_limit,
        size=config.synthesis.size,
    )


def pilot_estimate(
    config: Config, n: int, references: list[Reference] | None = None, show_progress: bool = False
) -> Estimate:
    """Run (or resume) a pilot of `n` samples in `<run.dir>/pilot`, then project the config's whole run from it."""
    if n <= 0:
        raise ConfigError(f"--pilot {n}: the pilot needs at least 1 sample")
    if n >= config.synthesis.size:
        raise ConfigError(
            f"--pilot {n}: a pilot as large as the run (synthesis.size = {config.synthesis.size}) is the run; "
            "run `refed synthesize` instead"
        )
    if references is None:
        references, _ = read_seeds(config.seeds)
    # the pilot's dir is inside the run dir, which must be ours first (a run dir, or a comparison's)
    claim(config.run.dir, "run", also=("compare",), flag="run.dir")
    pilot = pilot_config(config, n)
    try:
        summary = synthesize(pilot, references=typical_first(references), show_progress=show_progress)
    except RunDirError as err:
        if "different config" not in str(err):
            raise
        raise RunDirError(
            f"the pilot in {pilot.run.dir} was made by a different config; delete that folder to pay for a new "
            f"pilot ({str(err).split('(', 1)[-1].split(')', 1)[0]})"
        ) from None
    return project(config, summary, len(references))


def typical_first(references: list[Reference]) -> list[Reference]:
    """The references, those whose length is nearest the mean first: a pilot's few units take the first ones, and
    a sample's prompts carry its reference, so a pilot that drew long ones would project a dearer run (pure)."""
    sizes = [len(r.instruction) + len(r.response) for r in references]
    mean = sum(sizes) / len(sizes) if sizes else 0.0
    order = sorted(range(len(references)), key=lambda i: (abs(sizes[i] - mean), i))
    return [references[i] for i in order]
