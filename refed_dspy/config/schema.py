"""A whole run's configuration: `Config`, the sections of every layer composed."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializeAsAny, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from refed_dspy.config.judging import JudgingConfig, QualityConfig, ReportConfig, ScoringConfig
from refed_dspy.config.lm import LMSpec, ModelPrice, PriceBook
from refed_dspy.config.messages import describe_errors
from refed_dspy.config.optimize import OptimizeConfig
from refed_dspy.config.run import LocalServing, MetricsConfig, RayConfig, RunConfig, TrackingConfig
from refed_dspy.config.section import Section, one_of
from refed_dspy.config.synthesis import BatchConfig, SeedsConfig, SynthesisConfig
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
