"""`refed filter RUN_DIR --out DIR`: apply the filter chain to a run and write the result elsewhere.

The output dir looks like a run dir (samples.jsonl, config.toml, judgments.jsonl of the kept samples),
so `refed report` and `refed export` work on it; what the filters removed goes to its rejects.jsonl.
The input run is only read.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.config import Config, config_from_dict
from refed_dspy.config.load import ConfigLike, given_config
from refed_dspy.errors import ConfigError, RunDirError
from refed_dspy.filters import UNJUDGED, Filter, apply_chain, reject_counts, unjudged_ids
from refed_dspy.quality.figures import load_judgments, unjudged_reasons
from refed_dspy.store.jsonl import read_jsonl, write_json_atomic, write_jsonl_atomic
from refed_dspy.store.ownership import check, check_output_dir, owned
from refed_dspy.store.results import Result
from refed_dspy.store.rundir import RunDir, incomplete_note, run_config

log = logging.getLogger(__name__)


def _unjudged(
    samples: list[dict], judgments: dict[str, dict], specs: list[Filter], src: RunDir
) -> tuple[int, str, int]:
    """How many samples a judge-based filter of the chain has no judgment for, a phrase saying why, and how many of
    them the judge failed on (the same judge's replies to them come back from the cache: another judge is needed)."""
    missing: set[str] = set()
    for spec in specs:
        if spec.judge_part is not None:
            missing.update(unjudged_ids(samples, judgments, spec.judge_part))
    if not missing:
        return 0, "", 0
    reasons = unjudged_reasons(set(judgments), list(read_jsonl(src.judge_rejects)))
    failed = sum(reasons.values())
    why = (
        f"{failed} judge failures ({', '.join(f'{n} {r}' for r, n in reasons.most_common())})"
        if failed
        else "not judged yet"
    )
    return len(missing), why, failed


def _unjudged_refusal(count: str, why: str, failed: int, src: RunDir) -> ConfigError:
    """The refusal of a chain whose judge-based filters have no judgment for `count` samples (`why`; `failed` of them
    the judge failed on), and how to judge them: `refed judge run`, or again with another judge where it failed."""
    said = f"{count} samples have no judgment for the judge-based filters ({why}); "
    again = (
        f"`refed judge run {src.path} --fresh` with another judge model (or a larger judge.max_tokens, where they "
        "were cut off) judges the failed ones again: the same judge's replies come back from the run's cache"
        if failed
        else f"`refed judge run {src.path}` judges them"
    )
    return ConfigError(
        f"{said}pass unjudged='drop' (or 'keep') to filter without them, or {again}",
        cli=f"{said}pass --unjudged drop (or keep) to filter without them, or {again}",
    )


class FilterSummary(Result):
    """What `refed filter` kept and removed (filter_summary.json in the output dir)."""

    source_run: str
    out: str
    input: int
    kept: int
    removed: int
    removed_by_filter: dict[str, int]
    steps: list[dict[str, Any]] = Field(
        description="Each filter in order: its parameters, and samples in, kept, removed."
    )
    unjudged: dict[str, Any] = Field(
        description="Samples a judge-based filter had no judgment of, the policy, and why."
    )
    finished_at: str


def shortfall(summary: FilterSummary) -> str | None:
    """One line saying that the chain kept nothing, or less than a tenth of its input, and which step removed the
    most; None when it kept more. `refed filter` then exits 1 (what it wrote is kept)."""
    kept, given = summary.kept, summary.input
    if kept and kept * 10 >= given:
        return None
    if not given:
        return f"filter kept nothing: {summary.source_run} has no samples; the result is in {summary.out}"
    amount = f"0 of {given} samples" if not kept else f"less than a tenth: {kept} of {given} samples"
    worst = max(summary.steps, key=lambda step: step.get("removed", 0), default=None)
    by = f" ({worst['filter']} removed {worst['removed']} of {worst['in']})" if worst and worst.get("removed") else ""
    return f"filter kept {amount}{by}; the result is in {summary.out} (its rejects.jsonl says why)"


# a filter as filter_run takes it: the filter, its [[filters]] table, or --apply's string
FilterLike = Filter | str | Mapping[str, Any]


def _as_filter(spec: Any) -> Filter:
    """One of filter_run's `specs` as the filter it names; ConfigError when it names none."""
    if isinstance(spec, Filter):
        return spec
    if isinstance(spec, str):
        return parse_filter(spec)
    if isinstance(spec, Mapping):
        return config_from_dict({"filters": [dict(spec)]}).filters[0]
    raise ConfigError(
        f"a filter is a filter object, its [[filters]] table or 'name:key=value,...', not {type(spec).__name__}"
    )


def _chain(specs: FilterLike | list[FilterLike], config: Config | None, src: RunDir) -> list[Filter]:
    """The filters filter_run applies, each as `_as_filter` reads it, their unset settings from `config` (None: the
    run's config.toml, else the defaults); ConfigError (RunDirError: no samples in `src`) before anything is read."""
    specs = [_as_filter(spec) for spec in ([specs] if isinstance(specs, (str, Mapping, Filter)) else specs or [])]
    if not specs:
        raise ConfigError(
            "no filters to apply: add [[filters]] tables to the config or pass --apply NAME:KEY=VALUE,..."
        )
    if not src.samples.exists():
        raise RunDirError(f"{src.path} has no samples.jsonl; run `refed synthesize` first")
    if config is None:
        config = run_config(src) if src.config.exists() else Config()
    return [spec.configured(config) for spec in specs]


def parse_filter(text: str) -> Filter:
    """'rouge_diversity:threshold=0.7,seed=1' -> that filter (values read as numbers and booleans when they are);
    ConfigError in the config's words when it is not a valid filter."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {"name": name.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in part:
            raise ConfigError(f"--apply {text!r}: expected name:key=value,...")
        key, value = (x.strip() for x in part.split("=", 1))
        if value in ("true", "false"):  # decontaminate:check_responses=true
            params[key] = value == "true"
            continue
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        params[key] = value
    return config_from_dict({"filters": [params]}).filters[0]


# what a filter whose --out holds an earlier result says (as a command, and from Python)
TAKEN = "choose another --out (out_dir=) or pass --overwrite (overwrite=True)"


def filter_run(
    run_dir: str | Path,
    out_dir: str | Path,
    specs: FilterLike | list[FilterLike],
    overwrite: bool = False,
    unjudged: str | None = None,
    config: ConfigLike | None = None,
) -> FilterSummary:
    """Filter `run_dir`'s samples into `out_dir`; returns the filter summary.

    A judge-based filter never drops a sample silently for want of a judgment: when some samples have none,
    `unjudged` must say whether such samples are kept or dropped, else ConfigError (nothing is written). A filter's
    settings left to the config (decontaminate's benchmarks: [quality]) come from `config`, by default the run's own
    config.toml.

    Args:
        run_dir: the run dir (or filtered dir) whose samples are filtered; it is only read.
        out_dir: the output directory, outside `run_dir`; a run dir of the kept samples is written there.
        specs: the filters to apply, in order, each to what the one before kept: a filter (`make_filter`), its
            `[[filters]]` table as a mapping (`{"name": "length", "min_words": 5}`), or `--apply`'s string
            (`"length:min_words=5"`).
        overwrite: replace the samples `out_dir` already holds.
        unjudged: "keep" or "drop": what judge-based filters do with a sample that has no judgment.
        config: the config the filters' unset settings come from; None: the run's config.toml (defaults without one).

    Returns:
        What filter_summary.json holds: samples in, kept and removed, removals by filter, each step, the unjudged.

    Raises:
        ConfigError, RunDirError: the filters, `unjudged`, the run dir or `out_dir` are unusable (nothing is written).
    """
    if unjudged is not None and unjudged not in UNJUDGED:
        raise ConfigError(f"--unjudged must be keep or drop, not '{unjudged}'")
    src, out = RunDir(run_dir), RunDir(out_dir)
    specs = _chain(specs, given_config(config), src)
    check_output_dir(out_dir, [src.path])
    check(out_dir, "filter", flag="--out")  # a folder refed did not make is refused before --overwrite is offered
    if out.samples.exists() and not overwrite:
        raise RunDirError(f"{out.samples} already exists; {TAKEN}")
    note = incomplete_note(src.path)
    if note:
        log.warning("warning: %s: %s; filtering what is there", src.path, note)
    samples = list(read_jsonl(src.samples))
    judgments = load_judgments(src)
    n_unjudged, why, failed = _unjudged(samples, judgments, specs, src)
    if n_unjudged and unjudged is None:
        raise _unjudged_refusal(f"{n_unjudged} of {len(samples)}", why, failed, src)
    kept, rejects, steps = apply_chain(specs, samples, judgments, unjudged or "drop")
    with owned(out_dir, "filter", "refed filter", flag="--out"):
        if out.samples.exists() and not overwrite:  # again under the lock: another filter may just have written it
            raise RunDirError(f"{out.samples} already exists; {TAKEN}")
        write_jsonl_atomic(out.samples, kept)
        write_jsonl_atomic(out.rejects, rejects)
        kept_ids = {s["meta"]["id"] for s in kept}
        write_jsonl_atomic(out.judgments, [j for sid, j in judgments.items() if sid in kept_ids])
        if src.config.exists():
            shutil.copyfile(src.config, out.config)
        summary = FilterSummary(
            **{
                "source_run": str(src.path.resolve()),
                "out": str(out.path),
                "input": len(samples),
                "kept": len(kept),
                "removed": len(rejects),
                "removed_by_filter": reject_counts(rejects),
                "steps": steps,
                "unjudged": {"samples": n_unjudged, "policy": unjudged if n_unjudged else None, "why": why or None},
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
        write_json_atomic(out.path / "filter_summary.json", summary.to_json())
    return summary
