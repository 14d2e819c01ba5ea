"""The registry of optimizers (`optimize.optimizer` names one)."""

from __future__ import annotations

from refed_dspy.optimizers.teleprompters.base import Optimizer
from refed_dspy.registry import Registry

OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", "optimize.optimizer")
