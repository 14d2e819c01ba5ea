"""The dataset card of an export (README.md): where the data came from, what made it, what was done to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from refed_dspy.config.section import tomllib
from refed_dspy.ledger.usage import usd
from refed_dspy.pages import render
from refed_dspy.quality.contamination import card_section, public_params
from refed_dspy.quality.figures import verdict_text
from refed_dspy.quality.statistics import card_statistics
from refed_dspy.store.jsonl import read_json
from refed_dspy.store.records import count_teachers, teacher_label, teacher_rows
from refed_dspy.store.rundir import RunDir, incomplete_note

TEMPLATES = "refed_dspy.export"  # its templates/ folder: card.md


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
        "statistics": read_json(rundir.path / "report.json").get("statistics") or {},
        "filters": filt.get("steps", []),
        "seeds": seeds or _kept(origin) or "refed-dspy embedded seed set",
        "judge": read_json(origin.judge_summary),
        "incomplete": incomplete_note(rundir.path),
    }


def _kept(rundir: RunDir) -> str | None:
    """How the card names references handed in from Python, kept in the run dir (no path of the author's machine)."""
    return (
        "references handed in from Python (the run dir keeps them: references.jsonl)"
        if rundir.references.is_file()
        else None
    )


def dataset_card(
    splits: dict[str, list[dict]],
    fmt: str,
    which: str,
    system: str | None,
    prov: dict[str, Any],
    files: dict[str, str] | None = None,
) -> str:
    """README.md for the exported dataset (YAML header for the hub, then the facts), from export/templates/card.md."""
    metas = [r["meta"] for rows in splits.values() for r in rows]
    summary, judge = prov["summary"], prov["judge"]
    cost = summary.get("cost_usd")
    return render(
        TEMPLATES,
        "card.md",
        size_category=size_category(len(metas)),
        files=files or {},
        methods=", ".join(sorted({m.get("method", "?") for m in metas})),
        incomplete=(prov.get("incomplete") or "").removeprefix("it "),
        teacher=_teacher_cell(metas),
        seeds=_seeds_cell(prov["seeds"], metas, summary.get("references")),
        samples=f"{len(metas)} ({', '.join(f'{k}: {len(v)}' for k, v in splits.items())})",
        which=which,
        system=repr(system) if system else "none",
        fmt=fmt,
        program=_program(summary),
        cost=usd(cost, "unknown"),  # a loopback or a cheap run's cost is a fraction of a cent
        calls=summary.get("usage", {}).get("calls", "?"),
        judge=_judge_cell(judge),
        filters=[_filter_step(step) for step in prov["filters"]],
        contamination=card_section(prov.get("contamination") or {}),
        statistics=card_statistics(prov.get("statistics") or {}),
    )


def _seeds_cell(source: str, metas: list[dict[str, Any]], read: Any) -> str:
    """The seed set, and how many of the references the run was given are behind the exported samples."""
    used = len({m["reference_id"] for m in metas if m.get("reference_id") is not None})
    of = f" of its {read}" if isinstance(read, int) else ""
    return f"{source} ({used}{of} reference{'' if used == 1 and not of else 's'} behind these samples)"


def _judge_cell(judge: dict[str, Any]) -> str | None:
    """The judge, how many of the run's samples it judged (a partial judging says so) and its figures in words."""
    if judge.get("mean_score") is None:
        return None
    status = judge.get("status")
    partial = "" if status in ("complete", None) else ", partial" if status == "partial" else f", partial ({status})"
    return f"{judge.get('judge')}, {judge.get('judged')} of {judge.get('samples')} samples judged{partial}: " + (
        verdict_text(judge)
    )


def size_category(n: int) -> str:
    """The Hub's size category of a dataset of `n` records."""
    return "n<1K" if n < 1000 else "1K<n<10K" if n < 10000 else "10K<n<100K" if n < 100000 else "100K<n<1M"


def _teacher_cell(metas: list[dict[str, Any]]) -> str:
    """The card's teacher: each teacher with its samples when a run resumed onto another; else the one model (a card
    is often published, and a private endpoint has no place in it)."""
    teachers = teacher_rows(count_teachers(metas))
    if len(teachers) > 1:
        return "; ".join(f"{teacher_label(t)} ({t['samples']} samples)" for t in teachers)
    return ", ".join(t["model"] for t in teachers)


def _filter_step(step: dict[str, Any]) -> dict[str, Any]:
    """One filter applied, as the card lists it: its number, name, public settings, and samples in and kept."""
    params = {k: v for k, v in public_params(step["params"]).items() if k != "name"}
    return {
        "number": step["step"] + 1,
        "filter": step["filter"],
        "params": json.dumps(params),
        "taken": step["in"],
        "kept": step["kept"],
    }


def _program(summary: dict[str, Any]) -> dict[str, Any] | None:
    """What the card says of the program that made the data: its name (an MLflow URI as it is; a file by its name, a
    local path having no place in a published card), its content hash, and the experiment and cell that made it."""
    program = summary.get("program")
    if not program:
        return None
    shown = (
        program
        if "://" in program or program.startswith(("models:/", "refed_dspy.", "python:"))
        else Path(program).name
    )
    origin = summary.get("program_origin")
    return {
        "shown": shown,
        "hash": summary.get("program_hash"),
        "made_by": origin_text({**origin, "experiment_dir": None}) if origin else None,
    }


def origin_text(origin: dict[str, Any]) -> str:
    """'experiment optimizers-on-respond (/abs/dir), cell miprov2-r0-70362e, its champion: test score 0.83 (0-1),
    +0.21 [+0.08, +0.33] against the uncompiled program'."""
    text = f"experiment {origin.get('experiment')}"
    if origin.get("experiment_dir"):
        text += f" ({origin['experiment_dir']})"
    text += f", cell {origin.get('cell')}" + (", its champion" if origin.get("champion") else "")
    if origin.get("test_score"):
        text += f": test score {origin['test_score']} (0-1)"
        if origin.get("test_difference"):
            text += f", {origin['test_difference']} against the uncompiled program"
    return text
