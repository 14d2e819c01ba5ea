"""Run configuration: pydantic models for the TOML file, `--set` overrides, and error messages.

Every field has a default and a description. Unknown keys are rejected with the nearest
valid key; wrong types name the field and the expected type. API keys never live here:
a spec names the environment variable that holds its key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from refed_dspy.clients.local_serving import LocalServing
from refed_dspy.clients.pricing import ModelPrice, PriceBook
from refed_dspy.clients.spec import LMSpec, reserved_message
from refed_dspy.closeness import COPY_THRESHOLD
from refed_dspy.contamination import NGRAM, SHARE
from refed_dspy.errors import ConfigError, RunDirError
from refed_dspy.paths import expand_home
from refed_dspy.registry import FILTERS, METHODS, OPTIMIZERS, TARGETS, Registry, load_plugins_once
from refed_dspy.settings import Seconds, Section, UserPath, is_path, mask_secrets, tomllib
from refed_dspy.store.benchmarks import BenchmarkEntry, benchmark_entries
from refed_dspy.store.rundir import RunDir

SEED_FORMATS = ("auto", "lima", "alpaca", "sharegpt", "openai", "plain")
JUDGE_TEMPERATURE = 0.0


class Registered:
    """A validator (`AfterValidator(Registered(METHODS))`) that accepts the names `registry` holds when the value is
    validated (so an entry registered after this module was imported counts, and the registry's package is imported
    on that first question, not before), refusing others as a Literal would, with the nearest name. A run dir's own
    config.toml (validated with context {"record": True}) is a record of what ran: any name reads there."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __call__(self, value: str, info: ValidationInfo) -> str:
        if value in self.registry or (info.context or {}).get("record"):
            return value
        names = self.registry.names()
        near = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": one_of(names), "nearest": near}
        )


def one_of(names: tuple[str, ...]) -> str:
    """'a', 'b' or 'c': the choices, as pydantic names a Literal's."""
    quoted = [repr(n) for n in names]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else "".join(quoted)


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
        description="Abort after this many failed items in a row: API errors after retries, or outputs rejected as truncated, unparseable or refused (the rest of the run is resumable).",
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
        description="Abort after this many failed judgments in a row: API errors after retries, or judge outputs that break their contract (resumable).",
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

    embedding_model: str | None = Field(
        None,
        description="Embedding model for embedding diversity, through dspy.Embedder (e.g. 'openai/text-embedding-3-small'). Unset: skipped.",
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
        "(refed_dspy.closeness). The report counts and shows such samples, the viewer marks them, the reference_copy "
        "filter removes them (unless given a threshold of its own), and the optimize metric scores a prediction that "
        "copies its reference 0 with no judge call (a judge sees a polished answer in a copy: an optimizer could learn "
        "to copy). Unset: the metric checks nothing; the report, viewer and filter take 0.8.",
    )

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        return benchmark_entries(value)


