"""The report's `reference_copies` block: how close each sample is to its own reference (instruction to instruction,
final response to response), the distribution, the samples at or over the copy threshold and the closest ones to read.

The references come from the run's seeds (its config.toml's [seeds]), so this reads files only, and works the same on a
run made locally, on Ray or from Python with the same seeds. Samples of a method that rewrites its reference
(reflection) are not measured.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from refed_dspy.config import Config
from refed_dspy.errors import ConfigError, SeedError
from refed_dspy.filters.reference_copy import PARTS, References, measure_samples, seed_references
from refed_dspy.quality.figures import describe
from refed_dspy.store.records import final_response
from refed_dspy.store.rundir import RunDir, run_config
from refed_dspy.text.closeness import COPY_THRESHOLD, SPAN_WORDS

WORST = 5  # the closest samples the report shows
_CUT = {"instruction": 400, "response": 1200}  # characters of each text kept in report.json


def run_references(rundir: RunDir, config: Config | None = None) -> dict[str, tuple[str, str]]:
    """Reference id -> (instruction, response), from the run's seeds ([seeds] of `config`, else of the run's
    config.toml). SeedError or ConfigError when they cannot be read."""
    return seed_references((config or run_config(rundir)).seeds)


def _cut(text: str, part: str) -> str:
    n = _CUT[part]
    return text if len(text) <= n else text[:n] + " [...]"


def copies_block(
    samples: list[dict[str, Any]], references: References, threshold: float, span: int = SPAN_WORDS, worst: int = WORST
) -> dict[str, Any]:
    """The figures of the block (pure): samples measured, and not (no reference text; a method that rewrites it), per
    part the distribution of each measure and the count at or over `threshold`, the distribution of each sample's
    closeness (the larger of its parts'), and the `worst` closest samples beside their references."""
    measured = measure_samples(samples, references, span)
    rows, unknown, rewrites = measured.rows, measured.unknown, measured.rewrites
    over = Counter()
    for _, _, measured in rows:
        hit = [part for part in PARTS if measured[part].value >= threshold]
        over.update(hit)
        over["samples"] += bool(hit)
    values = [max(m[p].value for p in PARTS) for _, _, m in rows]
    bins = [0] * 10
    for v in values:
        bins[min(9, int(v * 10))] += 1
    closest = sorted(range(len(rows)), key=lambda i: (-values[i], rows[i][0]["meta"]["id"]))[:worst]
    return {
        "threshold": threshold,
        "span_words": span,
        "measured": len(rows),
        "no_reference": unknown,
        "rewrites": rewrites,
        "over_threshold": over["samples"],
        "share_over": round(over["samples"] / len(rows), 4) if rows else None,
        "closeness": describe(values),
        "histogram": {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": n for i, n in enumerate(bins)},
        "parts": {
            part: {
                "over_threshold": over[part],
                **{
                    key: describe([m[part].as_dict()[key] for _, _, m in rows])
                    for key in ("rouge_l", "verbatim", "reference_verbatim", "longest_run")
                },
            }
            for part in PARTS
        },
        "worst": [_example(*rows[i], threshold) for i in closest],
    }


def _example(sample: dict[str, Any], ref: tuple[str, str], measured: dict, threshold: float) -> dict[str, Any]:
    part = max(PARTS, key=lambda p: measured[p].value)
    return {
        "id": sample["meta"]["id"],
        "reference_id": sample["meta"].get("reference_id"),
        "closeness": measured[part].value,
        "part": part,
        "copy": measured[part].value >= threshold,
        "why": f"{part}: {measured[part].phrase()}",
        "figures": {p: measured[p].as_dict() for p in PARTS},
        "instruction": _cut(sample.get("instruction") or "", "instruction"),
        "response": _cut(final_response(sample), "response"),
        "reference_instruction": _cut(ref[0], "instruction"),
        "reference_response": _cut(ref[1], "response"),
    }


def reference_copies(rundir: RunDir, config: Config, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The block for a run dir; when its seeds cannot be read here, a block that says why (the report goes on)."""
    threshold = config.quality.copy_threshold or COPY_THRESHOLD
    try:
        references = run_references(rundir, config)
    except (SeedError, ConfigError, OSError) as err:
        return {"threshold": threshold, "measured": 0, "unavailable": f"the run's seeds cannot be read here: {err}"}
    return copies_block(samples, references, threshold)


def copies_line(block: dict[str, Any]) -> str:
    """One line for the report's text summary."""
    if block.get("unavailable"):
        return f"not measured: {block['unavailable']}"
    if not block.get("measured"):
        if block.get("rewrites"):
            return "not measured: the method rewrites each reference (closeness to it is its point)"
        return "not measured: no sample's reference text is among the seeds"
    c = block["closeness"]
    return (
        f"{block['over_threshold']} of {block['measured']} samples at or over {block['threshold']:g} "
        f"(closeness median {c['median']:.2f}, max {c['max']:.2f})"
        + (f"; {block['no_reference']} without their reference's text" if block.get("no_reference") else "")
    )


def copies_section(block: dict[str, Any]) -> dict[str, Any]:
    """What report.html's section shows (quality/templates/report_copies.html): the block, its one-line summary and the
    histogram of the samples' closeness in words."""
    histogram = " · ".join(f"{k}: {n}" for k, n in (block.get("histogram") or {}).items() if n)
    return {"block": block, "line": copies_line(block), "histogram": histogram}
