"""The dataset card of an export (README.md): where the data came from, what made it, what was done to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from refed_dspy.quality.contamination import card_lines, public_params
from refed_dspy.settings import tomllib
from refed_dspy.store.jsonl import read_json
from refed_dspy.store.rundir import RunDir, incomplete_note
from refed_dspy.store.teachers import count_teachers, teacher_label, teacher_rows
from refed_dspy.synthesis.program_origin import origin_text

CITATION = """@inproceedings{mehri2026reflevel,
  title     = {Beyond Sample-Level Feedback: Using Reference-Level Feedback to Guide Data Synthesis},
  author    = {Mehri, Shuhaib and others},
  booktitle = {Proceedings of the 19th Conference of the European Chapter of the Association for Computational Linguistics (EACL)},
  year      = {2026}
}"""


def provenance(rundir: RunDir) -> dict[str, Any]:
    """What the card says about where the data came from: the run's summary, config and filters applied."""
    filt = read_json(rundir.path / "filter_summary.json")
    origin = RunDir(filt["source_run"]) if filt.get("source_run") else rundir
    summary = read_json(origin.summary)
    seeds = None
    if origin.config.exists():
        try:
            seeds = tomllib.loads(origin.config.read_text()).get("seeds", {}).get("source")
        except (tomllib.TOMLDecodeError, OSError):
            seeds = None
    return {
        "summary": summary,
        "filters": filt.get("steps", []),
        "seeds": seeds or "refed-dspy embedded seed set",
        "judge": read_json(origin.judge_summary),
        "incomplete": incomplete_note(rundir.path),
    }


def dataset_card(
    splits: dict[str, list[dict]],
    fmt: str,
    which: str,
    system: str | None,
    prov: dict[str, Any],
    files: dict[str, str] | None = None,
) -> str:
    """README.md for the exported dataset (YAML header for the hub, then the facts)."""
    rows = [r for rows in splits.values() for r in rows]
    s = prov["summary"]
    metas = [r["meta"] for r in rows]
    methods = sorted({m.get("method", "?") for m in metas})
    teachers = teacher_rows(count_teachers(metas))
    if len(teachers) > 1:  # a run resumed onto another teacher: each with its samples
        teacher_cell = "; ".join(f"{teacher_label(t)} ({t['samples']} samples)" for t in teachers)
    else:  # one teacher: its model (a card is often published; a private endpoint has no place in it)
        teacher_cell = ", ".join(t["model"] for t in teachers)
    n = sum(len(v) for v in splits.values())
    size_cat = "n<1K" if n < 1000 else "1K<n<10K" if n < 10000 else "10K<n<100K" if n < 100000 else "100K<n<1M"
    header = [
        "---",
        "license: other",
        "language:",
        "- en",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- synthetic",
        "- instruction-tuning",
        "- refed-dspy",
        f"size_categories:\n- {size_cat}",
    ]
    if files:
        header += ["configs:", "- config_name: default", "  data_files:"]
        header += [f"  - split: {name}\n    path: {path}" for name, path in files.items()]
    header.append("---")
    cost = s.get("cost_usd")
    filters = prov["filters"]
    judge = prov["judge"]
    lines = [
        "",
        "# Synthetic instruction-tuning data (refed-dspy)",
        "",
        f"Made with refed-dspy, method **{', '.join(methods)}** "
        "(Reference-Level Feedback, Mehri et al., EACL 2026, and its baselines).",
        "",
    ]
    if prov.get("incomplete"):
        lines += [f"> **Incomplete data:** the run behind this export {prov['incomplete'].removeprefix('it ')}.", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| method | {', '.join(methods)} |",
        f"| teacher | {teacher_cell} |",
        f"| seed references | {prov['seeds']} |",
        f"| samples | {n} ({', '.join(f'{k}: {len(v)}' for k, v in splits.items())}) |",
        f"| response exported | {which} |",
        f"| system prompt | {system!r} |" if system else "| system prompt | none |",
        f"| format | {fmt} |",
        *_program_rows(s),
        f"| synthesis cost | {'unknown' if cost is None else f'${cost:.2f}'} ({s.get('usage', {}).get('calls', '?')} LM calls) |",
    ]
    if judge.get("mean_score") is not None:
        lines.append(
            f"| judge | {judge.get('judge')}: mean score {judge['mean_score']}, improved beats draft "
            f"{judge.get('improvement_win_rate')} |"
        )
    lines += ["", "## Filters applied", ""]
    lines += [
        f"{st['step'] + 1}. `{st['filter']}` {json.dumps({k: v for k, v in public_params(st['params']).items() if k != 'name'})}: "
        f"{st['in']} in, {st['kept']} kept"
        for st in filters
    ] or ["None."]
    lines += [
        "",
        "The train/validation split keeps every sample of one reference on the same side.",
        "",
        *card_lines(prov.get("contamination") or {}),
        "## License",
        "",
        "These records were generated by the teacher model(s) above. Their use for training other models is "
        "governed by each model provider's terms; the seed references keep the license of their source. "
        "refed-dspy itself is Apache-2.0.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(header + lines)


def _program_rows(summary: dict[str, Any]) -> list[str]:
    """The card's rows on the program that made the data: its name (an MLflow URI as it is; a file by its name, a
    local path having no place in a published card) and content hash, and the experiment and cell that made it."""
    program = summary.get("program")
    if not program:
        return []
    shown = (
        program
        if "://" in program or program.startswith(("models:/", "refed_dspy.", "python:"))
        else Path(program).name
    )
    rows = [f"| program | `{shown}` (hash `{summary.get('program_hash')}`) |"]
    origin = summary.get("program_origin")
    if origin:
        rows.append(f"| made by | {origin_text({**origin, 'experiment_dir': None})} |")
    return rows
