"""decontaminate: remove samples whose instruction (and, optionally, final response) matches a prompt of an evaluation
benchmark, each with a reason naming the benchmark and the prompt. No LM call: the matching is refed_dspy.text.contamination
(as a reader sees the texts: exact after normalization, a share of word n-grams, the shorter text's words in order, or
its words in pairs of words the other holds, in any order), the prompts come from refed_dspy.store.benchmarks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from refed_dspy.config.judging import BenchmarkEntry, benchmark_entries
from refed_dspy.errors import ConfigError
from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split, text_of
from refed_dspy.registry import FILTERS
from refed_dspy.store.benchmarks import BenchmarkPrompts, load_benchmarks, pinned
from refed_dspy.text.contamination import NGRAM, SHARE, BenchmarkIndex, Match

SETTINGS = ("benchmarks", "ngram", "share", "check_responses")  # what [quality] gives a filter that leaves them unset
PROMPT_CHARS = 200  # of a matched prompt, in a removal reason


@dataclass(frozen=True)
class Hit:
    """A sample's text that matched a benchmark prompt: which text ('instruction' or 'response'), and the match."""

    field: str
    match: Match


def build_index(benchmarks: list[BenchmarkPrompts], ngram: int = NGRAM, share: float = SHARE) -> BenchmarkIndex:
    """The index of the prompts of `benchmarks` (as load_benchmarks reads them)."""
    return BenchmarkIndex({b.name: b.prompts for b in benchmarks}, ngram, share)


def find_contamination(samples: list[Sample], index: BenchmarkIndex, check_responses: bool = False) -> dict[str, Hit]:
    """Sample id -> its first text that matches a prompt of `index` (the instruction; then, with `check_responses`,
    the final response), for the samples that match one."""
    fields = ("instruction", "response") if check_responses else ("instruction",)
    hits = {}
    for s in samples:
        for field in fields:
            found = index.match(text_of(s, field))
            if found is not None:
                hits[sample_id(s)] = Hit(field, found)
                break
    return hits


def reason(hit: Hit, ngram: int) -> str:
    """The removal reason: the text, the benchmark and the prompt it matched, and how."""
    m = hit.match
    prompt = m.prompt if len(m.prompt) <= PROMPT_CHARS else m.prompt[:PROMPT_CHARS] + "..."
    how = {
        "exact": "the same after normalization",
        "ngram": f"{m.overlap:.0%} of {ngram}-grams shared",
        "order": f"{m.overlap:.0%} of the shorter text's words in order",
        "pairs": f"{m.overlap:.0%} of the shorter text's words in word pairs the other holds, in any order",
    }[m.how]
    return f"{hit.field} matches benchmark {json.dumps(m.benchmark)} prompt {json.dumps(prompt)} ({how})"


_BENCHMARK = re.compile(r' matches benchmark ("(?:[^"\\]|\\.)*") prompt ')


def benchmark_of(text: str) -> str | None:
    """The benchmark a removal reason written by `reason` names (None for another reason)."""
    found = _BENCHMARK.search(text or "")
    return json.loads(found.group(1)) if found else None


def decontaminate(
    samples: list[Sample],
    benchmarks: list[BenchmarkEntry],
    ngram: int = NGRAM,
    share: float = SHARE,
    check_responses: bool = False,
) -> FilterResult:
    """Remove the samples whose instruction (with `check_responses`, or final response) matches a prompt of
    `benchmarks` (presets, paths or Benchmark tables; see refed_dspy.store.benchmarks); ConfigError when one cannot
    be read.

    Args:
        samples: the samples, as samples.jsonl holds them.
        benchmarks: the evaluation prompt sets to check against: presets, paths or Benchmark tables.
        ngram: words per n-gram.
        share: the share of the shorter text's n-grams in common with a prompt from which a sample is removed.
        check_responses: check each sample's final response too.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.

    Raises:
        ConfigError: a benchmark cannot be read.
    """
    index = build_index(load_benchmarks(benchmarks), ngram, share)
    hits = find_contamination(samples, index, check_responses)
    return split(samples, {sid: reason(hit, ngram) for sid, hit in hits.items()})


@FILTERS.register
class Decontaminate(Filter):
    """Remove samples whose instruction (or, with check_responses, final response) matches a prompt of an evaluation
    benchmark, both read as a reader sees them (markup, character references, look-alike letters, invisible
    characters, accents, leetspeak digits and words joined by underscores or case changes do not count): the same text
    after normalization, a share of word n-grams in common, all but one word in ten of the shorter text in order (a
    filler word every few words, one word changed in an 11-word prompt), or as many of its words in word pairs the other
    holds, in any order (halves swapped, a filler every third word). Settings left unset are [quality]'s."""

    rank = 6
    name: Literal["decontaminate"] = Field("decontaminate", description="This filter's name.")
    benchmarks: list[BenchmarkEntry] | None = Field(
        None,
        description="The evaluation prompt sets to check against (as [quality] benchmarks takes them). "
        "Unset: [quality] benchmarks.",
    )
    ngram: int | None = Field(None, ge=1, le=64, description="Words per n-gram. Unset: [quality] ngram.")
    share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Share of the shorter text's n-grams in common with a prompt from which a sample is removed. "
        "Unset: [quality] share.",
    )
    check_responses: bool | None = Field(
        None, description="Check each sample's final response too. Unset: [quality] check_responses."
    )
    _index: BenchmarkIndex | None = PrivateAttr(None)

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        # `--apply decontaminate:benchmarks=evals/alpaca_eval.jsonl` gives one entry, as a string
        return benchmark_entries(value)

    def configured(self, config: Any) -> Decontaminate:
        """This filter with the settings it leaves unset taken from `config.quality`, and its local benchmark files
        named by absolute path (as written in their names), so the step's record reads from any directory."""
        update = {key: getattr(config.quality, key) for key in SETTINGS if getattr(self, key) is None}
        benchmarks = update.get("benchmarks", self.benchmarks)
        update["benchmarks"] = None if benchmarks is None else [pinned(entry) for entry in benchmarks]
        return self.model_copy(update=update, deep=True)

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        if not self.benchmarks:
            raise ConfigError(
                "filter 'decontaminate' has no benchmarks to check against: set [quality] benchmarks in the config "
                '(e.g. benchmarks = ["evals/alpaca_eval.jsonl"]) or give the filter its own'
            )
        ngram = self.ngram or NGRAM
        if self._index is None:
            self._index = build_index(load_benchmarks(self.benchmarks), ngram, self.share or SHARE)
        hits = find_contamination(samples, self._index, bool(self.check_responses))
        return split(samples, {sid: reason(hit, ngram) for sid, hit in hits.items()})
