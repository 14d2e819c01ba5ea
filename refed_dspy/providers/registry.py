"""The registry of providers: `PROVIDERS`, filled by the provider files as the package loads, and the questions asked
of it (`provider_for` a model string, `provider_named` a name, the batch APIs and which one takes a section's
batches, the schema dialects, where a model's chat call goes).

Where a chat call goes, and how `api_base` is taken for it: LiteLLM's convention, for every client.

Each provider says how its `api_base` is written (`Provider.base_form`): OpenAI-compatible servers with their version
path (http://localhost:8000/v1; a call appends /chat/completions), Anthropic the host (https://api.anthropic.com; a
call appends /v1/messages). Where a provider's `base_suffixes` allow it, either spelling works (http://h:p,
http://h:p/v1 or http://h:p/v1/messages are read as the host); refed_dspy.clients.lm gives each client the
form it expects. Other providers' `api_base` is passed on as written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, TypeVar

from refed_dspy.errors import ConfigError
from refed_dspy.providers.base import FULL, MINIMAL, BatchAPI, Dialect, Provider, Wire, provider_of
from refed_dspy.registry import Registry


class ProviderRegistry(Registry[Provider]):
    """Providers by name, and by the model prefixes they answer for (a prefix belongs to one provider)."""

    def __init__(self) -> None:
        super().__init__("provider", "provider")
        self._by_prefix: dict[str, Provider] = {}
        self.version = 0  # changes with every registration: what is derived from the registry is made again

    def register(self, entry: Any) -> Any:
        """Add a Provider under its name and its prefixes; returns it. A prefix another provider holds is refused (and
        a name, as in every registry)."""
        taken = {p: self._by_prefix[p].name for p in entry.prefixes if p in self._by_prefix}
        clash = next((p for p, owner in taken.items() if owner != entry.name), None)
        if clash is not None:
            raise ValueError(f"model prefix '{clash}' is registered already (by provider '{taken[clash]}')")
        super().register(entry)
        self._forget_prefixes(entry.name)
        self._by_prefix.update(dict.fromkeys(entry.prefixes, entry))
        self.version += 1
        return entry

    def unregister(self, name: str) -> None:
        self._forget_prefixes(name)
        super().unregister(name)
        self.version += 1

    def _forget_prefixes(self, name: str) -> None:
        """Forget the prefixes of the provider called `name`."""
        self._by_prefix = {p: held for p, held in self._by_prefix.items() if held.name != name}

    def for_prefix(self, prefix: str) -> Provider | None:
        """The provider that answers for model prefix `prefix`, if one is registered."""
        return self._by_prefix.get(prefix)


PROVIDERS = ProviderRegistry()
T = TypeVar("T")


def _derived(make: Callable[[], T]) -> Callable[[], T]:
    """`make()`, made again only when a provider was registered or unregistered since (its callers are hot paths: a
    prompt's formatting asks its dialect, a batch summary each answer's API)."""
    held: dict[int, T] = {}

    @functools.wraps(make)
    def derived() -> T:
        if PROVIDERS.version not in held:
            held.clear()
            held[PROVIDERS.version] = make()
        return held[PROVIDERS.version]

    return derived


@functools.lru_cache(maxsize=64)
def _unknown(prefix: str) -> Provider:
    return Provider(name=prefix, prefixes=(prefix,))


def provider_for(model: str) -> Provider:
    """The provider of a DSPy/LiteLLM model string, by its prefix (a bare name: OpenAI, as LiteLLM assumes). A prefix
    no provider file registers gets a Provider that knows nothing but its name: no wire, no hosts, the minimal schema
    dialect, no batch API, its key variables from LiteLLM's table.

    Args:
        model: a DSPy/LiteLLM model string.

    Returns:
        The registered provider of its prefix, or a bare Provider named after the prefix.
    """
    prefix = provider_of(model)
    return PROVIDERS.for_prefix(prefix) or _unknown(prefix)


def provider_named(name: str) -> Provider:
    """The registered provider called `name`; ConfigError naming the registered ones otherwise.

    Args:
        name: a provider's registry name ('openai', 'anthropic', ...).

    Returns:
        The registered Provider of that name.

    Raises:
        ConfigError: no provider of that name is registered.
    """
    return PROVIDERS.get(name)


@_derived
def batch_apis() -> MappingProxyType[str, BatchAPI]:
    """Every batch API a registered provider has, by its name (the first provider's, by rank, where two share one)."""
    out: dict[str, BatchAPI] = {}
    for provider in PROVIDERS.values():
        if provider.batch is not None:
            out.setdefault(provider.batch.name, provider.batch)
    return MappingProxyType(out)


def batch_titles() -> list[str]:
    """The titles of the providers refed can send batches to, by rank."""
    return [p.title for p in PROVIDERS.values() if p.batch is not None]


def batch_provider(spec: Any, role: str) -> Provider:
    """The provider whose batch API the calls of `spec` (an LM section, refed_dspy.config.lm.LMSpec: its model,
    endpoints and api_base) would go to; ConfigError for a provider without one (or without what it needs for one: a
    single endpoint, an api_base where the provider has no endpoint of its own)."""
    provider = provider_for(spec.model)
    if provider.batch is None:
        raise ConfigError(
            f"{role}: batch mode needs a model of a provider with a batch API ({', '.join(batch_titles())}); "
            f"'{spec.model}' ({provider_of(spec.model)}) has no batch API refed can use: set mode = \"online\""
        )
    if len(spec.endpoints) > 1:
        raise ConfigError(
            f"{role}.api_base lists {len(spec.endpoints)} endpoints; batch mode sends to one provider "
            'endpoint: give one, or use mode = "online"'
        )
    if provider.default_base is None and not spec.reached_api_base:  # the environment's endpoint counts
        where = provider.api_base_hint or f"the {provider.title} endpoint"
        raise ConfigError(f"{role}.api_base must name {where} for batch mode")
    return provider


@_derived
def dialects() -> MappingProxyType[str, Dialect]:
    """Every schema dialect, by name, listed by rank: full, the registered providers' own, minimal."""
    found = [FULL, MINIMAL, *(p.dialect for p in PROVIDERS.values())]
    return MappingProxyType({d.name: d for d in sorted(dict.fromkeys(found), key=lambda d: (d.rank, d.name))})


def dialect_named(name: str) -> Dialect:
    """The schema dialect called `name`; ValueError naming the known ones otherwise."""
    known = dialects()
    if name not in known:
        raise ValueError(f"unknown schema dialect '{name}'; known: {', '.join(known)}")
    return known[name]


def wires() -> list[Wire]:
    """Every request format a registered provider speaks, by the rank of its first provider."""
    return list(dict.fromkeys(p.wire for p in PROVIDERS.values() if p.wire is not None))


@_derived
def rate_limit_headers() -> MappingProxyType[str, str]:
    """The reply headers that state a provider's per-minute rate limits, over every request format a registered
    provider speaks (header, lower-case, to what it states: refed_dspy.providers.base.Wire.rate_limits)."""
    return MappingProxyType({name: said for wire in wires() for name, said in wire.rate_limits.items()})


def examples() -> list[str]:
    """How the message for a model of no known provider shows the known ones, by rank."""
    return [p.example for p in PROVIDERS.values() if p.example]


def convention_name(model: str) -> str:
    """`gen_ai.provider.name` of a model string: the conventions' name of its provider where they have one, else its
    LiteLLM prefix (`hosted_vllm`, `ollama_chat`), else `openai` (an unprefixed model goes to an OpenAI-style server)."""
    prefix = model.split("/", 1)[0] if "/" in model else "openai"
    family = getattr(provider_for(model), "name", None) or prefix
    return _CONVENTION_NAMES.get(family, _CONVENTION_NAMES.get(prefix, prefix))


_CONVENTION_NAMES = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
}


def host_form(model: str, api_base: str) -> str:
    """`api_base` as LiteLLM takes it for `model`'s provider (`Provider.host_form`)."""
    return provider_for(model).host_form(api_base)


def call_url(model: str, api_base: str | None) -> str:
    """The URL a chat call of `model` goes to with `api_base` (`Provider.call_url`)."""
    return provider_for(model).call_url(model, api_base)


def server_root(api_base: str) -> str:
    """`api_base` without a trailing slash and without a trailing path a provider's api_base may carry (its
    `base_suffixes`: /v1, /v1/messages): the server's host (and any path before those)."""
    base = api_base.strip().rstrip("/")
    suffixes = sorted({s for p in PROVIDERS.values() for s in p.base_suffixes}, key=len, reverse=True)
    for suffix in suffixes:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base
