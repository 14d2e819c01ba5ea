"""How each LM client is given `api_base`: LiteLLM's form, or the one DSPy's own client (lm15) expects."""

from __future__ import annotations

from typing import Any

from refed_dspy.providers.wire import ANTHROPIC, host_form, wire_of


def native_base(model: str, api_base: str) -> str:
    """The base DSPy's own client (lm15) is given for `api_base`: it appends `/messages` to an Anthropic base, so the
    host gets `/v1` back; others unchanged."""
    host = host_form(model, api_base)
    return host + "/v1" if wire_of(model) is ANTHROPIC else host


def fit_api_base(lm: Any) -> Any:
    """Give a dspy.LM's `api_base` (if any) the form the client DSPy picks for it expects: lm15's (`native_base`), or
    LiteLLM's (`host_form`). Returns `lm`, changed in place."""
    kwargs = getattr(lm, "kwargs", None)
    base = (kwargs or {}).get("api_base")
    if not isinstance(base, str) or wire_of(str(lm.model)) is not ANTHROPIC:
        return lm
    kwargs["api_base"] = host_form(lm.model, base)
    if _served_natively(lm):
        kwargs["api_base"] = native_base(lm.model, base)
    return lm


def _served_natively(lm: Any) -> bool:
    """DSPy serves `lm` with its own client (lm15) rather than LiteLLM."""
    try:
        from dspy.clients.backend_selection import select_backend

        return bool(select_backend(lm, {}).native)
    except Exception:  # noqa: BLE001 - DSPy internals moved, or a model lm15 does not know: LiteLLM's convention
        return False
