"""`refed status` and `refed_dspy.run_status`: where any directory refed writes stands, typed, and its text as
`refed status` prints it, read from its files without taking its lock (a run dir: run.py; an experiment dir: experiment.py)."""

from __future__ import annotations

from pathlib import Path

from refed_dspy.view.status.experiment import (
    ExperimentStatus,
    experiment_status,
    format_experiment_status,
    is_experiment_dir,
)
from refed_dspy.view.status.run import RunStatus, format_status, run_dir_status


def run_status(path: str | Path) -> RunStatus | ExperimentStatus:
    """The status of `path`, read from its files without taking its lock (a process may be writing it): an
    ExperimentStatus for a directory `refed experiment` writes, else a RunStatus (a run dir, a comparison, an
    optimization, a filtered or exported dir). RunDirError (one line) when refed wrote no such directory.

    Args:
        path: the directory to read.

    Returns:
        Its status: an ExperimentStatus or a RunStatus.

    Raises:
        RunDirError: `path` is not a directory refed wrote.
    """
    return experiment_status(path) if is_experiment_dir(path) else run_dir_status(path)


def status_text(status: RunStatus | ExperimentStatus) -> str:
    """What `refed status` prints of `status`."""
    return format_experiment_status(status) if isinstance(status, ExperimentStatus) else format_status(status)