class OptimizeConfig(Section):
    """What `refed optimize` tunes, on which examples, and how much it may spend."""

    target: Annotated[str, AfterValidator(Registered(TARGETS))] = Field(
        "respond",
        description="What is tuned: respond (the per-instruction program: generate and improve; examples are synthesized instructions), instructions (describe and synthesize: what the dataset is about; examples are references, judged on instruction quality and novelty), or pipeline (every predictor of the method; examples are references, judged on the samples' value and diversity).",
    )
    optimizer: Annotated[str, AfterValidator(Registered(OPTIMIZERS))] = Field(
        "miprov2",
        description="The optimizer (refed_dspy.optimizers.teleprompters; an optimizer you register is accepted too).",
    )
    auto: Literal["light", "medium", "heavy"] | None = Field(
        "light",
        description="MIPROv2 and GEPA preset. Unset: num_candidates/num_trials (MIPROv2) or max_metric_calls (GEPA) decide.",
    )
    examples_run: UserPath | None = Field(
        None,
        description="A finished run dir (method refed) whose samples give the examples. Unset: synthesize n_train + n_val samples into <out>/examples first.",
    )
    n_train: int = Field(20, gt=0, description="Training examples at most.")
    n_val: int = Field(
        10, gt=0, description="Validation examples at most (disjoint references from the training ones)."
    )
    seed: int = Field(0, description="Seed of the split and of the optimizer.")
    max_demos: int = Field(
        2, ge=0, description="Bootstrapped demos per predictor (bootstrap, random search, MIPROv2, SIMBA)."
    )
    num_candidates: int = Field(
        4,
        gt=0,
        description="Candidate programs (random search, SIMBA) or instruction candidates (MIPROv2 without auto).",
    )
    num_trials: int | None = Field(None, gt=0, description="MIPROv2 without auto: optimization trials.")
    max_metric_calls: int | None = Field(None, gt=0, description="GEPA: metric calls in all (overrides auto).")
    max_steps: int = Field(4, gt=0, description="SIMBA: optimization steps.")
    bsize: int = Field(8, gt=0, description="SIMBA: mini-batch size (at most the trainset size).")
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Metric value at or above which a bootstrapped trace counts as a success (it becomes a demo); "
        "unset: the starting program's mean score on validation, so a trace at least as good as the program's "
        "typical output is kept whatever the metric's scale.",
    )
    win_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Weight of the improvement's win over the draft in the metric (the rest is the normalized rubric score).",
    )
    novelty_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="instructions target: weight of the instructions' novelty (1 - ROUGE-L against the reference and their siblings) in the metric (the rest is their judged quality).",
    )
    diversity_weight: float = Field(
        0.2,
        ge=0,
        le=1,
        description="pipeline target: weight of the diversity of the samples' instructions (1 - mean pairwise ROUGE-L) in the metric (the rest is the samples' judged value).",
    )
    instructions_per_feature: int = Field(
        2,
        gt=0,
        le=20,
        description="instructions and pipeline targets: new instructions per feature the program makes from each example reference.",
    )
    num_threads: int = Field(4, gt=0, le=256, description="Threads the optimizer evaluates with.")
    max_calls: int | None = Field(
        None, gt=0, description="Stop before teacher + judge LM calls would exceed this (cache hits are free)."
    )
    max_cost_usd: float | None = Field(None, gt=0, description="Stop before teacher + judge cost would exceed this.")
    out: UserPath | None = Field(
        None,
        description="Output directory (program.json, instructions.txt, before_after.md, optimize_summary.json). Unset: <run.dir>/optimize.",
    )
    before_after_examples: int = Field(
        3, ge=0, description="Validation examples shown before and after in before_after.md."
    )

    @property
    def val_fraction(self) -> float:
        """The share of examples (or references) that goes to validation: n_val / (n_train + n_val)."""
        return self.n_val / (self.n_train + self.n_val)


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


class RunConfig(Section):
    """Where the run lives on disk."""

    dir: UserPath = Field(
        "runs/quickstart",
        description="Run directory: records, journal, cache and summary. Re-running the same command resumes it.",
    )
    progress: bool = Field(
        True,
        description="Show progress on stderr: a bar on a terminal, else a status line every progress_every_s seconds.",
    )
    progress_every_s: Seconds = Field(
        30.0, gt=0, description="Seconds between progress lines when stderr is not a terminal (logs, CI)."
    )
    stop_grace_s: Seconds = Field(
        10.0,
        ge=0,
        description="On Ctrl-C, SIGTERM or SIGHUP: seconds to let the calls in flight finish (their answers are recorded) before the rest are cancelled (counted as paid).",
    )


