"""How each LM client is given `api_base`: LiteLLM's form, or the one DSPy's own client (lm15) expects.

LiteLLM takes an `api_base` in its provider's form (`Provider.host_form`: the host, for a provider whose api_base is
its host). DSPy 3.4's own client (lm15) appends less of the path to some providers' bases (only /messages for
Anthropic's), so the same config reached another URL there: it is given the base with the rest of the path
(`Provider.native_path`). A config may write such an api_base either way; `fit_api_base` gives each LM the form of
the client DSPy picks for it.
"""

from __future__ import annotations

from typing import Any

from refed_dspy.providers.registry import provider_for


def fit_api_base(lm: Any) -> Any:
    """Give a dspy.LM's `api_base` (if any) the form the client DSPy picks for it expects: lm15's
    (`Provider.native_base`), or LiteLLM's (`Provider.host_form`). Returns `lm`, changed in place."""
    kwargs = getattr(lm, "kwargs", None)
    base = (kwargs or {}).get("api_base")
    if not isinstance(base, str):
        return lm
    provider = provider_for(str(lm.model))
    if not (provider.base_suffixes or provider.native_path):  # its api_base is passed on as written, to any client
        return lm
    kwargs["api_base"] = provider.host_form(base)
    if _served_natively(lm):
        kwargs["api_base"] = provider.native_base(base)
    return lm


def _served_natively(lm: Any) -> bool:
    """DSPy serves `lm` with its own client (lm15) rather than LiteLLM."""
    try:
        from dspy.clients.backend_selection import select_backend

        return bool(select_backend(lm, {}).native)
    except Exception:  # noqa: BLE001 - DSPy internals moved, or a model lm15 does not know: LiteLLM's convention
        return False


def endpoint_of(lm: Any) -> str | None:
    """The endpoint `lm`'s requests are addressed to, as its client was given it: its `api_base` (or `base_url`), else,
    for an LM that carries engines of its own (build_lm's, which DSPy refuses client settings beside), the base URL
    those engines were configured with; None: the provider's own endpoint."""
    kwargs = getattr(lm, "kwargs", None) or {}
    base = kwargs.get("api_base") or kwargs.get("base_url")
    if base:
        return base
    config = getattr(getattr(lm, "engine", None), "config", None)
    return next(iter((getattr(config, "base_urls", None) or {}).values()), None)
