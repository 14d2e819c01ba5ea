"""How to reach one LM role (teacher or judge): the `[teacher]` and `[judge]` sections of a config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from refed_dspy.settings import SECRET_NAME, Section


def provider_of(model: str) -> str:
    """The provider prefix of a DSPy/LiteLLM model string ('openai' when it has none, as LiteLLM assumes)."""
    return model.split("/", 1)[0] if "/" in model else "openai"


ADAPTERS = ("auto", "chat", "json", "json_schema")
SCHEMA_DIALECTS = ("auto", "full", "openai", "anthropic", "gemini", "minimal")


class LMSpec(Section):
    """How to reach one LM role (teacher or judge)."""

    model: str = Field(
        "openai/gpt-4o-mini",
        description="Model string DSPy/LiteLLM accepts, e.g. 'openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5', 'azure/<deployment>', 'ollama_chat/llama3.1'.",
    )
    api_base: str | list[str] | None = Field(
        None,
        description="Base URL of the model's server, as LiteLLM takes it for the model's provider: an OpenAI-compatible server (vLLM, llama.cpp, a proxy) with its version path, e.g. http://localhost:8000/v1 (calls go to <api_base>/chat/completions); Anthropic or an Anthropic-compatible server, the host, e.g. http://localhost:8000 (calls go to <host>/v1/messages; a trailing /v1 is optional); Ollama, the host (http://localhost:11434). A list names several servers of one model (replicas): online calls are spread over them (least in flight first), a failing one is taken out until it recovers, and the summary counts calls per endpoint. Unset: the provider's default.",
    )
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the API key. Unset: it follows the model's provider (OPENAI_API_KEY, ANTHROPIC_API_KEY, ..., as LiteLLM names them), so swapping the model swaps the key. Empty string: the server needs no key. A key goes only to its own provider's hosts: a provider's variable (OPENAI_API_KEY) for another known provider's host (an api_base on api.groq.com, or the model's provider's own endpoint) is refused before any call; loopback and private hosts, a proxy at a host refed does not know, and a variable of your own naming (MY_VLLM_KEY) take any.",
    )
    api_version: str | None = Field(None, description="API version, needed by Azure OpenAI.")
    temperature: float = Field(
        1.0, ge=0.0, le=2.0, description="Sampling temperature. Must be > 0 for distinct samples from one prompt."
    )
    max_tokens: int = Field(
        4096,
        gt=0,
        description="Maximum completion tokens per call; a reply cut off at this limit is rejected as 'truncated'.",
    )
    num_retries: int = Field(
        3, ge=0, description="Retries DSPy makes on 429, 5xx and timeouts (it honours Retry-After)."
    )
    timeout: float | None = Field(120.0, gt=0, description="Seconds before one HTTP call times out.")
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
    adapter: Literal[ADAPTERS] = Field(
        "auto",
        description="How outputs are asked for and read: chat (DSPy's [[ ## field ## ]] markers), json (a JSON object), json_schema (the signature's JSON schema as response_format, enforced by the provider), auto (json_schema where the provider enforces schemas, else chat; the summary says which).",
    )
    schema_dialect: Literal[SCHEMA_DIALECTS] = Field(
        "auto",
        description="Which JSON Schema bounds json_schema sends: full (grammar servers: llama.cpp, vLLM, SGLang, Ollama), openai (strict mode: no string lengths), anthropic and minimal (no bounds), gemini (no string lengths); the rest go into descriptions. auto: from the model and api_base.",
    )
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
        description="Extra keyword arguments passed to dspy.LM (provider-specific). Never put a key here.",
    )

    @field_validator("api_base")
    @classmethod
    def _endpoints(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value or not all(v.strip() for v in value):
                raise ValueError("needs at least one URL, none of them empty")
            if len(set(value)) != len(value):
                raise ValueError("names an endpoint twice")
            return value[0] if len(value) == 1 else value
        return value

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

    def endpoint_kwargs(self) -> dict[str, Any]:
        """How a dspy.LM reaches this spec's endpoint: api_base (the first), api_version and timeout, where set."""
        out: dict[str, Any] = {}
        if self.primary_api_base:
            out["api_base"] = self.primary_api_base
        if self.api_version:
            out["api_version"] = self.api_version
        if self.timeout:
            out["timeout"] = self.timeout
        return out

    @field_validator("extra")
    @classmethod
    def _no_secrets_in_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if SECRET_NAME.search(key):
                raise ValueError(
                    f"'{key}' looks like a secret; put it in an environment variable and name it in api_key_env"
                )
        return value