class RayConfig(Section):
    """Where a run executes on Ray (the optional [ray] extra): the driver here, the calls on the cluster's workers."""

    enabled: bool = Field(
        False,
        description="Run the LM calls of `refed synthesize` on Ray workers (`--ray [ADDRESS]` sets it). The run dir stays on this machine, in the one format: a run resumes locally or on Ray alike.",
    )
    address: str | None = Field(
        None,
        description="What ray.init takes: 'auto' (the cluster this machine is part of), 'ray://host:10001', or unset to start a local Ray on this machine.",
    )
    workers: int = Field(
        2,
        gt=0,
        le=1024,
        description="Ray workers (actors), each loading the program once and keeping synthesis.concurrency calls in flight.",
    )
    cache_server: Literal["auto", "always"] = Field(
        "auto",
        description="How workers reach the run's cache (every paid answer, so that a task run again or a resumed run pays nothing twice): 'auto' - workers on the driver's node open it, workers on other nodes go through a server beside it; 'always' - every worker goes through the server (what a multi-node cluster does, on one machine).",
    )


def home_in_uri(uri: str) -> str:
    """A tracking URI with the home directory in place of a leading `~` of its path: `~/mlruns`, and the embedded
    store's `sqlite:///~/mlflow.db` (SQLite would otherwise open a file under a folder named `~`)."""
    scheme = "sqlite:///"
    if uri.startswith(scheme + "~"):
        return scheme + expand_home(uri.removeprefix(scheme))
    return expand_home(uri)


class TrackingConfig(Section):
    """MLflow tracking."""

    enabled: bool = Field(False, description="Log runs to MLflow (params, metrics, artifacts).")
    mlflow_uri: Annotated[str, AfterValidator(home_in_uri)] = Field(
        "sqlite:///mlflow.db",
        description="Tracking URI: the embedded sqlite store (sqlite:///~/mlflow.db is one in your home), a directory, or a server URL.",
    )
    experiment: str = Field("refed", description="MLflow experiment name.")
    log_traces: bool = Field(False, description="Optimization: also log an MLflow trace of every DSPy call (large).")
    telemetry: bool = Field(
        False,
        description="Let MLflow and Hugging Face send their usage telemetry to their servers. Off by default: nothing leaves the machine but calls to the configured endpoints.",
    )


