"""How to reach one LM role (teacher or judge): the `[teacher]` and `[judge]` sections of a config, and what a
role's model costs (`price_of`).

What a model costs, by the config: the `[prices]` table (`ModelPrice`; on a service tier, `TierPrice`), and how any
LM of a run is priced by its own model (`PriceBook`: the table's entry, else LiteLLM's price map).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from refed_dspy.config.section import (
    SECRET_NAME,
    ModelName,
    Seconds,
    Section,
    VariableName,
    http_endpoint,
    secret_values,
)
from refed_dspy.errors import ConfigError
from refed_dspy.providers.dialects import DIALECTS, SCHEMA_SHOWN_HELP
from refed_dspy.providers.keys import environment_endpoint, host_of, is_private_host, key_variable, routed_provider
from refed_dspy.providers.litellm_table import deprecation_note
from refed_dspy.providers.prices import SERVICE_TIERS, Price, close_priced_names, resolve_price, tier_problem
from refed_dspy.providers.registry import provider_for
from refed_dspy.providers.sampling import EFFORTS, Sampling
from refed_dspy.secrets import hold

PRICED_TIERS = tuple(t for t in SERVICE_TIERS if t != "default")  # the tiers priced apart from a section's own prices


class TierPrice(Section):
    """What a model costs on one service tier (`[teacher.tier_prices.flex]`, `[prices."MODEL".tier_prices.flex]`): USD
    per 1M tokens."""

    input_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M uncached prompt tokens on this tier. Unset: LiteLLM's price map."
    )
    cached_input_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M cached prompt tokens on this tier. Unset: LiteLLM's price map, else the input price.",
    )
    output_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M completion tokens on this tier. Unset: LiteLLM's price map."
    )

    def triple(self) -> tuple[float | None, float | None, float | None]:
        """(input, cached input, output) as given (None where unset)."""
        return (self.input_usd_per_mtok, self.cached_input_usd_per_mtok, self.output_usd_per_mtok)


TIER_PRICES_HELP = (
    "Prices on a service tier, by tier: `[teacher.tier_prices.flex]` with input_usd_per_mtok, output_usd_per_mtok "
    "(cached_input_usd_per_mtok optional). Unset: LiteLLM's price map (its *_flex and *_priority prices)."
)


def tier_triples(tiers: dict[str, TierPrice] | None) -> dict[str, tuple[float | None, float | None, float | None]]:
    """A `tier_prices` table as resolve_price takes it."""
    return {name: entry.triple() for name, entry in (tiers or {}).items()}


class ModelPrice(Section):
    """What one model costs, for the `[prices]` table (`[prices."openai/my-finetune"]`): USD per 1M tokens."""

    input_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M uncached prompt tokens in USD. Unset: LiteLLM's price map."
    )
    cached_input_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M cached prompt tokens in USD. Unset: LiteLLM's price map, else the input price.",
    )
    output_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M completion tokens in USD. Unset: LiteLLM's price map."
    )
    cache_write_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M prompt tokens written to the provider's prompt cache in USD. Unset: LiteLLM's price map (scaled with input_usd_per_mtok when that is set), else the input price.",
    )
    tier_prices: dict[Literal[PRICED_TIERS], TierPrice] = Field(default_factory=dict, description=TIER_PRICES_HELP)

    def resolve(self, model: str) -> Price | None:
        """This entry's prices over LiteLLM's for `model` (default tier, carrying the others known); None when input or
        output price stays unknown.

        Args:
            model: the model string the entry prices.

        Returns:
            The price, or None when the input or output price stays unknown.
        """
        return resolve_price(
            model,
            self.input_usd_per_mtok,
            self.cached_input_usd_per_mtok,
            self.output_usd_per_mtok,
            self.cache_write_usd_per_mtok,
            tier_triples(self.tier_prices),
        )


@dataclass(frozen=True)
class PriceBook:
    """How any LM of a run is priced by its own model: the `[prices]` table's entry for it, else LiteLLM's map."""

    table: dict[str, ModelPrice] | None = None

    def __post_init__(self) -> None:
        # a table built in Python is held to what a config's [prices] is: each entry validated as a ModelPrice (a
        # plain dict read as one), so that a price of inf, nan or below 0 is refused here (pydantic's
        # ValidationError) and never turns a cost into NaN
        if self.table:
            checked = {model: ModelPrice.model_validate(_plain(entry)) for model, entry in self.table.items()}
            object.__setattr__(self, "table", checked)

    def of(self, model: str) -> Price | None:
        """The price of `model` (None: unknown).

        Args:
            model: a DSPy/LiteLLM model string.

        Returns:
            The `[prices]` entry's price for it, else LiteLLM's; None when unknown.
        """
        entry = (self.table or {}).get(model)
        return entry.resolve(model) if entry is not None else resolve_price(model, None, None, None)

    def entry(self, model: str) -> ModelPrice | None:
        """The `[prices]` entry for `model`, if the table has one.

        Args:
            model: a DSPy/LiteLLM model string, as the table's keys spell it.

        Returns:
            The entry, or None.
        """
        return (self.table or {}).get(model)


def _plain(entry: ModelPrice | dict) -> dict:
    """A `[prices]` entry's fields (of a ModelPrice, made with model_construct or not, or of a plain dict)."""
    return entry.model_dump() if isinstance(entry, ModelPrice) else entry


