"""MLflow as an experiment's lab notebook: one parent run per experiment directory (found again on a resume), one
child run per cell (the optimize run: its grid values as params, its held-out figures as metrics, its compiled
program as its logged model), the leaderboard as the parent's artifacts, and the champion's program in the Model
Registry under an alias (`models:/<name>@<alias>`)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refed_dspy.config import Config
from refed_dspy.tracking.mlflow_runs import KIND_TAG, flat_params, log_params_once, mlflow_run

log = logging.getLogger(__name__)
CELL_TAG = "refed.experiment.cell"


@contextlib.contextmanager
def experiment_run(config: Config, out: Path, params: dict[str, Any]) -> Iterator[Any]:
    """The experiment's parent run, active for the block (None when tracking is off): cells' optimize runs nest
    under it. `params`: the experiment's settings, logged once."""
    if not config.tracking.enabled:
        yield None
        return
    import mlflow

    with mlflow_run(config, out) as run:
        if KIND_TAG not in run.data.tags:
            mlflow.set_tag(KIND_TAG, "experiment")
        log_params_once(flat_params(params))
        yield run


def log_cell(run_id: str | None, row: dict[str, Any]) -> None:
    """A finished cell's child run gets its grid values (params), its held-out figures (metrics) and its cell id."""
    if not run_id:
        return
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    client = MlflowClient()
    existing = client.get_run(run_id).data.params
    params = {f"cell.{k}": str(v)[:500] for k, v in flat_params({"values": row["values"]}).items()}
    params["cell.repeat"] = str(row["repeat"])
    diff = row.get("difference") or {}
    figures = {
        "test_score": row.get("test_mean"),
        "test_baseline": row.get("baseline_mean"),
        "test_difference": diff.get("mean"),
        "test_ci_low": diff.get("ci_low"),
        "test_ci_high": diff.get("ci_high"),
        "test_significant": float(bool(diff.get("significant"))) if diff else None,
    }
    client.log_batch(
        run_id,
        metrics=_metrics(figures),
        params=[Param(k, v) for k, v in params.items() if k not in existing],
        tags=[RunTag(CELL_TAG, row["id"])],
    )


def log_experiment(run_id: str, figures: dict[str, float | None]) -> None:
    """The experiment's own figures (calls, cost, cells finished, the champion's difference) as its parent run's
    metrics, so that experiments compare in MLflow's run table; None values are left out."""
    from mlflow import MlflowClient

    MlflowClient().log_batch(run_id, metrics=_metrics(figures))


def _metrics(figures: dict[str, float | None]) -> list[Any]:
    """MLflow metrics of `figures` at step 0, now; None values left out."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in figures.items() if v is not None]


def registered_name(name: str) -> str:
    """A Model Registry name from an experiment's name (letters, digits, '-', '_', '.')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "refed-experiment"


def register_champion(model_uri: str, run_id: str | None, name: str, alias: str) -> str:
    """Register `model_uri` (logged by the run `run_id`) under `name` and point `alias` at it, unless the alias
    already points at a version from that run; returns `models:/<name>@<alias>`."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    with contextlib.suppress(MlflowException):
        current = client.get_model_version_by_alias(name, alias)
        if current.source == model_uri or (run_id is not None and current.run_id == run_id):
            return f"models:/{name}@{alias}"
    version = mlflow.register_model(model_uri, name)
    client.set_registered_model_alias(name, alias, version.version)
    return f"models:/{name}@{alias}"
