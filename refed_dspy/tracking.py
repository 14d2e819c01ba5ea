"""MLflow tracking: each run dir maps to one MLflow run (tagged with the run dir's absolute path)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from refed_dspy.config import Config

RUN_DIR_TAG = "refed.run_dir"


@contextlib.contextmanager
def mlflow_run(config: Config, run_dir: str | Path) -> Iterator[object]:
    """The MLflow run of `run_dir` (created on first use), active for the block."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking.mlflow_uri)
    experiment = mlflow.set_experiment(config.tracking.experiment)
    path = str(Path(run_dir).resolve())
    found = mlflow.search_runs(experiment_ids=[experiment.experiment_id], output_format="list", max_results=1,
                               filter_string=f"tags.`{RUN_DIR_TAG}` = '{path}'")
    run_id = found[0].info.run_id if found else None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else Path(path).name,
                          tags=None if run_id else {RUN_DIR_TAG: path}) as run:
        yield run


def log_artifacts(config: Config, run_dir: str | Path, paths: list[Path], kind: str) -> str:
    """Log files as artifacts under `kind/` of the run dir's MLflow run; returns the MLflow run id."""
    import mlflow

    with mlflow_run(config, run_dir) as run:
        for p in paths:
            mlflow.log_artifact(str(p), artifact_path=kind)
        return run.info.run_id
