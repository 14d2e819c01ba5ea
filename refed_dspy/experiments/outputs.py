"""What a finished experiment leaves: experiment.json, experiment.md and experiment.html (each cell's program against
its baseline's), and with tracking on, the cells' figures, the champion in the Model Registry and those files in
MLflow."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from refed_dspy.errors import first_line
from refed_dspy.experiments.config import Cell, ExperimentSettings, cell_config
from refed_dspy.experiments.leaderboard import HEADER, experiment_markdown, leaderboard_rows
from refed_dspy.experiments.page import program_view, render_page
from refed_dspy.experiments.result import ExperimentResult
from refed_dspy.experiments.stats import significantly_better
from refed_dspy.optimizers.plan import target_program
from refed_dspy.store.jsonl import read_json, write_json_atomic, write_text_atomic
from refed_dspy.tracking.experiment_runs import (
    champion_tags,
    log_cell,
    log_experiment,
    register_champion,
    registered_name,
)
from refed_dspy.tracking.mlflow_runs import usage_figures

log = logging.getLogger(__name__)


def write_outputs(result: ExperimentResult, base: dict[str, Any]) -> list[Path]:
    """experiment.json, .md and .html in the experiment's directory (their paths set on `result`); their paths."""
    out = Path(result.out)
    json_path, md_path, page_path = out / "experiment.json", out / "experiment.md", out / "experiment.html"
    result.json_file, result.markdown_file, result.page_file = str(json_path), str(md_path), str(page_path)
    write_json_atomic(json_path, result.model_dump(mode="json", by_alias=True))
    write_text_atomic(md_path, experiment_markdown(result))
    write_text_atomic(page_path, render_page(result, HEADER, leaderboard_rows(result), _programs(result, base)))
    return [json_path, md_path, page_path]


def _programs(result: ExperimentResult, base: dict[str, Any]) -> dict[str, tuple[dict, dict]]:
    """For each finished cell: its baseline's program and its own, as predictor views (instructions, demos)."""
    out = {}
    for row in result.cells:
        state = read_json(row.get("program") or "")
        if row.get("status") != "done" or not state:
            continue
        baseline = target_program(cell_config(base, Cell(row["values"], row["repeat"]).overrides(0))).dump_state()
        out[row["id"]] = (program_view(baseline), program_view(state))
    return out


def track(result: ExperimentResult, champion: dict | None, settings: ExperimentSettings, parent: Any) -> None:
    """Cells' figures into their child runs, the champion into the Model Registry; a tracking failure is a warning
    (every figure is in experiment.json)."""
    result.mlflow_run_id = parent.info.run_id
    try:
        for row in result.cells:
            if row.get("status") == "done":
                log_cell(row.get("mlflow_run_id"), row)
        if champion is not None and champion.get("model_uri"):
            name = settings.registered_model or registered_name(settings.name, result.out)
            tags, description = champion_tags(result, champion)
            result.champion_uri = register_champion(
                champion["model_uri"], champion.get("mlflow_run_id"), name, settings.alias, tags, description
            )
    except Exception as err:  # noqa: BLE001 - tracking must not lose a finished experiment
        log.warning("warning: MLflow tracking of the experiment failed (%s: %s)", type(err).__name__, first_line(err))
    diff = (champion or {}).get("difference") or {}
    figures = {
        "calls": result.usage["calls"],
        "cost_usd": result.usage["cost_usd"],
        "cells": len(result.cells),
        "cells_done": sum(r.get("status") == "done" for r in result.cells),
        "cells_significantly_better": sum(significantly_better(r.get("difference")) for r in result.cells),
        "test_examples": result.examples["test"],
        "detectable_difference": result.detectable,
        "champion_test_score": (champion or {}).get("test_mean"),
        "champion_test_difference": diff.get("mean"),
        "wall_s": result.wall_s,
        **usage_figures(result.usage),
    }
    try:  # apart: a failure here must not keep the champion from the registry
        log_experiment(result.mlflow_run_id, figures)
    except Exception as err:  # noqa: BLE001 - every figure is in experiment.json
        log.warning(
            "warning: MLflow: the experiment's figures were not logged (%s: %s)", type(err).__name__, first_line(err)
        )


def log_leaderboard(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """The experiment's files into its parent run, in the store at `tracking_uri` (after its run's block: the process's
    MLflow is the caller's again); a failure is a warning."""
    try:
        from mlflow import MlflowClient

        for path in paths:
            MlflowClient(tracking_uri).log_artifact(run_id, str(path))
    except Exception as err:  # noqa: BLE001 - the files are written
        log.warning("warning: MLflow: the leaderboard was not logged (%s: %s)", type(err).__name__, first_line(err))
