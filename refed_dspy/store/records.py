"""The data records that flow through a run: references, their feedback, samples and rejects."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


def content_id(*parts: str, length: int = 16) -> str:
    """Stable hex id from text parts (NUL-separated so ('a','bc') != ('ab','c'))."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:length]


class Reference(BaseModel):
    """One high-quality seed pair. `id` is a hash of its content, stable across loads."""

    model_config = ConfigDict(frozen=True)

    id: str
    instruction: str
    response: str
    source: str

    @classmethod
    def coerce(cls, value: Any) -> Reference:
        """A Reference from itself, a dict of its fields, or its JSON (as an MLflow pyfunc passes inputs)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls.model_validate_json(value)
        return cls.model_validate(value)

    @classmethod
    def make(cls, instruction: str, response: str, source: str) -> Reference:
        instruction, response = instruction.strip(), response.strip()
        return cls(id=content_id(instruction, response), instruction=instruction, response=response, source=source)


class ReferenceFeedback(BaseModel):
    """Feedback collected once per reference; what the method propagates to new samples."""

    reference_id: str
    subject_areas: str | None = None
    relevant_skills: str | None = None
    response_feedback: str | None = None
    usage: dict[str, Any] = Field(default_factory=dict)

    def features(self) -> list[tuple[str, str]]:
        """(feature name, description) pairs that drive instruction synthesis."""
        out = []
        if self.subject_areas:
            out.append(("subject_areas", self.subject_areas))
        if self.relevant_skills:
            out.append(("relevant_skills", self.relevant_skills))
        return out


# The improver's analysis and plan are LM output: their bounds are part of the output contract (and of the
# JSON schema the provider sees). Generous: they stop runaway lists, not a thorough analysis.
Point = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
_POINTS = 20


class Analysis(BaseModel):
    """What the improver found in the draft (field descriptions are part of the prompt)."""

    original_strengths: list[Point] = Field(
        default_factory=list, max_length=_POINTS, description="What the draft already does well and should keep."
    )
    improvement_opportunities: list[Point] = Field(
        default_factory=list, max_length=_POINTS, description="Where the draft falls short."
    )
    relevant_feedback: list[Point] = Field(
        default_factory=list,
        max_length=_POINTS,
        description="The points of the given feedback that apply to this draft.",
    )


class ImplementationStrategy(BaseModel):
    """The improver's plan (field descriptions are part of the prompt)."""

    planned_changes: list[Point] = Field(
        default_factory=list, max_length=_POINTS, description="Concrete edits to make."
    )
    rationale: str = Field("", max_length=4000, description="Why these changes make the response better.")


class SampleMeta(BaseModel):
    """Provenance of one sample."""

    model_config = ConfigDict(extra="allow")

    id: str
    method: str
    reference_id: str
    feature: str
    teacher: str
    endpoint: str | None = None  # the teacher's api_base (None: the provider's default)
    program: str
    program_hash: str | None = None  # content hash of the program that made it (refed_dspy.synthesis.provenance)
    usage: dict[str, Any] = Field(default_factory=dict)


class OriginalPair(BaseModel):
    """The seed pair a recycled sample was made from (method 'reflection')."""

    instruction: str
    response: str


class Reflection(BaseModel):
    """What Reflection-Tuning's critiques said about the original pair."""

    instruction_critique: str | None = None
    response_critique: str | None = None


class SampleRecord(BaseModel):
    """One line of samples.jsonl: the paper's released format plus `meta` provenance."""

    instruction: str = Field(min_length=1)
    response: str = Field(min_length=1)
    analysis: Analysis | None = None
    implementation_strategy: ImplementationStrategy | None = None
    improved_response: str | None = None
    original: OriginalPair | None = None
    reflection: Reflection | None = None
    meta: SampleMeta


def final_response(sample: dict[str, Any]) -> str:
    """The response a dataset built from a sample (a samples.jsonl row) uses: the improved one when there is one."""
    return (sample.get("improved_response") or sample.get("response") or "").strip()


class RejectRecord(BaseModel):
    """One line of rejects.jsonl: a failed or filtered item and why."""

    model_config = ConfigDict(extra="allow")

    stage: str
    reason: str
    detail: str = ""
    reference_id: str | None = None
    item_id: str | None = None
    final: bool = True
