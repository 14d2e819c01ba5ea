"""The data records that flow through a run: references, their feedback, samples and rejects.

Which teachers made a run's samples (`count_teachers`, `teacher_rows`): each sample's `meta.teacher` (the model) and
`meta.endpoint` (its api_base).

A run resumed with `--resume-anyway` onto another model or endpoint holds samples of more than one teacher; the
summary, report, viewer and dataset card then list each with its sample count. Pure functions over sample metas.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


def content_id(*parts: str, length: int = 16) -> str:
    """Stable hex id from text parts (NUL-separated so ('a','bc') != ('ab','c'))."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:length]


class Reference(BaseModel):
    """One high-quality seed pair. `id` is a hash of its content, stable across loads."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="A hash of the instruction and response (16 hex digits).")
    instruction: str = Field(description="The reference instruction.")
    response: str = Field(description="Its high-quality response.")
    source: str = Field(description="Where it was read from: `embedded`, a hub name or a file path.")

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

    reference_id: str = Field(description="The reference's `id`.")
    subject_areas: str | None = Field(None, description="The subject areas its instruction covers (a feature).")
    relevant_skills: str | None = Field(None, description="The skills a good answer needs (a feature).")
    response_feedback: str | None = Field(
        None, description="What makes its response good and what could be better: the improver's guide."
    )
    usage: dict[str, Any] = Field(default_factory=dict, description="Calls, tokens and cost of collecting it.")

    def features(self) -> list[tuple[str, str]]:
        """(feature name, description) pairs that drive instruction synthesis.

        Returns:
            The pairs for subject_areas and relevant_skills, each where it is not empty.
        """
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
    """What the improver found in the draft (the prompt names its fields; their descriptions document the record)."""

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
    """The improver's plan (the prompt names its fields; their descriptions document the record)."""

    planned_changes: list[Point] = Field(
        default_factory=list, max_length=_POINTS, description="Concrete edits to make."
    )
    rationale: str = Field("", max_length=4000, description="Why these changes make the response better.")


class SampleMeta(BaseModel):
    """Provenance of one sample."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="The sample's stable id (a content hash).")
    method: str = Field(description="The synthesis method that made it.")
    reference_id: str = Field(description="The reference it was made from.")
    feature: str = Field(description="The feature that drove its instruction: subject_areas, relevant_skills, ...")
    teacher: str = Field(description="The teacher's model string.")
    endpoint: str | None = Field(None, description="The teacher's api_base (unset: the provider's default).")
    program: str = Field(description="The program: built-in, a file's absolute path, an MLflow URI or python:...")
    program_hash: str | None = Field(None, description="Content hash of the program (refed_dspy.synthesis.program).")
    prompt_format: int | None = Field(
        None, description="How its prompts were worded (refed_dspy.config.schema.PROMPT_FORMAT); unset: format 1."
    )
    usage: dict[str, Any] = Field(default_factory=dict, description="Calls, tokens and cost of this sample's calls.")


class OriginalPair(BaseModel):
    """The seed pair a recycled sample was made from (method 'reflection')."""

    instruction: str = Field(description="The seed's instruction.")
    response: str = Field(description="The seed's response.")


class Reflection(BaseModel):
    """What Reflection-Tuning's critiques said about the original pair."""

    instruction_critique: str | None = Field(
        None, description="The critique of the instruction (steps instruction, both)."
    )
    response_critique: str | None = Field(None, description="The critique of the response (steps response, both).")


class SampleRecord(BaseModel):
    """One line of samples.jsonl: the paper's released format plus `meta` provenance."""

    instruction: str = Field(min_length=1, description="The new instruction.")
    response: str = Field(min_length=1, description="The teacher's first response to it: the draft.")
    analysis: Analysis | None = Field(None, description="The improver's reading of the draft (methods that improve).")
    implementation_strategy: ImplementationStrategy | None = Field(None, description="The improver's plan.")
    improved_response: str | None = Field(None, description="The draft improved with the reference's feedback.")
    original: OriginalPair | None = Field(None, description="Method reflection: the seed pair it was made from.")
    reflection: Reflection | None = Field(None, description="Method reflection: the critiques.")
    meta: SampleMeta = Field(description="Provenance.")


