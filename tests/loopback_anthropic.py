"""The Anthropic Messages format for the loopback server: a request as the server's chat body, its answer and its
errors as Anthropic sends them. The server answers `POST .../v1/messages` with these (and its Message Batches answer
each line through that endpoint), so every fault it injects applies to the Anthropic path as well.

Prompt caching as Anthropic does it: nothing is cached unless a block carries `cache_control` (at most 4 of them, on
blocks with text); the chat body says where the prompt's text ends each block (`_blocks`) and which of those ends are
marked (`_marks`), as character offsets in the text the server counts a prompt's tokens in (its messages' texts joined
by newlines); the server writes a marked prefix of at least the model's minimum on first sight and reads it after
(refed's loopback: `_State.marked_cache`), and the answer's usage says so: `input_tokens` (neither read nor written),
`cache_read_input_tokens`, `cache_creation_input_tokens`."""

from __future__ import annotations

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


MAX_MARKS = 4
# the fewest prompt tokens a model caches, by model name prefix (Anthropic's prompt caching guide); others: 1,024
MIN_CACHE_TOKENS = {"claude-haiku-4-5": 4096, "claude-opus-4-5": 4096, "claude-3-5-haiku": 2048, "claude-3-haiku": 2048}


def min_cache_tokens(model: str) -> int:
    found = [name for name in MIN_CACHE_TOKENS if str(model or "").startswith(name)]
    return MIN_CACHE_TOKENS[max(found, key=len)] if found else 1024


def _text(content) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def _blocks(content) -> list[dict]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def cache_points(params: dict) -> tuple[list[int], list[int], str | None]:
    """Where the prompt's blocks end and which of those carry cache_control, as offsets in the text the server counts
    (system, then each message's blocks, messages joined by newlines); and what Anthropic would refuse (None: nothing)."""
    texts = ([params["system"]] if params.get("system") else []) + [
        m.get("content") for m in params.get("messages", [])
    ]
    ends, marks, start = [], [], 0
    for content in texts:
        at = start
        for block in _blocks(content):
            at += len(block.get("text", "")) if isinstance(block, dict) else 0
            ends.append(at)
            if isinstance(block, dict) and block.get("cache_control") is not None:
                if not (block.get("text") or "").strip():
                    return ends, marks, "cache_control cannot be set for empty text blocks"
                marks.append(at)
        start += len(_text(content)) + 1
    if len(marks) > MAX_MARKS:
        return ends, marks, f"A maximum of {MAX_MARKS} blocks with cache_control may be provided. Found {len(marks)}."
    return ends, marks, None


def to_chat_body(params: dict) -> dict:
    """An Anthropic Messages request as the loopback's chat body (its JSON schema, if any, as response_format), with
    its cache points (`cache_points`) under `_blocks`, `_marks` and, for a request Anthropic refuses, `_refused`."""
    messages = []
    if params.get("system"):
        messages.append({"role": "system", "content": _text(params["system"])})
    messages += [{"role": m["role"], "content": _text(m.get("content"))} for m in params.get("messages", [])]
    body = {"model": params.get("model"), "messages": messages, "max_tokens": params.get("max_tokens")}
    body["_blocks"], body["_marks"], refused = cache_points(params)
    if refused:
        body["_refused"] = refused
    if params.get("temperature") is not None:
        body["temperature"] = params["temperature"]
    fmt = (params.get("output_config") or {}).get("format") or params.get("output_format")
    if isinstance(fmt, dict) and fmt.get("schema"):
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "out", "schema": fmt["schema"]}}
    return body


def to_message(payload: dict) -> dict:
    """The loopback's chat completion as an Anthropic message."""
    choice = payload["choices"][0]
    usage = payload.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    read, written = details.get("cached_tokens", 0), details.get("cache_write_tokens", 0)
    return {
        "id": f"msg_{payload.get('id', '')}",
        "type": "message",
        "role": "assistant",
        "model": payload.get("model"),
        "content": [{"type": "text", "text": choice["message"].get("content") or ""}],
        "stop_reason": _STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.get("prompt_tokens", 0) - read - written,  # Anthropic's leaves out the cache's
            "output_tokens": usage.get("completion_tokens", 0),
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        },
    }


def to_error(status: int, payload: dict) -> dict:
    """An error answer as Anthropic words it: {"type": "error", "error": {"type", "message"}}."""
    message = (payload.get("error") or {}).get("message") or f"HTTP {status}"
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}


def as_anthropic(status: int, payload: dict) -> dict:
    """What the server sends for `payload` (a chat completion, or an OpenAI-style error) on the Anthropic endpoint."""
    return to_message(payload) if status == 200 and "choices" in payload else to_error(status, payload)
