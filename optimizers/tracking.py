"""An optimization's MLflow run: its params, its figures as metrics, its files as artifacts and its program as the
logged model."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from refed_dspy.config import Config, LMSpec, TrackingConfig
from refed_dspy.tracking.figures import USAGE_TABLE, usage_figures, usage_table
from refed_dspy.tracking.mlflow_runs import (
    KIND_TAG,
    RUN_DIR_TAG,
    STEPS_TAG,
    config_params,
    connect,
    log_program,
)
from refed_dspy.tracking.traces import dspy_traces


@contextlib.contextmanager
def tracked(tracking: TrackingConfig, record: Config, out: Path, optimizer: str):
    """An MLflow run for this optimization, with the config of record `record` as its params (or nothing when tracking
    is off). Traces of its DSPy calls only when tracking.log_traces is on (refed_dspy.tracking.traces: a sample,
    keys masked); DSPy autologging's compile and eval logging stay off: they log a model per candidate and scores in
    percent, where this run logs one model and every score on the metric's 0-1 scale."""
    if not tracking.enabled:
        yield None
        return
    import mlflow

    connect(tracking)
    with (
        dspy_traces(tracking),
        mlflow.start_run(
            run_name=f"optimize-{optimizer}",
            tags={KIND_TAG: "optimize", STEPS_TAG: "optimize", RUN_DIR_TAG: str(out.resolve())},
            nested=mlflow.active_run() is not None,  # a cell of an experiment: a child of its run
        ) as run,
    ):
        mlflow.log_params(config_params(record))
        yield run


def log_result(result: dict[str, Any], summary: dict[str, Any], files: list[Path], teacher: LMSpec) -> str:
    """The optimization's figures, its files and its program (run with the teacher of record `teacher`) into the
    active MLflow run; returns the logged model's URI."""
    import mlflow

    mlflow.log_metrics(
        {
            "score_before": result["score_before"],
            "score_after": result["score_after"],
            "kept_baseline": float(summary.get("kept") == "baseline"),
            "wall_s": float(summary.get("wall_s") or 0.0),
            **usage_figures(summary["usage"]),
            "examples_calls": float(summary.get("examples_usage", {}).get("calls", 0)),
        }
    )
    mlflow.log_table(usage_table(summary["usage"]), USAGE_TABLE)
    for step, score in enumerate(result["steps"]):
        mlflow.log_metric("step_score", score, step=step)
    for p in files:
        mlflow.log_artifact(str(p))
    example = next(((ex, pred) for ex, pred, _ in result["before_rows"] if pred is not None), None)
    return log_program(result["program"], teacher, example=example)


def log_summary(path: Path) -> None:
    """optimize_summary.json, written once the run's figures are logged, as an artifact of the active run."""
    import mlflow

    mlflow.log_artifact(str(path))
