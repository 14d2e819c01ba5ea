"""The pipeline program of a method: the one DSPy module whose parts a synthesis run executes."""

from __future__ import annotations

import dspy

from refed_dspy.methods import Method
from refed_dspy.programs.reference_synthesis import ReferenceSynthesis
from refed_dspy.programs.reflection_tuning import ReflectionTuning


def build_pipeline(
    method: Method, n: int = 10, reflection: str = "both", respond: dspy.Module | None = None
) -> dspy.Module:
    """The built-in pipeline of `method` (its predictors at their default prompts), with `respond` as its
    per-instruction part when given."""
    if method.recycle:
        return ReflectionTuning(reflection, respond=respond)
    return ReferenceSynthesis(
        n,
        respond=respond,
        describe=method.describe,
        critique=method.critique_reference,
        improve=method.improve,
        sample_feedback=method.sample_feedback,
    )
