"""The synthesis methods (see base.py for what a method is): the paper's method and its baselines, one table of
switches (reference_synthesis.py), and Reflection-Tuning (reflection.py).

Importing this package imports every module in it, and each registers its methods in METHODS; a method of
your own registers the same way (`@METHODS.register` on a `Method` subclass) and `synthesis.method` accepts it.
"""

from refed_dspy.methods.base import Defaults, Method, SeedItem, SynthesisSettings
from refed_dspy.methods.reference_synthesis import ReferenceSynthesisMethod
from refed_dspy.registry import METHODS, load_package

load_package(__name__, __path__, skip=("base", "reference_synthesis"))

__all__ = ["METHODS", "Defaults", "Method", "ReferenceSynthesisMethod", "SeedItem", "SynthesisSettings"]
