"""What `optimize` returns, and what optimize_summary.json holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy


@dataclass
class OptimizeResult:
    """What `optimize` returns: the compiled program, its scores and where everything went."""

    program: dspy.Module
    optimizer: str
    score_before: float
    score_after: float
    steps: list[float]
    out_dir: Path
    program_path: Path
    usage: dict[str, Any]
    n_train: int
    n_val: int
    mlflow_run_id: str | None = None
    model_uri: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float | None:
        """What the optimization cost in USD, the synthesis of its examples included (None: a price is unknown)."""
        parts = [self.usage.get("cost_usd"), (self.extra.get("examples_usage") or {}).get("cost_usd", 0.0)]
        return None if None in parts else sum(parts)

    def summary(self) -> dict[str, Any]:
        """The JSON-able figures (optimize_summary.json)."""
        return {
            "status": "complete",
            "optimizer": self.optimizer,
            "score_before": self.score_before,
            "score_after": self.score_after,
            "steps": self.steps,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "out_dir": str(self.out_dir),
            "program": str(self.program_path),
            "usage": self.usage,
            "mlflow_run_id": self.mlflow_run_id,
            "model_uri": self.model_uri,
            **self.extra,
        }
