"""How a run's data is judged and checked: `[judging]`, `[report]` and `[quality]`."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from refed_dspy.config.benchmarks import BenchmarkEntry, benchmark_entries
from refed_dspy.config.section import ModelName, Section
from refed_dspy.text.closeness import COPY_THRESHOLD
from refed_dspy.text.contamination import NGRAM, SHARE

_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class JudgingConfig(Section):
    """How `refed judge` scores a run's samples (the judge's LM is [judge])."""

    criteria: list[str] = Field(
        ["helpfulness", "accuracy", "depth", "clarity", "instruction_following"],
        description="Pointwise rubric: each criterion is scored 1-10 (snake_case names).",
    )
    pointwise: bool = Field(True, description="Score each sample's final response on every criterion.")
    pairwise: bool = Field(
        True,
        description="Compare improved_response with the draft, in both orders (position bias cancels; disagreement is a tie).",
    )
    mode: Literal["online", "batch"] = Field(
        "online", description="online, or batch: the judge's calls go to its provider's batch API ([batch])."
    )
    concurrency: int = Field(
        32, gt=0, le=4096, description="Judge calls kept in flight (online mode); on Ray, per worker."
    )
    max_cost_usd: float | None = Field(None, gt=0, description="Stop cleanly before judging would exceed this cost.")
    max_calls: int | None = Field(
        None, gt=0, description="Stop cleanly before judging would exceed this many LM calls."
    )
    max_consecutive_failures: int = Field(
        25,
        gt=0,
        description="Abort after this many failed judgments in a row: API errors after retries, or judge outputs that break their contract (resumable). A request a service tier had no capacity for (flex's 429 'resource unavailable') is waited out and never counts.",
    )

    @field_validator("criteria")
    @classmethod
    def _criteria_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one criterion")
        for name in value:
            if not _IDENT.match(name):
                raise ValueError(f"criterion '{name}' must be snake_case (a-z, 0-9, _), at most 40 characters")
        if len(set(value)) != len(value):
            raise ValueError("names a criterion twice")
        return value


class ReportConfig(Section):
    """What `refed report` computes."""

    embedding_model: ModelName | None = Field(
        None,
        description="Embedding model for embedding diversity: a local sentence-embedding model folder (run here with "
        "the scorer extra; it also gives the coherence of `refed report --score`), or a model dspy.Embedder takes "
        "(e.g. 'openai/text-embedding-3-small'). Unset: skipped.",
    )
    rouge_sample: int = Field(200, gt=1, description="Instructions sampled for the mean pairwise ROUGE-L.")
    seed: int = Field(0, description="Seed for the report's samples.")


class QualityConfig(Section):
    """The data checks of `refed filter`, `refed report` and `refed export`, made without an LM call: decontamination
    against the evaluation benchmarks the data's users will report."""

    benchmarks: list[BenchmarkEntry] = Field(
        default_factory=list,
        description="Evaluation prompt sets to check the samples against: a preset (alpaca_eval, arena_hard, "
        "mt_bench, ifeval: the Hugging Face dataset is fetched on first use), a path to a .json/.jsonl/.parquet/.csv "
        "file or saved dataset directory whose rows carry instruction or prompt, or a table {source, file, config, "
        "split, field, name} for any hub dataset or local file. Empty: nothing is checked.",
    )
    ngram: int = Field(NGRAM, ge=1, le=64, description="Words per n-gram of the overlap check.")
    share: float = Field(
        SHARE,
        gt=0,
        le=1,
        description="A sample is contaminated when its text is a benchmark prompt after normalization (case, "
        "whitespace, punctuation), or shares at least this share of the shorter text's word n-grams with one.",
    )
    check_responses: bool = Field(
        False, description="Check each sample's final response against the prompts too, not only its instruction."
    )
    copy_threshold: float | None = Field(
        COPY_THRESHOLD,
        gt=0,
        le=1,
        description="Closeness to its own reference at or above which a sample is a copy of it: its ROUGE-L, or the "
        "share of its words (or the reference's) in runs of 8+ words found word for word in the other "
        "(refed_dspy.text.closeness). The report counts and shows such samples, the viewer marks them, the reference_copy "
        "filter removes them (unless given a threshold of its own), and the optimize metric scores a prediction that "
        "copies its reference 0 with no judge call (a judge sees a polished answer in a copy: an optimizer could learn "
        "to copy). Unset: the metric checks nothing; the report, viewer and filter take 0.8.",
    )

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        return benchmark_entries(value)
