"""What `refed view` shows of an experiment dir: its cells with their state and scores, and each cell's program (the
instructions and demos of every predictor), read from the files as they are; nothing is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from refed_dspy.experiments.page import program_view
from refed_dspy.ledger.usage import usd_up_to
from refed_dspy.status.experiment import experiment_status
from refed_dspy.store.jsonl import read_json


def experiment_cells(path: Path) -> dict[str, Any]:
    """The experiment's name, state and champion, and its cells (every cell of the grid, one not started too), each
    with `has_program` when its program file is there to show."""
    status = experiment_status(path)
    cells = [
        {
            **cell.model_dump(),
            "cost": _cost(cell.cost_usd, cell.cost_up_to_usd),
            "has_program": cell_program(path, cell.id) is not None,
        }
        for cell in status.cells
    ]
    paid = f"{status.calls} paid LM calls" + (
        f" ({status.lost_in_flight} of them in flight when a part was killed)" if status.lost_in_flight else ""
    )
    return {
        "name": status.name,
        "state": status.state,
        "champion": status.champion,
        "cells": cells,
        "paid": f"{paid}, {_cost(status.cost_usd, status.cost_up_to_usd)}",
    }


def _cost(cost: float | None, up_to: float | None) -> str:
    """What calls cost, and up to what when some are of unknown tokens (refed_dspy.ledger.usage.usd_up_to)."""
    return usd_up_to(cost, up_to - cost if up_to is not None and cost is not None else None)


def cell_program(path: Path, cell_id: str) -> Path | None:
    """The program a cell kept (its cell.json's `program`), when it is a file inside the experiment dir."""
    if "/" in cell_id or "\\" in cell_id or cell_id in ("", ".", ".."):
        return None
    named = read_json(path / "cells" / cell_id / "cell.json").get("program")
    if not isinstance(named, str):
        return None
    program = Path(named).resolve()
    return program if program.is_file() and program.is_relative_to(path.resolve()) else None


def program_predictors(program: Path) -> dict[str, dict[str, Any]]:
    """Each predictor of a saved program: its instructions and demos (an unreadable file: none)."""
    try:
        state = json.loads(program.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return program_view(state) if isinstance(state, dict) else {}
