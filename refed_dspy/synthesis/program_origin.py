"""Where a compiled program came from, when an experiment made it: the experiment, its dir and the cell, and the
cell's test figures. Read once, when a run loads the program (`synthesis.program`), from the registered model
version's tags (`models:/NAME@ALIAS` or `models:/NAME/VERSION`: refed tags a champion's version) or from the
experiment dir a `cells/<id>/optimize/program.json` sits in; the run's summary keeps it, and an export's dataset card
says it. None for any other program."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

_PREFIX = "refed."


def program_origin(spec: str | None, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The origin of the program `spec` names, or None (not an experiment's, or nothing says so)."""
    if not spec:
        return None
    if spec.startswith("models:/"):
        return _registered(spec, tracking_uri)
    return _from_experiment_dir(Path(spec))


def _registered(uri: str, tracking_uri: str | None) -> dict[str, Any] | None:
    """A registered version's refed tags (a champion's: refed.experiment, refed.experiment.cell, ...)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name_part = uri.removeprefix("models:/")
    try:
        client = MlflowClient(tracking_uri)
        if "@" in name_part:
            name, alias = name_part.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, number = name_part.rsplit("/", 1)
            version = client.get_model_version(name, number)
    except (MlflowException, ValueError, OSError):
        return None
    tags = {k.removeprefix(_PREFIX): v for k, v in (version.tags or {}).items() if k.startswith(_PREFIX)}
    if "experiment" not in tags:
        return None
    return {
        "experiment": tags["experiment"],
        "experiment_dir": tags.get("experiment.dir"),
        "cell": tags.get("experiment.cell"),
        "champion": True,
        "test_score": tags.get("test_score"),
        "test_difference": tags.get("test_difference"),
        "model_version": f"{name}/{version.version}",
    }


def _from_experiment_dir(path: Path) -> dict[str, Any] | None:
    """`<exp>/cells/<id>/optimize/program.json`, where `<exp>/experiment.json` exists: that experiment's cell."""
    path = path.resolve()
    # only the program the cell kept: its test score is that program's (program.candidate.json, a compiled program
    # the cell did not keep, was never tested)
    if path.name != "program.json" or len(path.parents) < 4 or path.parents[2].name != "cells":
        return None
    exp, cell_id = path.parents[3], path.parents[1].name
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, KeyError):  # not one of ours
        result = json.loads((exp / "experiment.json").read_text(encoding="utf-8"))
        row = next((r for r in result.get("cells") or [] if isinstance(r, dict) and r.get("id") == cell_id), {})
        diff = row.get("difference") or {}
        return {
            "experiment": result.get("name"),
            "experiment_dir": str(exp),
            "cell": cell_id,
            "champion": result.get("champion") == cell_id,
            "test_score": None if row.get("test_mean") is None else f"{row['test_mean']:.4f}",
            "test_difference": (
                f"{diff['mean']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]" if diff else None
            ),
        }
    return None


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
