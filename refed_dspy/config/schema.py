"""A whole run's configuration: `Config`, the sections of every layer composed; and what of it decides a run's output
(`fingerprint`), its difference from a run dir's, and its hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field, SerializeAsAny, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from refed_dspy.config.judging import JudgingConfig, QualityConfig, ReportConfig, ScoringConfig
from refed_dspy.config.lm import LMSpec, ModelPrice, PriceBook
from refed_dspy.config.messages import describe_errors
from refed_dspy.config.optimize import OptimizeConfig
from refed_dspy.config.run import LocalServing, MetricsConfig, RayConfig, RunConfig, TrackingConfig
from refed_dspy.config.section import Section, expand_home, is_path, one_of, without_password
from refed_dspy.config.synthesis import BatchConfig, SeedsConfig, SynthesisConfig
from refed_dspy.config.training import EvaluateConfig, TrainConfig
from refed_dspy.registry import FILTERS


def _plain(entry: Any) -> dict[str, Any]:
    """A price table's fields that are set (of a section made in Python, or of a dict)."""
    if isinstance(entry, Section):
        return entry.model_dump(exclude_none=True)
    return {k: v for k, v in entry.items() if v is not None} if isinstance(entry, dict) else {}


class Config(Section):
    """A whole run's configuration."""

    teacher: LMSpec = Field(
        default_factory=LMSpec, description="The LM that writes instructions, responses and feedback."
    )
    judge: LMSpec = Field(
        default_factory=LMSpec,
        description="The LM that scores samples; never the teacher object. Its temperature defaults to 0 (1 for a model that takes no other).",
    )
    seeds: SeedsConfig = Field(default_factory=SeedsConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
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
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
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
            for name in (
                "input_usd_per_mtok",
                "cached_input_usd_per_mtok",
                "output_usd_per_mtok",
                "cache_write_usd_per_mtok",
            ):
                if spec.get(name) is None and entry.get(name) is not None:
                    spec[name] = entry[name]
            tiers, own = entry.get("tier_prices"), spec.get("tier_prices")
            if isinstance(tiers, dict) and tiers and (own is None or isinstance(own, dict)):
                # a tier's price the role sets itself keeps it, part by part as for the default tier
                spec["tier_prices"] = {
                    name: {**_plain(tiers.get(name)), **_plain((own or {}).get(name))}
                    for name in {*tiers, *(own or {})}
                }
            data[role] = spec
        return data

    @model_validator(mode="after")
    def _tiers_offered(self, info: ValidationInfo) -> Config:
        # a service tier a role's model has no price on is refused here, before any call (a run dir's config.toml
        # reads as the record of what ran)
        if (info.context or {}).get("record"):
            return self
        problems = [p for role in ("teacher", "judge") if (p := getattr(self, role).tier_problem(role)) is not None]
        if problems:
            raise PydanticCustomError("refed_config", "{message}", {"message": "; ".join(problems)})
        return self

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


# How refed words a signature's prompt (refed_dspy.adapters.wording); a new wording is a new number, which a run's
# fingerprint, a judging's, an experiment's cells and each record's provenance carry, so that nothing made with other
# prompts is resumed or compared without a word. 1: DSPy's layout (a run dir without the number); 2: each field and
# bound stated once, the schema's text left out where the provider shows the model the schema (issue 54).
# tests/adapters/test_wording.py pins the prompts of each built-in signature to the number.
PROMPT_FORMAT = 2
_BEFORE_VERSIONS = 1  # what a fingerprint written before the number was kept holds

# Fields that change what a run produces. Resuming a run dir with other values here is refused.
_OUTPUT_FIELDS = {
    "teacher": (
        "model",
        "api_base",
        "temperature",
        "max_tokens",
        "reasoning_effort",
        "adapter",
        "schema_dialect",
        "schema_shown",
    ),
    "seeds": ("source", "format", "split", "limit"),
    "synthesis": ("method", "instructions_per_feature", "dedup_rouge_threshold", "seed", "reflection", "program"),
}


# Where a role's requests go. A run dir whose fingerprint differs only here is resumed, saying so in one line: the model
# behind the new endpoint (the same model name) is taken to be the same one (a server moved, a port changed)
_ENDPOINT_FIELDS = {"teacher": ("api_base",)}

_DEFAULTS = Config().model_dump(mode="json")

# A role's fields a fingerprint (a run's, a judging's) holds as sent: a config that leaves one unset shows the model's
# own default in a diff
AS_SENT = ("temperature", "max_tokens")
AS_SENT_NOTE = " (the values sent: where a config sets none, the model's own default)"


def fingerprint(config: Config, program_hash: str | None = None) -> dict[str, Any]:
    """The config values that determine a run's outputs (size, budgets and concurrency excluded), the content hash
    of the program the run executes when it is not the built-in one, and the prompt format. The teacher's temperature
    and output limit are those it is sent (the model's own where the config sets none); a field added later is left
    out at its default, so that a config that does not set it keeps its fingerprint.

    Args:
        config: the run's config.
        program_hash: the content hash of the program the run executes; None for the built-in one.

    Returns:
        The fingerprint: the output-determining fields by section (the teacher's first api_base only), the program's
            hash where given, and the prompt format.
    """
    data = config.model_dump(mode="json")
    data["teacher"] = config.teacher.identity("teacher")
    out = {
        section: {k: data[section][k] for k in keys if k in data[section]} for section, keys in _OUTPUT_FIELDS.items()
    }
    # replicas of one model: adding or removing one is the same config, so only the first endpoint counts
    reached = config.teacher.reached_api_base  # where its calls go, the environment's endpoint too (no password)
    out["teacher"]["api_base"] = without_password(reached) if reached else reached
    if program_hash is not None:
        out["program_hash"] = program_hash
    out["prompt_format"] = PROMPT_FORMAT
    return out


def prompt_format_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The line saying a fingerprint (a run's, a judging's) was made with other prompts ([] when not)."""
    before, now = old.get("prompt_format", _BEFORE_VERSIONS), new.get("prompt_format", _BEFORE_VERSIONS)
    return [] if before == now else [f"refed's prompt format: {before} -> {now}"]


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable `section.key: old -> new` lines for fields that differ, the endpoints but (`endpoint_diff`).

    Args:
        old: the fingerprint a run dir recorded.
        new: the fingerprint of the config now.

    Returns:
        One line per difference (fields, the program's content, the prompt format); [] when they match.
    """
    out = []
    for section, keys in _OUTPUT_FIELDS.items():
        for key in keys:
            if key in _ENDPOINT_FIELDS.get(section, ()):
                continue  # an endpoint that moved does not refuse a resume (endpoint_diff)
            a, b = old.get(section, {}).get(key), new.get(section, {}).get(key)
            if isinstance(a, str) and is_path(Config.model_fields[section].annotation.model_fields[key]):
                a = expand_home(a)  # a run made before `~` was expanded in every path field recorded it as given
            if key not in old.get(section, {}) and b == _DEFAULTS[section][key]:
                continue  # a field added after the run was made, at its default: same output
            if a != b:
                out.append(
                    f"{section}.{key}: {a!r} -> {b!r}"
                    + (AS_SENT_NOTE if section == "teacher" and key in AS_SENT else "")
                )
    # a program's content, wherever it came from; a run made with a program before hashes were recorded is
    # matched by its synthesis.program alone (compared above)
    made_before_hashes = "program_hash" not in old and old.get("synthesis", {}).get("program") is not None
    if not made_before_hashes and old.get("program_hash") != new.get("program_hash"):
        out.append(
            f"program content: {old.get('program_hash') or 'built-in'} -> {new.get('program_hash') or 'built-in'}"
        )
    return out + prompt_format_diff(old, new)


def endpoint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`section.api_base: old -> new` for each endpoint of two run fingerprints that differs (its first URL; None: the
    provider's own); a run dir that differs in nothing else is resumed (`endpoint_moved_line`)."""
    return [
        f"{section}.{key}: {old.get(section, {}).get(key)!r} -> {new.get(section, {}).get(key)!r}"
        for section, keys in _ENDPOINT_FIELDS.items()
        for key in keys
        if old.get(section, {}).get(key) != new.get(section, {}).get(key)
    ]


def endpoint_moved_line(where: str, moves: list[str], model: str) -> str:
    """The one line said as `where` (a run dir) is resumed after an endpoint moved (`moves`: endpoint_diff's lines),
    `model` being the model name both endpoints were asked for."""
    return (
        f"{where}: the endpoint moved ({'; '.join(moves)}); resuming, with the model behind the new endpoint taken "
        f"to be the same {model}"
    )


def config_hash(config: Config, endpoints: bool = True) -> str:
    """Short stable hash of the output-determining fields.

    Args:
        config: the config to hash.
        endpoints: with the endpoints its calls go to; False: without them, as a run resumed at a moved endpoint is
            the same run.

    Returns:
        The first 12 hex digits of the SHA-256 of its fingerprint (built-in program).
    """
    found = fingerprint(config)
    if not endpoints:
        for section, keys in _ENDPOINT_FIELDS.items():
            found[section] = {k: v for k, v in found[section].items() if k not in keys}
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:12]
