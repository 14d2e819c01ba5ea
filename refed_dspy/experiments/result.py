"""What `refed experiment` returns and writes to experiment.json."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from refed_dspy.store.results import Optional, Result


class ExperimentResult(Result):
    """`refed experiment`'s result (experiment.json holds the same)."""

    name: str
    status: str = Field(description="complete | budget (a cell did not fit) | failed (a cell failed)")
    out: str
    split: dict[str, int] = Field(description="References on each side: train, val, test.")
    examples: dict[str, int] = Field(description="Examples on each side.")
    level: float = Field(description="The experiment's confidence level (each cell's interval is Bonferroni's).")
    cell_level: float
    detectable: float = Field(description="The smallest difference the test examples detect with 80% power.")
    underpowered: bool = Field(description="detectable > min_effect: smaller effects cannot be told from noise.")
    cells: list[dict[str, Any]] = Field(description="One row per cell, best test score first.")
    baselines: list[dict[str, Any]]
    champion: str | None = Field(
        description="Of the cells whose test score beats their baseline's significantly, the best on validation."
    )
    champion_uri: str | None = Optional("With tracking on: the champion's program in the Model Registry.")
    mlflow_run_id: str | None = Optional("With tracking on: the experiment's parent run.")
    estimate: dict[str, Any] = Field(description="LM calls estimated before any call: examples, baselines, each cell.")
    usage: dict[str, Any] = Field(description="Calls and cost of the whole experiment: examples, cells, baselines.")
    wall_s: float
    finished_at: str
    json_file: str | None = Optional("Where experiment.json was written.", alias="json")
    markdown_file: str | None = Optional("Where experiment.md was written.", alias="markdown")
    page_file: str | None = Optional("Where experiment.html was written.", alias="page")
