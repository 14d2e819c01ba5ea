"""Anthropic, and servers that speak its Messages format.

Its `api_base` is the host (https://api.anthropic.com; LiteLLM appends /v1/messages); a trailing /v1 or /v1/messages
is dropped, so either spelling works, and DSPy's own client (lm15), which appends only /messages, is given the host
with /v1. Its structured outputs take no numeric, length or item-count bounds (an item count of 0 or 1 excepted) and
it has no json_object mode. Its Message Batches take the requests inline, at half the price. It caches a prompt
prefix only where `cache_control` asks (nothing is cached by itself), and a reply's prompt tokens are its input tokens
plus the cache reads and writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refed_dspy.providers.base import BOUNDS, BatchAPI, Dialect, Provider, Wire
from refed_dspy.providers.registry import PROVIDERS

API_VERSION = "2023-06-01"  # the anthropic-version header its batch requests carry


def _usage(usage: Mapping[str, Any]) -> tuple[int, int, int]:
    """A Messages reply's usage, counted as DSPy counts it: the prompt includes the cache reads and writes."""
    read = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    return int(usage.get("input_tokens") or 0) + read + written, int(usage.get("output_tokens") or 0), read


MESSAGES = Wire(
    name="Anthropic Messages",
    family="Anthropic",
    path="/v1/messages",
    reach='model = "anthropic/{name}" with api_base = "{host}"',
    usage=_usage,
)
DIALECT = Dialect(
    "anthropic",
    BOUNDS,
    kept={"minItems": (0, 1)},
    why="Anthropic takes no numeric, length or item-count bounds",
    shown=True,
    json_object=False,
    rank=20,
)
MESSAGE_BATCHES = BatchAPI(
    name="anthropic",
    protocol="inline",
    wire=MESSAGES,
    max_requests=100_000,
    max_bytes=250 * 1024 * 1024,
    error_status={
        "invalid_request_error": 400,
        "authentication_error": 401,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "api_error": 500,
        "overloaded_error": 529,
    },
)


class AnthropicProvider(Provider):
    """Anthropic: its key goes in x-api-key, with the API version."""

    def batch_headers(self, key: str | None) -> dict[str, str]:
        return {"x-api-key": key or "", "anthropic-version": API_VERSION}


ANTHROPIC = PROVIDERS.register(
    AnthropicProvider(
        name="anthropic",
        title="Anthropic",
        prefixes=("anthropic",),
        rank=3,
        example="anthropic/<name>",
        hosts=("api.anthropic.com",),
        wire=MESSAGES,
        default_base="https://api.anthropic.com",
        base_form="host",
        base_suffixes=("/v1/messages", "/v1"),
        native_path="/v1",
        dialect=DIALECT,
        schema_table=True,
        batch=MESSAGE_BATCHES,
    )
)
