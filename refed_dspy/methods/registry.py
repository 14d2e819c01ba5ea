"""The synthesis methods' registry (`synthesis.method` names one): METHODS, defined in refed_dspy.registry (where the
config reads it) and filled by this package's modules, and the questions asked of it."""

from __future__ import annotations

from refed_dspy.methods.base import Method
from refed_dspy.registry import METHODS


def get_method(name: str) -> Method:
    """The method called `name`; ConfigError naming the available ones otherwise."""
    return METHODS.get(name)


def rewrites_reference(name: str | None) -> bool:
    """The method called `name` makes each sample by rewriting its reference (Reflection-Tuning), so closeness to the
    reference is its point, not a copy; False for a name no method here has."""
    return name in METHODS and METHODS.get(name).rewrites_reference