def final_response(sample: dict[str, Any]) -> str:
    """The response a dataset built from a sample (a samples.jsonl row) uses: the improved one when there is one."""
    return (sample.get("improved_response") or sample.get("response") or "").strip()


class RejectRecord(BaseModel):
    """One line of rejects.jsonl: a failed or filtered item and why."""

    model_config = ConfigDict(extra="allow")

    stage: str = Field(description="The stage that failed or dropped it: feedback, synthesize, sample or dedup.")
    reason: str = Field(
        description="Why: truncated, unparseable, degenerate, refused, content_filter, api_error, timeout, a dedup reason, ..."
    )
    detail: str = Field(
        "", description="The error, in words (a rejected reply's first 2,000 characters are kept as `raw`)."
    )
    reference_id: str | None = Field(None, description="The reference the item came from.")
    item_id: str | None = Field(None, description="The item's id, where it has one.")
    final: bool = Field(True, description="False for API errors: the next resume tries the item again.")


def teacher_key(meta: dict[str, Any]) -> tuple[str, str | None]:
    """(model, endpoint) of one sample's meta; the endpoint is None for the provider's default (or an old record)."""
    return str(meta.get("teacher") or "?"), meta.get("endpoint")


def count_teachers(metas: Iterable[dict[str, Any]]) -> Counter:
    """Samples by (model, endpoint)."""
    return Counter(teacher_key(m) for m in metas)


def teacher_rows(counts: Counter) -> list[dict[str, Any]]:
    """[{model, endpoint, samples}], most samples first."""
    return [
        {"model": model, "endpoint": endpoint, "samples": n}
        for (model, endpoint), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or ""))
    ]


def teacher_label(row: dict[str, Any]) -> str:
    """`model` or `model at endpoint`."""
    return f"{row['model']} at {row['endpoint']}" if row.get("endpoint") else str(row["model"])


def mixed_line(rows: list[dict[str, Any]] | None) -> str | None:
    """One line naming each teacher with its sample count when there are several; None for one (or none)."""
    if not rows or len(rows) < 2:
        return None
    parts = ", ".join(f"{teacher_label(r)} ({r['samples']})" for r in rows)
    return f"samples from {len(rows)} teachers: {parts}"


_SNAPSHOT = re.compile(r"[-@](\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def model_family(model: str) -> str:
    """A model string without its provider route and snapshot date, lower-cased: openai/gpt-4o-mini-2024-07-18,
    azure/gpt-4o-mini and gpt-4o-mini are one model; so are anthropic/claude-3-5-sonnet-20241022 and -latest."""
    return _SNAPSHOT.sub("", model.rsplit("/", 1)[-1].strip().lower())


def self_preference(judge: str | None, teachers: Iterable[str]) -> str | None:
    """The judge's model string when it is the model of one of the teachers (see `model_family`), else None."""
    if not judge:
        return None
    return judge if any(model_family(judge) == model_family(t) for t in teachers if t) else None


def self_preference_record(judge: str | None, metas: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What a report's judge block records of it: `self_preference` (True when the judge is the model of one of the
    samples' teachers; None when nothing was judged) and `self_preference_model`."""
    model = self_preference(judge, {str(m.get("teacher") or "") for m in metas})
    return {"self_preference": None if judge is None else model is not None, "self_preference_model": model}


def self_preference_line(model: str) -> str:
    """One line saying that the judge judges its own model's samples."""
    return (
        f"the judge {model} is also the teacher: judges favour their own model's outputs, so its scores may run high "
        "(judge with another model to compare)"
    )
