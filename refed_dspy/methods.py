"""The synthesis methods: which feedback each collects and how responses are made.

Every method shares the runner, run directory, records, resume and accounting.
"""

from __future__ import annotations

from dataclasses import dataclass

from refed_dspy.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """What one method does at each stage."""

    name: str
    describe: bool  # reference-level instruction feedback drives synthesis
    critique_reference: bool  # reference-level response feedback, applied by the improver
    improve: bool
    sample_feedback: bool  # critique every new pair itself (one feedback call per sample)
    recycle: bool = False  # rewrite each seed pair (Reflection-Tuning) instead of synthesizing new instructions

    @property
    def collects_feedback(self) -> bool:
        return self.describe or self.critique_reference

    @property
    def features(self) -> tuple[str, ...]:
        if self.recycle:
            return ()
        return ("subject_areas", "relevant_skills") if self.describe else ("reference",)


METHODS = {
    "refed": Method("refed", describe=True, critique_reference=True, improve=True, sample_feedback=False),
    "sample_feedback": Method(
        "sample_feedback", describe=True, critique_reference=False, improve=True, sample_feedback=True
    ),
    "instruction_feedback": Method(
        "instruction_feedback", describe=True, critique_reference=False, improve=False, sample_feedback=False
    ),
    "no_feedback": Method(
        "no_feedback", describe=False, critique_reference=False, improve=False, sample_feedback=False
    ),
    "reflection": Method(
        "reflection", describe=False, critique_reference=False, improve=False, sample_feedback=False, recycle=True
    ),
}


def get_method(name: str) -> Method:
    """The Method called `name`; ConfigError for one that is not built."""
    if name not in METHODS:
        raise ConfigError(f"synthesis.method '{name}' is not built yet; available: {', '.join(METHODS)}")
    return METHODS[name]
