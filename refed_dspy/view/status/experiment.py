"""`refed status` of an experiment dir: its cells and their state, the champion, and what the whole experiment has
spent (every invocation, every part: examples, baselines, cells), read from its files without taking its lock.

The cells are those experiment.json lists (the last invocation that finished), updated by each cell's own cell.json
(written as a cell finishes, so a killed invocation's finished cells show too). The spending is spent.json's: the
experiment's ledger, part by part, across invocations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pydantic import Field

from refed_dspy.errors import RunDirError
from refed_dspy.experiments.config import GRID_FILE
from refed_dspy.ledger.call_log import unaccounted
from refed_dspy.ledger.lines import read_document, spent_figures
from refed_dspy.ledger.usage import usd_up_to
from refed_dspy.store.jsonl import read_json
from refed_dspy.store.ownership import kind_of
from refed_dspy.store.results import Optional, Result
from refed_dspy.view.status.run import Holder, holder_text, live_pid, lock_holder

NEXT = {
    "stopped": "stopped or killed before it finished; run the same command to resume (finished cells are kept)",
    "budget": "a budget left cells unstarted or stopped them; raise it and run the same command to go on",
    "failed": "a cell failed (see its error); run the same command to try it again",
}


class CellStatus(Result):
    """One cell of an experiment dir."""

    id: str
    label: str
    state: str = Field(description="done | budget | failed | not started")
    test_score: float | None = Field(description="Its program's mean test score (0-1).")
    baseline_score: float | None = None
    difference: dict[str, Any] | None = Field(description="The paired difference to its baseline, with its interval.")
    kept_baseline: bool = Field(description="Its optimization kept the uncompiled program.")
    calls: int | None = Field(description="Paid LM calls of the cell: optimizing and judging its test examples.")
    cost_usd: float | None = None
    cost_up_to_usd: float | None = Field(
        None,
        description="The most its calls can have cost, those of unknown tokens (cut off, lost in flight) included.",
    )
    error: str | None = None


class ExperimentStatus(Result):
    """What `refed status` reports of an experiment dir."""

    run_dir: str
    kind: str = "experiment"
    name: str | None
    state: str = Field(description="running | complete | budget | failed | stopped")
    holder: Holder | None
    cells: list[CellStatus]
    champion: str | None
    champion_uri: str | None = Optional("With tracking on: the champion's program in the Model Registry.")
    calls: int = Field(
        description="Paid LM calls of the whole experiment, every invocation and part; a part under way or killed "
        "counts the calls its write-ahead ledger holds, those in flight now or when it was killed as paid."
    )
    cost_usd: float | None
    lost_in_flight: int = Field(0, description="Of `calls`: those in flight when a part was killed (tokens unknown).")
    in_flight: int = Field(
        0, description="Of `calls`: those a part under way (in the lock's holder) has in flight now (tokens unknown)."
    )
    cost_up_to_usd: float | None = Field(
        None,
        description="The most the paid calls can have cost: `cost_usd` and the most the calls of unknown tokens (cut "
        "off, lost in flight) can cost; None when that is nothing more.",
    )
    calls_by_part: dict[str, int] = Field(description="examples, baselines, cells, synthesis checks.")


def is_experiment_dir(path: str | Path) -> bool:
    """`path` is a dir `refed experiment` made."""
    return Path(path).is_dir() and kind_of(path) == "experiment"


def _part_group(part: str) -> str:
    if part.endswith(":synthesis") or ":synthesis:" in part:
        return "synthesis checks"
    return {"cell": "cells", "baseline": "baselines"}.get(part.split(":", 1)[0], part)


def _cell(row: dict[str, Any]) -> CellStatus:
    usage = row.get("usage") or {}
    return CellStatus(
        id=row["id"],
        label=row.get("label") or row["id"],
        state=row.get("status") or "not started",
        test_score=row.get("test_mean"),
        baseline_score=row.get("baseline_mean"),
        difference=row.get("difference"),
        kept_baseline=row.get("kept") == "baseline",
        calls=usage.get("calls"),
        cost_usd=usage.get("cost_usd"),
        cost_up_to_usd=_up_to(usage.get("cost_usd"), usage.get("interrupted_cost_usd")),
        error=row.get("error"),
    )


def _up_to(cost: float | None, bound: float | None) -> float | None:
    return round(cost + bound, 6) if cost is not None and bound else None


def spent_parts(path: Path, pid: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """What each part of the experiment dir `path` paid, as a reader sees it (nothing changed): spent.json's parts, and
    each part under way or killed as its write-ahead ledger holds it (its calls settled at what they cost, those in
    flight at their bound: `in_flight` those of a part under way in the process `pid`, the lock's holder,
    `lost_in_flight` those of a killed one), else as spent.json's `live` entry last said it."""
    spent = read_document(path / "spent.json", spent_figures)
    live = dict(spent.get("live") or {})
    logs = path / "ledger"
    for log in sorted(logs.glob("*.jsonl")) if logs.is_dir() else ():
        found = unaccounted(log, pid)
        if found is not None:
            live[unquote(log.stem)] = found
    return [*(spent.get("parts") or {}).items(), *live.items()]


