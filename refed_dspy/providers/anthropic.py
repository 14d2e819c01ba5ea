"""Anthropic, and servers that speak its Messages format.

Its `api_base` is the host (https://api.anthropic.com; LiteLLM appends /v1/messages); a trailing /v1 or /v1/messages
is dropped, so either spelling works, and DSPy's own client (lm15), which appends only /messages, is given the host
with /v1. Its structured outputs take no numeric, length or item-count bounds (an item count of 0 or 1 excepted) and
it has no json_object mode. Its Message Batches take the requests inline, at half the price. It caches a prompt
prefix only where `cache_control` asks (nothing is cached by itself): at most 4 marks a request, a prefix of at least
its model's minimum (1,024 to 4,096 tokens), read at a tenth of the input price and written at 1.25x; a reply's
`input_tokens` leave out the cache reads and writes, which it reports apart (refed's prompt tokens include them, as
DSPy counts them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from refed_dspy.providers.base import (
    BOUNDS,
    BatchAPI,
    Dialect,
    MarkedCache,
    Provider,
    StablePrompt,
    Wire,
    content_text,
)
from refed_dspy.providers.registry import PROVIDERS

API_VERSION = "2023-06-01"  # the anthropic-version header its batch requests carry
MARK = {"type": "ephemeral"}  # a cache_control mark (a 5-minute cache, refreshed by each read)


def _usage(usage: Mapping[str, Any]) -> tuple[int, int, int]:
    """A Messages reply's usage, counted as DSPy counts it: the prompt includes the cache reads and writes."""
    read = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    return int(usage.get("input_tokens") or 0) + read + written, int(usage.get("output_tokens") or 0), read


def _written(usage: Mapping[str, Any]) -> int:
    return int(usage.get("cache_creation_input_tokens") or 0)


MESSAGES = Wire(
    name="Anthropic Messages",
    family="Anthropic",
    path="/v1/messages",
    reach='model = "anthropic/{name}" with api_base = "{host}"',
    usage=_usage,
    written=_written,
    cache_apart=True,
    rate_limits={
        f"anthropic-ratelimit-{unit}-limit": unit for unit in ("requests", "tokens", "input-tokens", "output-tokens")
    },
)
# the fewest prompt tokens a model caches, by model name prefix (Anthropic's prompt caching guide); others: 1,024
CACHE = MarkedCache(
    max_marks=4,
    min_tokens={
        "claude-haiku-4-5": 4096,
        "claude-opus-4-5": 4096,
        "claude-opus-4-6": 4096,
        "claude-sonnet-4-6": 2048,
        "claude-3-5-haiku": 2048,
        "claude-3-haiku": 2048,
    },
    default_min_tokens=1024,
)


def _marked(content: Any, offset: int | None) -> list[dict[str, Any]] | None:
    """`content` (a string or blocks) as blocks with a cache_control mark on the one that ends at character `offset`
    of its text (None: on its last block), that block split in two where the offset falls inside it; None when no
    text block ends there with text in it (an empty block cannot carry a mark)."""
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else [dict(b) for b in content or []]
    at, seen = None, 0
    for i, block in enumerate(blocks):
        size = len(block.get("text", "")) if block.get("type") == "text" else 0
        if (offset is None and i == len(blocks) - 1) or (offset is not None and seen < offset <= seen + size):
            at = i
            break
        seen += size
    if at is None or blocks[at].get("type") != "text":
        return None
    block, cut = blocks[at], (len(blocks[at]["text"]) if offset is None else offset - seen)
    head, tail = block["text"][:cut], block["text"][cut:]
    if not head.strip():
        return None
    pieces = [{**block, "text": head, "cache_control": dict(MARK)}]
    if tail:
        pieces.append({k: v for k, v in block.items() if k != "cache_control"} | {"text": tail})
    return [*blocks[:at], *pieces, *blocks[at + 1 :]]


def _marks_in(body: Mapping[str, Any]) -> int:
    """How many cache_control marks a Messages body carries already."""
    text = json.dumps({k: body.get(k) for k in ("system", "messages", "tools")})
    return text.count('"cache_control"')


def mark_stable(body: dict[str, Any], stable: StablePrompt | None, cache: MarkedCache = CACHE) -> dict[str, Any]:
    """A Messages request body with `cache_control` marks where the repeated parts of its prompt end (`stable`; the
    chat messages it was made from: a system message is the body's `system`, each other message one of its
    `messages`), so that the provider writes that prefix to its cache on first sight and reads it after. At most
    `cache.max_marks` marks in all (those the body carries already included; the longest prefixes are kept), none on
    a prefix that cannot reach the model's minimum (fewer characters, with the output schema's, than it needs
    tokens). A body whose prompt is not the one `stable` was found in is left as it is. Pure: `body` is not changed."""
    if stable is None or not stable.ends:
        return body
    system, messages = body.get("system"), list(body.get("messages") or [])
    first = 1 if system is not None else 0
    texts = ([content_text(system)] if system is not None else []) + [content_text(m.get("content")) for m in messages]
    if tuple(texts[: len(stable.texts)]) != stable.texts:
        return body
    overhead = len(json.dumps(body.get("output_config") or "")) + len(json.dumps(body.get("tools") or ""))
    minimum = cache.minimum(str(body.get("model") or ""))
    ends = [end for end in stable.ends if stable.prefix_chars(end) + overhead >= minimum]
    room = cache.max_marks - _marks_in(body)
    ends = ends[-room:] if room > 0 else []
    out = dict(body)
    for index, offset in ends:
        if index < first:
            blocks = _marked(out["system"], offset)
            if blocks is not None:
                out["system"] = blocks
            continue
        message = dict(out["messages"][index - first])
        blocks = _marked(message.get("content"), offset)
        if blocks is not None:
            message["content"] = blocks
            out["messages"] = [*out["messages"][: index - first], message, *out["messages"][index - first + 1 :]]
    return out


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

    def cache_request(self, body: dict[str, Any], stable: StablePrompt | None) -> dict[str, Any]:
        return mark_stable(body, stable, self.marked_cache or CACHE)


ANTHROPIC = PROVIDERS.register(
    AnthropicProvider(
        name="anthropic",
        title="Anthropic",
        prefixes=("anthropic",),
        rank=3,
        example="anthropic/<name>",
        hosts=("api.anthropic.com",),
        key_names=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
        base_variables=("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"),
        wire=MESSAGES,
        default_base="https://api.anthropic.com",
        base_form="host",
        base_suffixes=("/v1/messages", "/v1"),
        native_path="/v1",
        dialect=DIALECT,
        schema_table=True,
        batch=MESSAGE_BATCHES,
        marked_cache=CACHE,
    )
)
