"""MLflow as an experiment's lab notebook: one parent run per experiment directory (found again on a resume), one
child run per cell (the optimize run: its grid values as params, its held-out figures as metrics, its compiled
program as its logged model), the leaderboard as the parent's artifacts, and the champion's program in the Model
Registry under an alias (`models:/<name>@<alias>`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refed_dspy.config import Config
from refed_dspy.tracking.mlflow_runs import KIND_TAG, flat_params, log_params_once, mlflow_run, usage_figures

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

    with mlflow_run(config, out, anywhere=True) as run:  # an earlier version filed it under "refed"
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
        "cell_wall_s": row.get("wall_s"),
        **usage_figures(row.get("eval_usage") or {}, "test."),
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


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "refed-experiment"


def registered_name(name: str, out: str | Path) -> str:
    """A Model Registry name from an experiment's name (letters, digits, '-', '_', '.') and its out directory: two
    experiment dirs of one name register apart, and the same dir (resumed) finds its model again."""
    return f"{_safe(name)}-{hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:6]}"


def register_champion(
    model_uri: str,
    run_id: str | None,
    name: str,
    alias: str,
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> str:
    """Register `model_uri` (logged by the run `run_id`) under `name` and point `alias` at it, unless the alias
    already points at a version from that run; the version gets `tags` and `description` (what made it: the
    experiment, the cell, its scores). Returns `models:/<name>@<alias>`."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    version = None
    with contextlib.suppress(MlflowException):
        current = client.get_model_version_by_alias(name, alias)
        if current.source == model_uri or (run_id is not None and current.run_id == run_id):
            version = current
    if version is None:
        version = mlflow.register_model(model_uri, name)
        client.set_registered_model_alias(name, alias, version.version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version.version, key, value)
    if description is not None:
        client.update_model_version(name, version.version, description=description)
    return f"models:/{name}@{alias}"


def champion_tags(result: Any, champion: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The tags and description of the champion's model version: the experiment and its dir, the cell and its
    values, its test score with its interval, and its baseline's."""
    diff = champion.get("difference") or {}
    tags = {
        "refed.experiment": result.name,
        "refed.experiment.dir": str(Path(result.out).resolve()),
        CELL_TAG: champion["id"],
        "refed.experiment.values": json.dumps(champion.get("values") or {}, sort_keys=True),
        "refed.test_score": f"{champion.get('test_mean'):.4f}",
        "refed.test_baseline": f"{champion.get('baseline_mean'):.4f}",
        "refed.test_difference": f"{diff.get('mean', 0.0):+.4f} [{diff.get('ci_low', 0.0):+.4f}, "
        f"{diff.get('ci_high', 0.0):+.4f}]",
        "refed.test_examples": str(champion.get("test_n")),
    }
    description = (
        f"Champion of experiment {result.name} ({tags['refed.experiment.dir']}): cell {champion['id']} "
        f"({champion.get('label')}). Test score {tags['refed.test_score']} (0-1) on {champion.get('test_n')} held-out "
        f"examples against the uncompiled program's {tags['refed.test_baseline']}: difference "
        f"{tags['refed.test_difference']} at level {diff.get('level', result.cell_level):.4f}."
    )
    return tags, description