class Config(Section):
    """A whole run's configuration."""

    teacher: LMSpec = Field(
        default_factory=LMSpec, description="The LM that writes instructions, responses and feedback."
    )
    judge: LMSpec = Field(
        default_factory=lambda: LMSpec(temperature=JUDGE_TEMPERATURE),
        description="The LM that scores samples; never the teacher object. Its temperature defaults to 0.",
    )
    seeds: SeedsConfig = Field(default_factory=SeedsConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    judging: JudgingConfig = Field(default_factory=JudgingConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    local: LocalServing = Field(
        default_factory=LocalServing,
        description="The embedded local model (llama.cpp + SmolLM2-135M): start it when the run needs it.",
    )
    filters: list[SerializeAsAny[Section]] = Field(
        default_factory=list, description="The filter chain `refed filter` applies, in order ([[filters]] tables)."
    )
    report: ReportConfig = Field(default_factory=ReportConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Prices by model, for any LM a run calls: a teacher or judge handed in from Python, a teleprompter's or a metric's own LM (`[prices.\"openai/my-finetune\"]` with input_usd_per_mtok, output_usd_per_mtok, cached_input_usd_per_mtok). A role's section prices its own model; a model in neither is priced from LiteLLM's map.",
    )

    @property
    def price_book(self) -> PriceBook:
        """How an LM of this run is priced by its own model ([prices], else LiteLLM's map)."""
        return PriceBook(self.prices)

    @model_validator(mode="before")
    @classmethod
    def _roles_priced_from_the_table(cls, data: Any) -> Any:
        # a role whose model the [prices] table names takes those prices where its own section sets none
        if not isinstance(data, dict) or not isinstance(data.get("prices"), dict) or not data["prices"]:
            return data
        data = dict(data)
        for role in ("teacher", "judge"):
            spec = data.get(role)
            spec = dict(spec) if isinstance(spec, dict) else ({} if spec is None else spec)
            if not isinstance(spec, dict):
                continue
            entry = data["prices"].get(spec.get("model", LMSpec.model_fields["model"].default))
            if isinstance(entry, ModelPrice):
                entry = entry.model_dump()
            if not isinstance(entry, dict):
                continue
            for name in ("input_usd_per_mtok", "cached_input_usd_per_mtok", "output_usd_per_mtok"):
                if spec.get(name) is None and entry.get(name) is not None:
                    spec[name] = entry[name]
            data[role] = spec
        return data

    @field_validator("filters", mode="before")
    @classmethod
    def _registered_filters(cls, value: Any) -> Any:
        # each table is validated by the filter its name picks from the registry as it is now (a filter registered
        # from the user's own module counts); the errors keep their place in the chain
        if not isinstance(value, list):
            return value
        tables, problems = [], []
        for i, table in enumerate(value):
            if isinstance(table, tuple(FILTERS.values())):  # a filter made already
                tables.append(table)
            elif not isinstance(table, dict):
                problems.append(f"filters.{i}: expected a table, got {table!r}")
            elif "name" not in table:
                problems.append(f"filters.{i}: needs a name, one of {one_of(FILTERS.names())}")
            elif table["name"] not in FILTERS:
                problems.append(f"filters.{i}.name: input should be {one_of(FILTERS.names())}, got {table['name']!r}")
            else:
                model = FILTERS.get(table["name"])
                try:
                    tables.append(model.model_validate(table))
                except ValidationError as err:
                    problems += describe_errors(err.errors(), model, ("filters", i))
        if problems:
            raise PydanticCustomError("refed_config", "{message}", {"message": "; ".join(problems)})
        return tables

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_temperature(cls, value: Any) -> Any:
        # a [judge] table that leaves temperature out means the judge's default (0), not the teacher's (1)
        if isinstance(value, dict) and "temperature" not in value:
            return {**value, "temperature": JUDGE_TEMPERATURE}
        return value


# Fields that change what a run produces. Resuming a run dir with other values here is refused.
_OUTPUT_FIELDS = {
    "teacher": ("model", "api_base", "temperature", "max_tokens", "adapter", "schema_dialect"),
    "seeds": ("source", "format", "split", "limit"),
    "synthesis": ("method", "instructions_per_feature", "dedup_rouge_threshold", "seed", "reflection", "program"),
}


_DEFAULTS = Config().model_dump(mode="json")


def fingerprint(config: Config, program_hash: str | None = None) -> dict[str, Any]:
    """The config values that determine a run's outputs (size, budgets and concurrency excluded), and the content
    hash of the program the run executes when it is not the built-in one."""
    data = config.model_dump(mode="json")
    out = {section: {k: data[section][k] for k in keys} for section, keys in _OUTPUT_FIELDS.items()}
    # replicas of one model: adding or removing one is the same config, so only the first endpoint counts
    out["teacher"]["api_base"] = config.teacher.primary_api_base
    if program_hash is not None:
        out["program_hash"] = program_hash
    return out


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable `section.key: old -> new` lines for fields that differ."""
    out = []
    for section, keys in _OUTPUT_FIELDS.items():
        for key in keys:
            a, b = old.get(section, {}).get(key), new.get(section, {}).get(key)
            if isinstance(a, str) and is_path(Config.model_fields[section].annotation.model_fields[key]):
                a = expand_home(a)  # a run made before `~` was expanded in every path field recorded it as given
            if key not in old.get(section, {}) and b == _DEFAULTS[section][key]:
                continue  # a field added after the run was made, at its default: same output
            if a != b:
                out.append(f"{section}.{key}: {a!r} -> {b!r}")
    # a program's content, wherever it came from; a run made with a program before hashes were recorded is
    # matched by its synthesis.program alone (compared above)
    made_before_hashes = "program_hash" not in old and old.get("synthesis", {}).get("program") is not None
    if not made_before_hashes and old.get("program_hash") != new.get("program_hash"):
        out.append(
            f"program content: {old.get('program_hash') or 'built-in'} -> {new.get('program_hash') or 'built-in'}"
        )
    return out


def config_hash(config: Config) -> str:
    """Short stable hash of the output-determining fields."""
    return hashlib.sha256(json.dumps(fingerprint(config), sort_keys=True).encode()).hexdigest()[:12]


def _nearest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(options)}"


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    model: type[BaseModel] = root
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def _holds_tables(annotation: Any) -> bool:
    """The type is a section, or an array or table of sections: what TOML writes as a table (`[teacher]`,
    `[[filters]]`, `[prices."MODEL"]`)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _holds_tables(args[0])
    if origin in (list, dict):
        return bool(args) and _holds_tables(args[-1])
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_name(loc: tuple, root: type[BaseModel]) -> str:
    if not loc:
        return "a table"
    model = _model_at(loc[:-1], root)
    field = model.model_fields.get(str(loc[-1])) if model else None
    if field is None:
        return "a valid value"
    if len(loc) < 2 and _holds_tables(field.annotation):
        return "a table"
    return re.sub(r"typing\.|<class '([^']+)'>", r"\1", str(field.annotation)).replace("NoneType", "None")


def dotted(keys: tuple) -> str:
    """A field's place as a TOML key: `teacher.timeout`, `prices."openai/gpt-4o".input_usd_per_mtok`."""
    return ".".join(str(k) if re.fullmatch(r"[A-Za-z0-9_-]+", str(k)) else json.dumps(str(k)) for k in keys)


def describe_errors(errors: list[Any], root: type[BaseModel], prefix: tuple = ()) -> list[str]:
    """One phrase per pydantic error of `root` (Config, or a part of it: a filter's model) validated at `prefix` of the
    config: the field, what was expected, and for an unknown key the nearest valid one."""
    parts = []
    for e in errors:
        loc = tuple(e["loc"])
        where = dotted((*prefix, *loc))
        if e["type"] == "refed_config":  # already described (a [[filters]] table)
            parts.append(e["ctx"]["message"])
        elif e["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1], root)
            options = list(parent.model_fields) if parent else []
            section = ".".join(str(p) for p in (*prefix, *loc[:-1]))
            place = f" in [{section}]" if section else ""
            parts.append(f"unknown key '{loc[-1]}'{place}{_nearest(str(loc[-1]), options)}")
        elif e.get("input", ...) is None:  # only `--set FIELD=none` makes a None: TOML has no null
            parts.append(f"{where}: cannot be unset (none): expected {_type_name(loc, root)}")
        elif e["type"] in ("literal_error",):
            near = (e.get("ctx") or {}).get("nearest")
            hint = f"; did you mean {near[0]!r}?" if near else ""
            parts.append(f"{where}: {e['msg'].lower()}, got {e.get('input')!r}{hint}")
        elif e["type"] == "missing" and root in FILTERS.values():
            parts.append(
                f"{'.'.join(map(str, prefix))}: filter '{root.model_fields['name'].default}' needs '{loc[-1]}'"
            )
        elif e["type"] == "missing":
            parts.append(f"{where}: needs a value")
        elif e["type"] == "value_error":
            parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
        elif e["type"] == "reserved_extra":  # a key of a role's extra table that the role sets itself
            parts.append(f"{where}: {reserved_message(e['ctx']['key'], dotted((*prefix, *loc[:-1])))}")
        elif e["type"] == "finite_number":
            parts.append(f"{where}: must be a finite number, got {e.get('input')!r}")
        elif "greater" in e["type"] or "less" in e["type"]:
            parts.append(f"{where}: {e['msg'].lower()}, got {e.get('input')!r}")
        else:
            parts.append(f"{where}: expected {_type_name(loc, root)}, got {e.get('input')!r}")
    return parts


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """One line naming every bad field of `root` (Config), what was expected, and the nearest valid key."""
    return "invalid config: " + "; ".join(describe_errors(err.errors(), root))


UNSET = ("none", "null")  # `--set FIELD=none`: the field unset (None); TOML itself has no null


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value`; the value is read as TOML when it parses, else as a string. A bare `none` or `null`
    (any case) is None, which unsets an optional field (a quoted `'none'` stays a string)."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    path, raw = _split_assignment(text)
    keys = _key_path(path)
    if not keys or (len(keys) < 2 and keys[0] != "filters"):
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    if raw.strip().lower() in UNSET and not _free_form(keys):
        return keys, None
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return keys, value


def _free_form(keys: list[str]) -> bool:
    """The path leads into a table of free-form values (a role's `extra`), where `none` is a value a provider takes
    (reasoning_effort = "none"), not an unset field."""
    node: Any = Config
    rest = list(keys)
    while rest:
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or rest[0] not in node.model_fields:
            return False  # an unknown key: validation says so
        annotation = node.model_fields[rest.pop(0)].annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        target = (
            next((a for a in typing.get_args(annotation) if a is not type(None)), annotation) if union else annotation
        )
        if typing.get_origin(target) is dict:
            value = typing.get_args(target)[1] if typing.get_args(target) else Any
            if not (isinstance(value, type) and issubclass(value, BaseModel)):
                return bool(rest)  # into the table's values: free-form
            rest = rest[1:]  # a table of sections ([prices."model"]): its key, then that section's fields
            node = value
            continue
        node = target
    return False


def _split_assignment(text: str) -> tuple[str, str]:
    """`path=value` split at the first `=` outside a quoted key (`prices."a=b".x=1`)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "=":
            return text[:i], text[i + 1 :]
    return text, ""


def _key_path(path: str) -> list[str]:
    """The keys of a dotted TOML key: `section.key`, or with quoted parts, `prices."openai/gpt-4.1".input_usd_per_mtok`."""
    path = path.strip()
    if not path:
        return []
    if '"' not in path and "'" not in path:
        return [k.strip() for k in path.split(".") if k.strip()]
    try:
        node: Any = tomllib.loads(f"{path} = 0")
    except tomllib.TOMLDecodeError:
        return []
    keys = []
    while isinstance(node, dict) and len(node) == 1:
        key, node = next(iter(node.items()))
        keys.append(key)
    return keys


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `section.key=value` override applied."""
    data = json.loads(json.dumps(data))
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{key}' is not a table")
            node = child
        node[keys[-1]] = value
    return data


def config_from_dict(data: dict[str, Any], record: bool = False) -> Config:
    """Validate a plain dict into a Config, raising ConfigError with a one-line message (`record`: the config.toml
    of a run dir, whose method and optimizer names need not be registered here). The installed plugins are loaded
    first: a provider one of them adds is known to every command that reads a config."""
    load_plugins_once()
    try:
        return Config.model_validate(data, context={"record": record})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, Config)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, record: bool = False) -> Config:
    """Read a TOML config (or the defaults when `path` is None) and apply `--set` overrides (`record`: `path` is the
    config.toml of a run dir, read by a command that does not run its method; see config_from_dict). A run dir's
    [ray] is left out: where a run was made does not say where a command on it runs (`--ray` does)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read config file {p}: {err}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {p} is not valid TOML: {err}") from None
        if record:
            data.pop("ray", None)
    return config_from_dict(apply_overrides(data, overrides or []), record=record)


def _drop_none(obj: Any) -> Any:
    """TOML has no null: drop None values, in tables and in arrays of tables alike."""
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj if v is not None]
    return obj


def run_config(rundir: RunDir) -> Config:
    """The config a run dir was made with (its config.toml), for a command that reads the run: the method and
    optimizer it names need not be registered in this process."""
    if not rundir.config.exists():
        raise RunDirError(f"{rundir.path} is not a run directory (no config.toml); run `refed synthesize` first")
    try:
        data = tomllib.loads(rundir.config.read_text(encoding="utf-8"))
        data.pop("ray", None)  # where the run was made does not say where a command on it runs
        return config_from_dict(data, record=True)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{rundir.config} is not valid TOML: {err}") from None


def to_toml(config: Config) -> str:
    """The resolved config as TOML (None values omitted, secrets masked)."""
    import tomli_w

    return tomli_w.dumps(_drop_none(mask_secrets(config.model_dump(mode="json"))))