ADAPTERS = ("auto", "chat", "json", "json_schema")
# the other names a provider's client takes for a setting of the section: `extra` may not name them either
OTHER_NAMES = {"base_url": "api_base", "max_completion_tokens": "max_tokens", "max_output_tokens": "max_tokens"}
# the arguments that ask one call for several completions: DSPy sends each as a request of its own, one reply and one
# usage of which a call's record holds, so no cap or ledger could count them (refed_dspy.clients.boundary refuses them)
SEVERAL_COMPLETIONS = ("n", "num_generations", "best_of")
# what a request's body may not set behind its LM's back (in `extra_body`, which the client merges into it): several
# completions, an output limit past the one a call is reserved at, a service tier past the one it is priced on
BILLED_IN_BODY = (*SEVERAL_COMPLETIONS, "max_tokens", "max_completion_tokens", "max_output_tokens", "service_tier")
SCHEMA_DIALECTS = ("auto", *DIALECTS)  # the registered providers' dialects (refed_dspy.providers)
TIMEOUT_S = 120.0  # one HTTP call's timeout when the section sets none
FLEX_TIMEOUT_S = 600.0  # the same on the flex tier, whose replies come more slowly
# fields added after run dirs were made: at their default they are left out of what identifies a config (a run's
# fingerprint, an experiment's cells), so that a config that does not set them is the one it was
ADDED_FIELDS = (
    "reasoning_effort",
    "service_tier",
    "flex_fallback",
    "tier_prices",
    "prompt_cache",
    "cache_write_usd_per_mtok",
    "schema_shown",
    "rate_limit_patience_s",
)


