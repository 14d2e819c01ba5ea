"""What a synthesis run makes and from what: `[seeds]`, `[synthesis]` and `[batch]`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from refed_dspy.config.section import Registered, Seconds, Section, UserPath
from refed_dspy.registry import METHODS

SEED_FORMATS = ("auto", "lima", "alpaca", "sharegpt", "openai", "plain")


class SeedsConfig(Section):
    """Where the reference (seed) pairs come from."""

    source: UserPath | None = Field(
        None,
        description="Hugging Face dataset name (e.g. 'GAIR/lima'), a local .json/.jsonl/.parquet/.csv file, or a saved dataset directory. Unset: the embedded seed set.",
    )
    format: Literal[SEED_FORMATS] = Field("auto", description="Row shape: auto, lima, alpaca, sharegpt, openai, plain.")
    split: str = Field("train", description="Dataset split to read from a hub dataset or saved DatasetDict.")
    limit: int | None = Field(None, gt=0, description="Use at most this many references (after skipping bad rows).")


class SynthesisConfig(Section):
    """What to synthesize and how hard to push the provider."""

    method: Annotated[str, AfterValidator(Registered(METHODS))] = Field(
        "refed", description="The synthesis method (refed_dspy.methods; a method you register is accepted too)."
    )
    size: int = Field(1000, gt=0, description="Number of samples to produce; the run stops at exactly this many.")
    instructions_per_feature: int = Field(
        10, gt=0, le=50, description="New instructions per reference feature per pass (the paper: 10)."
    )
    mode: Literal["online", "batch"] = Field(
        "online",
        description="online: calls over HTTP as they are needed. batch: the calls go to the provider's batch API (OpenAI, Azure OpenAI, Anthropic) at its batch price, stage by stage in waves ([batch] says how); results take minutes to hours.",
    )
    concurrency: int = Field(
        64, gt=0, le=4096, description="LM calls kept in flight at all times (online mode); on Ray, per worker."
    )
    dedup_rouge_threshold: float = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="Drop a new instruction whose ROUGE-L F1 against a kept one is at least this (Self-Instruct uses 0.7).",
    )
    max_cost_usd: float | None = Field(
        None, gt=0, description="Stop cleanly before the run's estimated cost would exceed this."
    )
    max_calls: int | None = Field(
        None,
        gt=0,
        description="Stop cleanly before the run's LM calls would exceed this. Unset: max_calls_per_sample x size + 2 per reference.",
    )
    max_calls_per_sample: float = Field(
        10.0,
        ge=0,
        le=1000,
        description="The default call budget when max_calls is unset: this many LM calls per sample of `size` (a run needs 1-4), plus 2 per reference for its feedback. 0: no default budget.",
    )
    min_yield: float = Field(
        0.05,
        ge=0.0,
        lt=1.0,
        description="Stop as exhausted when fewer than this share of the last 100 instructions became samples (the rest dropped as duplicates or rejected): more calls would make nothing. 0: never.",
    )
    max_consecutive_failures: int = Field(
        25,
        gt=0,
        description="Abort after this many failed items in a row: API errors after retries, or outputs rejected as truncated, unparseable or refused (the rest of the run is resumable). A request a service tier had no capacity for (flex's 429 'resource unavailable') is waited out and never counts.",
    )
    seed: int = Field(0, description="Seed for every random choice the run makes.")
    reflection: Literal["instruction", "response", "both"] = Field(
        "both",
        description="For method 'reflection': which Reflection-Tuning steps recycle each seed pair (instruction, response, or both).",
    )
    program: UserPath | None = Field(
        None,
        description="A compiled per-instruction program to respond and improve with: a program.json written by `refed optimize`, or an MLflow model URI (models:/..., runs:/...). Unset: the built-in prompts.",
    )


class BatchConfig(Section):
    """How batch mode (synthesis.mode or judging.mode = "batch") makes and watches provider batches."""

    poll_s: Seconds = Field(30.0, gt=0, description="Seconds between status checks of an open batch.")
    linger_s: Seconds = Field(
        5.0,
        ge=0,
        description="Submit the requests waiting for a batch once no new one came for this long (or sooner, when every piece of work waits on a batch).",
    )
    max_requests: int | None = Field(
        None,
        gt=0,
        description="Requests per batch at most. Unset: the provider's limit (OpenAI 50,000; Anthropic 100,000).",
    )
    max_bytes: int | None = Field(
        None, gt=0, description="Bytes per batch file at most. Unset: the provider's limit (OpenAI 200 MB)."
    )
    max_resubmits: int = Field(
        3,
        ge=0,
        le=10,
        description="Times a request that came back unanswered (its batch expired, was cancelled or failed) is sent again in a later batch.",
    )
    max_in_flight: int = Field(20000, gt=0, description="Pieces of work waiting on batches at once.")
