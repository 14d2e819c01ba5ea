"""OpenAI, whose chat format most servers speak (the compatible ones are in openai_compatible.py).

Its `api_base` carries the version path (https://api.openai.com/v1; a chat call appends /chat/completions). Its
strict structured outputs take no string lengths; a server of one's own reached as `openai/<name>` at another host
(llama.cpp, vLLM, SGLang) compiles the whole schema into a grammar instead. Its Batch API takes a JSONL file of
requests (Files + Batches) at half the price; it caches prompt prefixes by itself from 1,024 tokens, in steps of 128,
and a request's `prompt_cache_key` sends calls that share a prefix to the same cache.
A request may ask for a service tier (`service_tier`: flex, about half the price with slower replies and now and then a
429 "resource unavailable"; priority, dearer and faster) and the reply says which tier served it.
Its reasoning models (the o-series and GPT-5 families, not their -chat variants) take only temperature 1, an output
limit as `max_completion_tokens` (DSPy sends them at least 16,000) and a `reasoning_effort`; their hidden reasoning
tokens are billed as output and counted apart in `usage.completion_tokens_details.reasoning_tokens`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from refed_dspy.providers.base import FULL, BatchAPI, Dialect, PrefixCache, Provider, Tiers, Wire
from refed_dspy.providers.registry import PROVIDERS
from refed_dspy.providers.sampling import Sampling, held_reasoning

DSPY_LEAST_MAX_TOKENS = 16_000  # the least output limit DSPy sends one of its reasoning models
_O_SERIES = re.compile(r"o[1345](-(mini|nano|pro))?(-\d{4}-\d{2}-\d{2})?")
_GPT5 = re.compile(r"gpt-5(\.\d+)*(-.+)?")
_GPT5_CHAT = re.compile(r"gpt-5(\.\d+)*-chat")  # its chat variants take any temperature


def reasoning_family(model: str) -> bool:
    """`model` is one of OpenAI's reasoning models, by its last name whatever its prefix (openai/, azure/,
    openrouter/openai/): DSPy holds such a model to temperature 1 and 16,000 output tokens wherever it is served."""
    name = model.rsplit("/", 1)[-1].lower()
    return bool(_O_SERIES.fullmatch(name) or (_GPT5.fullmatch(name) and not _GPT5_CHAT.match(name)))


def openai_sampling(model: str, fallback: Sampling) -> Sampling:
    """The settings of an OpenAI model: its reasoning models' own, else `fallback`."""
    return (
        held_reasoning(model, DSPY_LEAST_MAX_TOKENS, "an OpenAI reasoning model")
        if reasoning_family(model)
        else fallback
    )


def _reasoning_tokens(usage: Mapping[str, Any]) -> int:
    """The hidden reasoning tokens of a chat completion (inside its completion tokens)."""
    details = usage.get("completion_tokens_details") or {}
    return int(details.get("reasoning_tokens") or 0) if isinstance(details, Mapping) else 0


def _usage(usage: Mapping[str, Any]) -> tuple[int, int, int]:
    """A chat completion's usage: its prompt tokens include the cached ones."""
    details = usage.get("prompt_tokens_details") or {}
    return (
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(details.get("cached_tokens") or 0),
    )


CHAT = Wire(
    name="OpenAI chat completions",
    family="OpenAI",
    path="/chat/completions",
    reach='model = "openai/{name}" with api_base = "{host}/v1"',
    usage=_usage,
    reasoning=_reasoning_tokens,
    rate_limits={f"x-ratelimit-limit-{unit}": unit for unit in ("requests", "tokens")},
)
STRICT = Dialect(
    "openai",
    frozenset({"minLength", "maxLength", "uniqueItems"}),
    why="OpenAI's strict mode takes no string-length bounds",
    shown=True,
    rank=10,
)
FILES_AND_BATCHES = BatchAPI(
    name="openai",
    protocol="files",
    wire=CHAT,
    max_requests=50_000,
    max_bytes=190 * 1024 * 1024,  # the limit is 200 MB; some room for multipart framing
    line_url="/v1/chat/completions",
)
TIERS = Tiers()  # flex and priority, by `service_tier`; flex's 429 resource_unavailable (Azure OpenAI's too)
# a request naming no tier is served on the one its project's settings name, priority among them
PROJECT_TIERS = Tiers(unasked=True)


class OpenAIProvider(Provider):
    """OpenAI: at an api_base of another host, the model string reaches a server of one's own in OpenAI's format."""

    def schema_dialect(self, model: str, api_base: str | None) -> tuple[Dialect, str]:
        host = (urlparse(api_base).hostname or "") if api_base else ""
        if api_base and not host.endswith("openai.com"):
            return (
                FULL,
                f"an OpenAI-compatible server at {host or api_base} (llama.cpp, vLLM, SGLang enforce every bound)",
            )
        return super().schema_dialect(model, api_base)

    def sampling(self, model: str) -> Sampling:
        return openai_sampling(model, super().sampling(model))


OPENAI = PROVIDERS.register(
    OpenAIProvider(
        name="openai",
        title="OpenAI",
        prefixes=("openai",),
        rank=1,
        example="openai/<name> for an OpenAI-compatible server such as vLLM, llama.cpp or SGLang",
        hosts=("api.openai.com",),
        key_names=("OPENAI_API_KEY", "OPENAI_ADMIN_KEY"),
        base_variables=("OPENAI_BASE_URL", "OPENAI_API_BASE"),
        wire=CHAT,
        default_base="https://api.openai.com/v1",
        dialect=STRICT,
        schema_table=True,
        batch=FILES_AND_BATCHES,
        prefix_cache=PrefixCache(min_tokens=1024, step=128),
        cache_key="prompt_cache_key",
        tiers=PROJECT_TIERS,
    )
)
# OpenAI's completions endpoint (not chat): its structured outputs are OpenAI's; its hosts OpenAI's (by name); LiteLLM
# sends its calls with OPENAI_API_KEY to OPENAI_BASE_URL or OPENAI_API_BASE when no api_base is given
TEXT_COMPLETION = PROVIDERS.register(
    Provider(
        name="text-completion-openai",
        title="OpenAI text completions",
        prefixes=("text-completion-openai",),
        rank=8,
        base_variables=OPENAI.base_variables,
        client_keys=("OPENAI_API_KEY",),
        dialect=STRICT,
    )
)
# OpenAI's chat format through LiteLLM's aiohttp client: its hosts OpenAI's (by name), its variables as above
AIOHTTP_OPENAI = PROVIDERS.register(
    Provider(
        name="aiohttp_openai",
        title="OpenAI through aiohttp",
        prefixes=("aiohttp_openai",),
        rank=9,
        base_variables=OPENAI.base_variables,
        client_keys=("OPENAI_API_KEY",),
    )
)