class LMSpec(Section):
    """How to reach one LM role (teacher or judge)."""

    model: ModelName = Field(
        "openai/gpt-4o-mini",
        description="Model string DSPy/LiteLLM accepts, e.g. 'openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5', 'azure/<deployment>', 'ollama_chat/llama3.1'.",
    )
    api_base: str | list[str] | None = Field(
        None,
        description="Base URL of the model's server (http:// or https://, with a host), as LiteLLM takes it for the model's provider: an OpenAI-compatible server (vLLM, llama.cpp, a proxy) with its version path, e.g. http://localhost:8000/v1 (calls go to <api_base>/chat/completions); Anthropic or an Anthropic-compatible server, the host, e.g. http://localhost:8000 (calls go to <host>/v1/messages; a trailing /v1 is optional); Ollama, the host (http://localhost:11434). A list names several servers of one model (replicas): online calls are spread over them (least in flight first), a failing one is taken out until it recovers, and the summary counts calls per endpoint. Unset: the provider's default.",
    )
    api_key_env: VariableName | None = Field(
        None,
        description="Environment variable holding the API key. Unset: it follows the model's provider (OPENAI_API_KEY, ANTHROPIC_API_KEY, ..., as LiteLLM names them), so swapping the model swaps the key. Empty string: the server needs no key. A key goes only to its own provider's hosts: a provider's variable (OPENAI_API_KEY) for another known provider's host (an api_base on api.groq.com, or the model's provider's own endpoint) is refused before any call; loopback and private hosts, a proxy at a host refed does not know, and a variable of your own naming (MY_VLLM_KEY) take any.",
    )
    api_version: str | None = Field(None, description="API version, needed by Azure OpenAI.")
    temperature: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="Sampling temperature. Must be > 0 for distinct samples from one prompt. Unset: the model's own default: 1 for a teacher and 0 for a judge, and 1 for a model that takes no other (OpenAI's reasoning models; the run says so in one line).",
    )
    max_tokens: int | None = Field(
        None,
        gt=0,
        description="Maximum completion tokens per call (a reasoning model's hidden reasoning included); a reply cut off at this limit is rejected as 'truncated'. Unset: the model's own default: 4096, and 16000 for OpenAI's reasoning models (the least DSPy sends them; the run says so in one line).",
    )
    reasoning_effort: Literal[EFFORTS] | None = Field(
        None,
        description="How much a reasoning model thinks before it answers (minimal, low, medium, high): its hidden reasoning tokens are billed as output, so this moves the cost. Sent to the provider; recorded in provenance, the fingerprint and MLflow. Refused for a model LiteLLM's model table says takes none. Unset: the model's own.",
    )
    num_retries: int = Field(
        3,
        ge=0,
        description="Retries of a call, or of a run's piece of work, on 5xx, timeouts and resets (Retry-After "
        "honoured); a run's 429s (rate limited) use none: they are bounded by rate_limit_patience_s.",
    )
    rate_limit_patience_s: Seconds = Field(
        600.0,
        gt=0,
        description="A run (synthesize, judge) that meets nothing but 429s (rate limited), with no piece of work "
        "succeeding, for this many seconds stops with one line (exit 3; run the same command again to resume). Each "
        "refused request waits for its own Retry-After meanwhile.",
    )
    timeout: Seconds | None = Field(
        None,
        gt=0,
        description=f"Seconds before one HTTP call times out. Unset: {TIMEOUT_S:g}, or {FLEX_TIMEOUT_S:g} on the flex tier (its replies come more slowly). For a run's calls (synthesize, judge) to a server on your machine or network that reports its slots (llama.cpp), seconds in which it generated nothing: a reply it is still writing is waited for (an optimizer's calls keep the plain timeout).",
    )
    input_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M uncached prompt tokens in USD. Unset: LiteLLM's price map (hundreds of models).",
    )
    cached_input_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M cached prompt tokens in USD. Unset: LiteLLM's price map, else the input price.",
    )
    output_usd_per_mtok: float | None = Field(
        None, ge=0, description="Price of 1M completion tokens in USD. Unset: LiteLLM's price map."
    )
    cache_write_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description="Price of 1M prompt tokens written to the provider's prompt cache in USD (Anthropic: 1.25x the input price). Unset: LiteLLM's price map (scaled with input_usd_per_mtok when that is set), else the input price.",
    )
    prompt_cache: bool = Field(
        True,
        description="Ask the provider to cache the part of each prompt that repeats across calls (the instructions, the demos, the reference example): Anthropic requests mark it with cache_control (its reads cost a tenth of the input price, its writes 1.25x), OpenAI requests carry a prompt_cache_key, the same for calls that share it. Cache reads and writes are priced at the provider's rates. false: no marks and no key are sent (OpenAI still caches long prefixes by itself).",
    )
    adapter: Literal[ADAPTERS] = Field(
        "auto",
        description="How outputs are asked for and read: chat (DSPy's [[ ## field ## ]] markers), json (a JSON object), json_schema (the signature's JSON schema as response_format, enforced by the provider), auto (json_schema where the provider enforces schemas, else chat; the summary says which).",
    )
    schema_dialect: Literal[SCHEMA_DIALECTS] = Field(
        "auto",
        description="Which JSON Schema bounds json_schema sends: full (grammar servers: llama.cpp, vLLM, SGLang, Ollama), openai (strict mode: no string lengths), anthropic and minimal (no bounds), gemini (no string lengths); the rest go into descriptions. auto: from the model and api_base.",
    )
    schema_shown: bool | None = Field(None, description=SCHEMA_SHOWN_HELP)
    service_tier: Literal[SERVICE_TIERS] = Field(
        "default",
        description="The provider's service tier each call asks for: default; flex (OpenAI and Azure OpenAI, on the models with a flex price: about half the price, slower replies, and now and then a 429 'resource unavailable', which is waited out with backoff and never counts as a failed item); priority (faster and dearer). A call is priced at the list price of the tier its reply says served it. A model with no price on the tier asked for is refused before any call. Online only (batch mode has its own price).",
    )
    flex_fallback: int | None = Field(
        None,
        ge=1,
        description="On the flex tier: after this many 'resource unavailable' answers to one request, send it on the default tier (priced there; the summary counts such requests). Unset: keep asking flex.",
    )
    tier_prices: dict[Literal[PRICED_TIERS], TierPrice] = Field(default_factory=dict, description=TIER_PRICES_HELP)
    batch_price_factor: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="What a call sent through the provider's batch API costs, as a share of the online price (OpenAI and Anthropic: 0.5).",
    )
    max_repairs: int = Field(
        1,
        ge=0,
        le=5,
        description="Times an output that does not parse or breaks its contract is asked again, with the error shown, before it is rejected.",
    )
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments passed to dspy.LM (provider-specific: top_p, ...). Never put a key here, nor a setting this section has a field for (max_tokens, temperature, reasoning_effort, api_base, timeout, ...): set the field instead. The same holds inside an `extra_body` table, which the client merges into each request; `n`, `num_generations` and `best_of` (several completions a call) are refused either way.",
    )

    @field_validator("api_base")
    @classmethod
    def _endpoints(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value or not all(v.strip() for v in value):
                raise ValueError("needs at least one URL, none of them empty")
            if len(set(value)) != len(value):
                raise ValueError("names an endpoint twice")
            for url in value:
                http_endpoint(url)
            return value[0] if len(value) == 1 else value
        return value if value is None else http_endpoint(value)

    def tier_problem(self, role: str = "teacher") -> str | None:
        """Why this section's model cannot be asked for its service_tier, as `<role>: ...` (None: it can):
        refed_dspy.providers.prices.

        Args:
            role: the section's role ('teacher' or 'judge'), which starts the message.

        Returns:
            The problem as one line, or None.
        """
        problem = tier_problem(self.model, self.service_tier, tier_triples(self.tier_prices), role)
        return f"{role}: {problem}" if problem else None

    @property
    def asked_tier(self) -> str | None:
        """The service tier this section's requests name: its own where it is not the default; the default by name
        where its provider could serve a dearer tier on a request naming none (an OpenAI project set to priority), so
        that a call is held at the price it is served at; else none (Azure, which refuses the field for some models,
        and a name LiteLLM sends elsewhere are sent no such field)."""
        if self.service_tier != "default":
            return self.service_tier
        tiers = provider_for(self.model).tiers
        if tiers is None or not tiers.unasked or routed_provider(self.model) != "openai":
            return None
        price = price_of(self)
        return "default" if price is not None and price.dearest_tier is not None else None

    @property
    def call_timeout(self) -> float:
        """Seconds before one HTTP call times out: `timeout`, else the default of the tier asked for."""
        if self.timeout is not None:
            return self.timeout
        return FLEX_TIMEOUT_S if self.service_tier == "flex" else TIMEOUT_S

    @field_validator("temperature", "max_tokens", "reasoning_effort")
    @classmethod
    def _taken_by_the_model(cls, value: Any, info: ValidationInfo) -> Any:
        model = info.data.get("model")
        if value is not None and isinstance(model, str):
            problem = refused_setting(model, str(info.field_name), value)
            if problem is not None:
                raise ValueError(problem)
        return value

    def key_variable(self) -> str | None:
        """The environment variable this section's key is read from: api_key_env, else its provider's (the one set,
        else the one LiteLLM reads: refed_dspy.providers.keys.key_variable); None when no key is needed.

        Returns:
            The variable's name, or None when no key is needed.
        """
        return key_variable(self.model, self.api_key_env, os.environ)

    @property
    def endpoints(self) -> list[str]:
        """Every api_base given (empty: the provider's default)."""
        if self.api_base is None:
            return []
        return [self.api_base] if isinstance(self.api_base, str) else list(self.api_base)

    @property
    def primary_api_base(self) -> str | None:
        """The first api_base: the URL the LM is built with (the others are reached through the same requests)."""
        return self.endpoints[0] if self.endpoints else None

    @property
    def reached_api_base(self) -> str | None:
        """Where the LM's calls go: the first api_base, else the endpoint the environment gives the model's clients
        (OPENAI_BASE_URL and kin, read now: `environment_endpoint`); None: the provider's own."""
        return self.primary_api_base or environment_endpoint(provider_for(self.model), os.environ)

    @property
    def sampling(self) -> Sampling:
        """What the model takes where this section is silent (refed_dspy.providers.sampling)."""
        return sampling_of(self.model)

    def temperature_for(self, role: str = "teacher") -> float:
        """The temperature sent: this section's, else the model's own default for `role`.

        Args:
            role: the section's role ('teacher' or 'judge'), whose default applies.

        Returns:
            The temperature.
        """
        return self.temperature if self.temperature is not None else self.sampling.temperature_for(role)

    @property
    def output_limit(self) -> int:
        """The output limit sent (max_tokens): this section's, else the model's own default."""
        return self.max_tokens if self.max_tokens is not None else self.sampling.max_tokens

    def defaults_note(self, role: str = "teacher") -> str | None:
        """The one line a run says when the model's own settings stand in for what this section leaves unset and
        they are not the usual ones (a reasoning model's); None otherwise.

        Args:
            role: the section's role ('teacher' or 'judge'), named in the line.

        Returns:
            The line, or None.
        """
        s = self.sampling
        parts = []
        if self.temperature is None and s.fixed_temperature is not None:
            parts.append(f"temperature {s.fixed_temperature:g} (the only one it takes)")
        if self.max_tokens is None and s.least_max_tokens is not None:
            own = f"; its own limit is {s.own_limit:,}" if s.own_limit else ""
            parts.append(f"max_tokens {s.max_tokens:,} (the least DSPy sends it{own})")
        if not parts:
            return None
        effort = (
            f"reasoning_effort {self.reasoning_effort}"
            if self.reasoning_effort
            else f"reasoning_effort the model's own (set {role}.reasoning_effort: {', '.join(s.efforts or EFFORTS)})"
        )
        return f"{role} {self.model}, {s.kind}: {', '.join(parts)}; {effort}"

    def start_notes(self, role: str = "teacher") -> list[str]:
        """The lines a run says of this section as it starts, for an LM built from it: the model's own settings where
        they stand in for what the section leaves unset (defaults_note), and a deprecation date of the model that has
        passed or is near, with its successor (refed_dspy.providers.litellm_table).

        Args:
            role: the section's role ('teacher' or 'judge'), named in the lines.

        Returns:
            The lines, possibly none.
        """
        return [note for note in (self.defaults_note(role), deprecation_note(self.model, role)) if note]

    def identity(self, role: str = "teacher") -> dict[str, Any]:
        """This section as what identifies a config (an experiment's cells, its baselines): its fields, with the
        temperature, output limit and timeout sent, and the fields added later (ADDED_FIELDS) left out at their
        default.

        Args:
            role: the section's role ('teacher' or 'judge'), whose defaults apply.

        Returns:
            The section's fields as JSON values, by name.
        """
        data = self.model_dump(mode="json")
        data["temperature"], data["max_tokens"] = self.temperature_for(role), self.output_limit
        data["timeout"] = self.call_timeout  # the timeout a call is given (unset: the tier's default)
        for name in ADDED_FIELDS:
            if data.get(name) == LMSpec.model_fields[name].get_default(call_default_factory=True):
                data.pop(name, None)
        return data

    def lm_arguments(self, num_retries: int | None = None, role: str = "teacher") -> dict[str, Any]:
        """Every keyword argument refed itself gives the dspy.LM of this section (the model among them), None where
        DSPy's default holds; `extra` may name none of them (reserved_extra_keys). The temperature and output limit are
        the model's own defaults for `role` where the section sets none.

        Args:
            num_retries: DSPy's retries, instead of the section's `num_retries`; None for the section's.
            role: the section's role ('teacher' or 'judge'), whose defaults apply.

        Returns:
            The keyword arguments by name, None where DSPy's default holds.
        """
        return {
            "model": self.model,
            "temperature": self.temperature_for(role),
            "max_tokens": self.output_limit,
            "reasoning_effort": self.reasoning_effort,
            "num_retries": self.num_retries if num_retries is None else num_retries,
            "api_base": self.primary_api_base,
            "api_version": self.api_version,
            "timeout": self.call_timeout,
            "service_tier": self.asked_tier,
            "api_key": None,  # read from the environment as the LM is built (clients.lm): a config holds no key
            "engine": None,  # a client's own sync and async engines: given by build_lm, never by `extra`
            "async_engine": None,
        }

    def lm_kwargs(self, num_retries: int | None = None, role: str = "teacher") -> dict[str, Any]:
        """The keyword arguments of this section's dspy.LM: `extra`, and lm_arguments where set. ConfigError when
        `extra` names one of refed's own (a section made without validation: model_construct, model_copy).

        Args:
            num_retries: DSPy's retries, instead of the section's `num_retries`; None for the section's.
            role: the section's role ('teacher' or 'judge'), whose defaults apply and which error messages name.

        Returns:
            The keyword arguments by name: `extra`, then lm_arguments' that are not None.

        Raises:
            ConfigError: `extra` names a keyword refed gives itself, or holds a secret masked where it was recorded.
        """
        clash = reserved_key(self.extra)
        if clash is not None:
            raise ConfigError(f"{role}.extra: {reserved_message(clash, role)}")
        if "***" in secret_values(self.extra):  # a run dir's config.toml: its header keys were masked as it was written
            raise ConfigError(
                f"{role}.extra holds a key that was masked where the config was recorded (a run dir's config.toml): "
                "pass --config with the config that holds it"
            )
        own = {k: v for k, v in self.lm_arguments(num_retries, role).items() if v is not None}
        return {**self.extra, **own}

    @field_validator("extra")
    @classmethod
    def _extra_adds_settings_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if SECRET_NAME.search(key):
                raise ValueError(
                    f"'{key}' looks like a secret; put it in an environment variable and name it in api_key_env"
                )
        clash = reserved_key(value)
        if clash is not None:  # the config's error message names the section (teacher.extra -> teacher.max_tokens)
            raise PydanticCustomError("reserved_extra", "{message}", {"key": clash})
        for secret in secret_values(value):  # a gateway's key in a header: masked wherever it would be said
            hold(secret)
        return value


# what an LM's client is told to reach its endpoint: an LM given engines of its own (clients.lm) takes none of them,
# since the engines carry the endpoint, its timeout and the key
CLIENT_REACH = ("api_base", "api_version", "timeout", "api_key")


def price_of(spec: LMSpec, batch: bool = False, tier: str | None = None) -> Price | None:
    """Price for this spec from config, else LiteLLM's price map, on the spec's service tier (`tier`: on that one
    instead), carrying its other tiers' prices; `batch`: the default tier's at the spec's batch_price_factor (a batch
    request asks for no tier)."""
    tiers = tier_triples(spec.tier_prices)
    price = resolve_price(
        spec.model,
        spec.input_usd_per_mtok,
        spec.cached_input_usd_per_mtok,
        spec.output_usd_per_mtok,
        spec.cache_write_usd_per_mtok,
        tiers,
        "default" if batch else tier or spec.service_tier,
    )
    return price.scaled(spec.batch_price_factor) if batch and price is not None else price


def require_price(spec: LMSpec, role: str, budget_field: str, handed_in: bool = False) -> None:
    """A cost budget needs a price: ConfigError (naming the fields to set) when `spec`'s model has none. `handed_in`:
    `spec` describes an LM object handed in, priced by its own model (the [prices] table), not by the section."""
    if price_of(spec) is None:
        close = close_priced_names(spec.model)
        typo = f" (did you mean '{close[0]}'?)" if close else ""
        fix = (
            f'price it in the config ([prices."{spec.model}"] input_usd_per_mtok and output_usd_per_mtok: an LM '
            "handed in is priced by its own model)"
            if handed_in
            else f"set {role}.input_usd_per_mtok and {role}.output_usd_per_mtok"
        )
        raise ConfigError(
            f"{budget_field} needs a price for the {role} '{spec.model}', which is not in the price table{typo}: {fix}"
        )


def on_own_network(spec: LMSpec) -> bool:
    """Every endpoint of `spec` (its api_base, else the one the environment gives its client, else its provider's
    own, a local server's when the provider needs no key) is on this machine or its network (a local server, whose
    model has no list price)."""
    provider = provider_for(spec.model)
    endpoints = spec.endpoints or [u for u in (spec.reached_api_base or provider.default_base,) if u]
    if not endpoints:
        return provider.keyless  # a local server's provider (Ollama, vLLM): its own endpoint is on this machine
    return all(is_private_host(host_of(url)) for url in endpoints)


def unpriced_text(spec: LMSpec, role: str) -> str:
    """What a figure with no price says of `spec`'s model: why (a local server; a priced name close to it, a likely
    typo) and the fields that price it."""
    local = on_own_network(spec)
    close = [] if local else close_priced_names(spec.model)
    why = (
        " (a server on this machine or its network: no list price)"
        if local
        else f" (did you mean '{close[0]}'?)"
        if close
        else ""
    )
    return f"no price known for {spec.model}{why}: set {role}.input_usd_per_mtok and {role}.output_usd_per_mtok"


def price_note(spec: LMSpec, role: str) -> str | None:
    """The line a run without a cost budget says when `spec`'s model has no price and LiteLLM's price map knows a name
    close to it (a likely typo): its costs will be unknown. None when it is priced, when nothing is close (a model of
    one's own), or when every endpoint is on this machine or its network (a local server's model has no list price);
    under a cost budget `require_price` refuses instead."""
    if price_of(spec) is not None or on_own_network(spec):
        return None
    close = close_priced_names(spec.model)
    if not close:
        return None
    return (
        f"{role} model '{spec.model}' is not in the price map (did you mean '{close[0]}'?); costs will be unknown "
        f"(set {role}.input_usd_per_mtok and {role}.output_usd_per_mtok to price it)"
    )


@functools.cache
def reserved_extra_keys() -> frozenset[str]:
    """What `extra` may not name: each keyword argument refed gives dspy.LM itself (LMSpec.lm_arguments), each field
    of the section, and their other names (OTHER_NAMES). DSPy would take two values for one argument, or one would
    silently win over the other."""
    own = LMSpec.model_construct().lm_arguments()
    fields = frozenset(LMSpec.model_fields) - {"extra"}
    return frozenset(own) | fields | frozenset(OTHER_NAMES) | frozenset(SEVERAL_COMPLETIONS)


def reserved_key(extra: dict[str, Any]) -> str | None:
    """The first key of a section's `extra`, or of the `extra_body` it holds (which the client merges into each
    request: as `extra_body.<key>`), that refed sets itself (reserved_extra_keys); None: none."""
    body = extra.get("extra_body")
    keys = [*extra, *(f"extra_body.{key}" for key in body)] if isinstance(body, dict) else list(extra)
    return next((key for key in keys if key.rpartition(".")[2] in reserved_extra_keys()), None)


def reserved_message(key: str, role: str) -> str:
    """Why `key` of `<role>.extra` (`extra_body.<key>`: of its extra_body) is refused, and what to set instead."""
    inside, _, key = key.rpartition(".")
    if key in SEVERAL_COMPLETIONS:
        return several_completions(key, f"{role}.extra" + (f".{inside}" if inside else ""))
    field = OTHER_NAMES.get(key, key)
    what = f"another name of {role}.{field}, " if field != key else ""
    named = f"'{key}'" + (f" in {role}.extra.{inside}" if inside else "")
    if field in LMSpec.model_fields:
        return f"{named} is {what}a setting of [{role}] itself, not an extra argument: set {role}.{field} instead"
    return f"{named} is an argument refed gives the LM itself (it builds the LM's client); leave it out of extra"


def billed_in_body(key: str, where: str) -> str:
    """Why `key` (one of BILLED_IN_BODY but several completions) in the extra_body of `where` is refused."""
    return (
        f"'{key}' in extra_body in {where} would change what a call costs behind the limits it is reserved at; give "
        "it as the LM's own argument (max_tokens, service_tier)"
    )


def several_completions(key: str, where: str) -> str:
    """Why `key` (one of SEVERAL_COMPLETIONS) set in `where` is refused."""
    return (
        f"'{key}' in {where} asks each call for several completions, which refed would count and cap as one call; leave "
        "it out (each sample is a call of its own; a module or optimizer that asks for them, as COPRO does, is not "
        "supported)"
    )


@functools.lru_cache(maxsize=256)
def sampling_of(model: str) -> Sampling:
    """What `model` takes where a section is silent: its provider's word (refed_dspy.providers)."""
    return provider_for(model).sampling(model)


def refused_setting(model: str, field: str, value: Any) -> str | None:
    """Why `model` cannot take `value` for `field` (temperature, max_tokens, reasoning_effort), what to do instead;
    None when it can."""
    s = sampling_of(model)
    if field == "temperature" and s.fixed_temperature is not None and value != s.fixed_temperature:
        return f"{model} takes only temperature {s.fixed_temperature:g} ({s.kind}); leave it unset"
    if field == "max_tokens" and s.least_max_tokens is not None and value < s.least_max_tokens:
        return (
            f"{model} ({s.kind}) is sent at least {s.least_max_tokens:,} output tokens, its hidden reasoning "
            f"included; leave it unset for {s.max_tokens:,}"
        )
    if field == "reasoning_effort" and s.efforts is not None and value not in s.efforts:
        if not s.efforts:
            return f"{model} takes no reasoning_effort (LiteLLM's model table: it does not reason); leave it unset"
        return f"{model} takes reasoning_effort {', '.join(s.efforts)} (LiteLLM's model table), not {value!r}"
    return None