def experiment_status(path: str | Path) -> ExperimentStatus:
    """The status of the experiment dir `path`; RunDirError when it is not one."""
    path = Path(path)
    if not is_experiment_dir(path):
        raise RunDirError(f"{path} is not an experiment directory (refed experiment writes one: experiment.out)")
    result = read_json(path / "experiment.json")
    # every cell of the grid, a cell not yet started too (it has no file), in the grid's order
    planned = [c for c in read_json(path / GRID_FILE).get("cells") or [] if isinstance(c, dict) and c.get("id")]
    rows: dict[str, dict[str, Any]] = {c["id"]: {**c, "status": "not started"} for c in planned}
    rows.update({r["id"]: r for r in result.get("cells") or [] if isinstance(r, dict) and r.get("id")})
    newer = False
    for cell_file in sorted((path / "cells").glob("*/cell.json")):
        row = read_json(cell_file)
        if row.get("id"):
            old = rows.get(row["id"], {})
            newer |= old.get("status") != row.get("status")
            # the comparison with the baseline is made after the cell's file: keep it from experiment.json
            rows[row["id"]] = {**row, **{k: old[k] for k in ("difference", "baseline_mean") if k in old}}
    # what parts paid, and what the parts under way (or killed: counted when it starts again) paid so far
    who = lock_holder(path)
    parts = spent_parts(path, live_pid(who))
    by_part: dict[str, int] = {}
    for part, figures in parts:
        group = _part_group(part)
        by_part[group] = by_part.get(group, 0) + int(figures.get("calls") or 0)
    costs = [figures.get("cost_usd") for _, figures in parts]
    cost = None if any(c is None for c in costs) else round(sum(costs), 6)
    bound = sum(float(figures.get("interrupted_cost_usd") or 0.0) for _, figures in parts)
    if who is not None:
        state = "running"
    elif not result or newer:
        state = "stopped"
    else:
        state = result.get("status") or "stopped"
    return ExperimentStatus(
        run_dir=str(path),
        name=result.get("name"),
        state=state,
        holder=who,
        cells=[_cell(r) for r in rows.values()],
        champion=result.get("champion") if not newer else None,
        champion_uri=result.get("champion_uri") if not newer else None,
        calls=sum(by_part.values()),
        cost_usd=cost,
        lost_in_flight=sum(int(figures.get("lost_in_flight") or 0) for _, figures in parts),
        in_flight=sum(int(figures.get("in_flight") or 0) for _, figures in parts),
        cost_up_to_usd=_up_to(cost, bound),
        calls_by_part=by_part,
    )


def unsettled_text(s: ExperimentStatus) -> str:
    """Of an experiment's paid calls, those of unknown tokens: "2 of them in flight now; 1 in flight when a part was
    killed" ("" when none)."""
    whys = ((s.in_flight, "in flight now"), (s.lost_in_flight, "in flight when a part was killed"))
    return "; ".join(f"{n} {why}" for n, why in whys if n).replace(" ", " of them ", 1)


def format_experiment_status(s: ExperimentStatus) -> str:
    """The human text of `refed status` on an experiment dir."""
    head = f"{s.run_dir}: experiment" + (f" {s.name}" if s.name else "")
    if s.holder is not None:
        state = f"state: running: {holder_text(s.holder)}"
    else:
        state = f"state: {s.state}" + (f"; {NEXT[s.state]}" if s.state in NEXT else "")
    done = sum(c.state == "done" for c in s.cells)
    out = [head, state, f"cells: {done} of {len(s.cells)} done"]
    for c in s.cells:
        if c.state != "done":
            line = f"  {c.label}: {c.state}" + (f": {c.error}" if c.error else "")
        elif c.kept_baseline:
            line = f"  {c.label}: done, test score {c.test_score:.4f} (0-1), kept baseline"
        else:
            d = c.difference or {}
            versus = (
                f", {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] vs baseline"
                + (" (significant)" if d.get("significant") else "")
                if d
                else ""
            )
            line = f"  {c.label}: done, test score {c.test_score:.4f} (0-1){versus}"
        out.append(line + (f"; {c.calls} calls" if c.calls is not None else ""))
    if s.champion:
        out.append(f"champion: {s.champion}" + (f" ({s.champion_uri})" if s.champion_uri else ""))
    parts = ", ".join(f"{part} {n}" for part, n in sorted(s.calls_by_part.items()))
    lost = f"; {unsettled_text(s)}, counted as paid" if s.in_flight or s.lost_in_flight else ""
    bound = s.cost_up_to_usd - s.cost_usd if s.cost_up_to_usd is not None and s.cost_usd is not None else None
    out.append(
        f"paid LM calls: {s.calls}"
        + (f" ({parts}{lost})" if parts or lost else "")
        + f", {usd_up_to(s.cost_usd, bound)}"
    )
    return "\n".join(out)
