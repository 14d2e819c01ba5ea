"""The Anthropic Messages format for the loopback server: a request as the server's chat body, its answer and its
errors as Anthropic sends them. The server answers `POST .../v1/messages` with these (and its Message Batches answer
each line through that endpoint), so every fault it injects applies to the Anthropic path as well."""

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


def _text(content) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def to_chat_body(params: dict) -> dict:
    """An Anthropic Messages request as the loopback's chat body (its JSON schema, if any, as response_format)."""
    messages = []
    if params.get("system"):
        messages.append({"role": "system", "content": _text(params["system"])})
    messages += [{"role": m["role"], "content": _text(m.get("content"))} for m in params.get("messages", [])]
    body = {"model": params.get("model"), "messages": messages, "max_tokens": params.get("max_tokens")}
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
    return {
        "id": f"msg_{payload.get('id', '')}",
        "type": "message",
        "role": "assistant",
        "model": payload.get("model"),
        "content": [{"type": "text", "text": choice["message"].get("content") or ""}],
        "stop_reason": _STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0),
            "cache_read_input_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
        },
    }


def to_error(status: int, payload: dict) -> dict:
    """An error answer as Anthropic words it: {"type": "error", "error": {"type", "message"}}."""
    message = (payload.get("error") or {}).get("message") or f"HTTP {status}"
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}


def as_anthropic(status: int, payload: dict) -> dict:
    """What the server sends for `payload` (a chat completion, or an OpenAI-style error) on the Anthropic endpoint."""
    return to_message(payload) if status == 200 and "choices" in payload else to_error(status, payload)
