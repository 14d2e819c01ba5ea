"""The optimizers `optimize.optimizer` can name, one module each (see base.py); importing this package imports every
module in it, and each registers its optimizer in OPTIMIZERS."""

from refed_dspy.optimizers.teleprompters.base import CompileSettings, Optimizer, candidate_scores
from refed_dspy.registry import OPTIMIZERS, load_package

load_package(__name__, __path__, skip=("base",))

__all__ = ["OPTIMIZERS", "CompileSettings", "Optimizer", "candidate_scores"]
