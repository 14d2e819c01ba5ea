"""What a run's report and its dataset card say about benchmark contamination: which benchmarks the samples were
checked against and how, how many match per benchmark (with the matched pairs), and how many the `decontaminate`
filter removed. No LM call: the check is the filter's own (refed_dspy.filters.decontaminate).

The benchmarks are those of the last `decontaminate` step that made the dir (what its data was cleaned against, as
its filter_summary.json records it), else the config's `[quality] benchmarks`; none: not checked.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from refed_dspy.config import Config
from refed_dspy.config.judging import benchmark_entries
from refed_dspy.filters.base import text_of
from refed_dspy.filters.decontaminate import Decontaminate, benchmark_of, build_index, find_contamination
from refed_dspy.store.benchmarks import load_benchmarks, resolve
from refed_dspy.store.jsonl import read_json
from refed_dspy.store.rundir import RunDir
from refed_dspy.text.contamination import NGRAM, SHARE

PAIRS = 200  # matched pairs kept in report.json
PAIRS_SHOWN = 50  # of them, in report.html
TEXT_CHARS = 1000
NAME = Decontaminate.model_fields["name"].default


def check_settings(config: Config, steps: list[dict[str, Any]]) -> Decontaminate | None:
    """What to check with: the last decontaminate step of `steps` (a filter_summary.json's), else [quality] when it
    names benchmarks; None when neither does."""
    for step in reversed(steps):
        if step.get("filter") == NAME and step.get("params", {}).get("benchmarks"):
            return Decontaminate.model_validate(step["params"]).configured(config)
    if config.quality.benchmarks:
        return Decontaminate().configured(config)
    return None


def contamination(
    samples: list[dict[str, Any]], rejects: list[dict[str, Any]], config: Config, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    """The contamination block of report.json: per benchmark its prompts, the samples matching one and their share, the
    samples `decontaminate` removed; the settings; and the matched pairs (the first PAIRS). ConfigError when a
    benchmark cannot be read."""
    removed = Counter(benchmark_of(r.get("reason", "")) or "?" for r in rejects if r.get("filter") == NAME)
    spec = check_settings(config, steps)
    block: dict[str, Any] = {
        "checked": spec is not None,
        "ngram": spec.ngram if spec else config.quality.ngram,
        "share": spec.share if spec else config.quality.share,
        "fields": ["instruction", "response"] if (spec and spec.check_responses) else ["instruction"],
        "samples": len(samples),
        "matched": 0,
        "removed": sum(removed.values()),
        "removed_by_benchmark": dict(removed.most_common()),
        "benchmarks": [],
        "pairs": [],
        "pairs_total": 0,
    }
    if spec is None:
        return block
    loaded = load_benchmarks(spec.benchmarks or [])
    index = build_index(loaded, spec.ngram or NGRAM, spec.share or SHARE)
    hits = find_contamination(samples, index, bool(spec.check_responses))
    per = Counter(hit.match.benchmark for hit in hits.values())
    block["matched"] = len(hits)
    block["benchmarks"] = [
        {
            "name": b.name,
            "source": b.source,
            "local": b.local,
            "prompts": index.counts[b.name],
            "matched": per[b.name],
            "share": round(per[b.name] / len(samples), 4) if samples else 0.0,
            "removed": removed.get(b.name, 0),
        }
        for b in loaded
    ]
    by_id = {s["meta"]["id"]: s for s in samples}
    block["pairs"] = [
        {
            "sample_id": sid,
            "benchmark": hit.match.benchmark,
            "field": hit.field,
            "text": text_of(by_id[sid], hit.field)[:TEXT_CHARS],
            "prompt": hit.match.prompt[:TEXT_CHARS],
            "how": hit.match.how,
            "overlap": hit.match.overlap,
        }
        for sid, hit in list(hits.items())[:PAIRS]
    ]
    block["pairs_total"] = len(hits)
    return block


def contamination_of(
    rundir: RunDir, samples: list[dict[str, Any]], rejects: list[dict[str, Any]], config: Config
) -> dict[str, Any]:
    """`contamination` for a run dir or a filtered dir (its filter_summary.json says which filters made it)."""
    steps = read_json(rundir.path / "filter_summary.json").get("steps", [])
    return contamination(samples, rejects, config, steps)


def _how(block: dict[str, Any]) -> str:
    fields = " and ".join(f"{f}s" for f in block["fields"])
    return (
        f"{fields} compared with each prompt as a reader sees them (markup dropped, character references decoded, "
        f"look-alike letters, invisible characters, accents and leetspeak digits read as the letters they show, words "
        f"joined by underscores or case changes set apart): the same text after normalization (case, whitespace, "
        f"punctuation), at least {block['share']:.0%} of the shorter text's word {block['ngram']}-grams in common, "
        f"all but one word in ten of the shorter text in order (of 8 words or more; a filler word every few words, one "
        f"word changed), or as many of its words in word pairs the prompt holds, in any order (halves swapped, a "
        f"filler every third word)"
    )


def contamination_lines(block: dict[str, Any]) -> list[str]:
    """The report's text summary line(s)."""
    if not block.get("checked"):
        removed = f"; decontaminate removed {block['removed']}" if block.get("removed") else ""
        return [f"  benchmarks   not checked (set [quality] benchmarks){removed}"]
    per = ", ".join(f"{b['name']} {b['matched']}" for b in block["benchmarks"])
    removed = f"; decontaminate removed {block['removed']}" if block.get("removed") else ""
    return [
        f"  benchmarks   {block['matched']} of {block['samples']} samples match a benchmark prompt ({per}){removed}"
    ]


def contamination_section(block: dict[str, Any]) -> dict[str, Any]:
    """What report.html's section shows (quality/templates/report_contamination.html): the block, how it was checked,
    and the matched pairs shown (the first PAIRS_SHOWN); an empty block (no figures): no section."""
    if not block:
        return {"block": {}}
    return {
        "block": block,
        "how": _how(block) if block.get("checked") else None,
        "pairs": block["pairs"][:PAIRS_SHOWN] if block.get("checked") else [],
    }


def card_section(block: dict[str, Any]) -> dict[str, Any]:
    """What the dataset card's "Benchmark contamination" section shows (export/templates/card.md): whether the data was
    checked and what the filter removed; once checked, how, each benchmark's figures with its source as a published
    card shows it, and how many samples matched."""
    if not block.get("checked"):
        return {"checked": False, "removed": block.get("removed")}
    return {
        "checked": True,
        "how": _how(block),
        "benchmarks": [{**b, "source": _public(b)} for b in block["benchmarks"]],
        "matched": block["matched"],
        "samples": block["samples"],
    }


def _public(benchmark: dict[str, Any]) -> str:
    """A benchmark's source as a published card shows it: a hub dataset by its id, a local file by its name only."""
    return f"local file {Path(benchmark['source']).name}" if benchmark.get("local") else benchmark["source"]


def public_params(params: dict[str, Any]) -> dict[str, Any]:
    """A filter step's settings as a published card lists them: benchmarks by name (a local path of this machine has
    no place there)."""
    if not params.get("benchmarks"):
        return params
    return {**params, "benchmarks": [resolve(entry).label for entry in benchmark_entries(params["benchmarks"])]}


def unremoved_warning(block: dict[str, Any], run_dir: str) -> str | None:
    """One line when samples match benchmark prompts and no filter removed them; None otherwise."""
    if not block.get("matched"):
        return None
    per = ", ".join(f"{b['name']}: {b['matched']}" for b in block["benchmarks"] if b["matched"])
    return (
        f"{block['matched']} exported samples match benchmark prompts ({per}) and no filter removed them; "
        f"`refed filter {run_dir} --out DIR --apply decontaminate` removes them (the dataset card says so)"
    )
