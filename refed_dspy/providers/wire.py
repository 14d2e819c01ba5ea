"""Where a model's chat call goes, and how `api_base` is taken for it: LiteLLM's convention, for every client.

Each provider says how its `api_base` is written (`Provider.base_form`): OpenAI-compatible servers with their version
path (http://localhost:8000/v1; a call appends /chat/completions), Anthropic the host (https://api.anthropic.com; a
call appends /v1/messages). Where a provider's `base_suffixes` allow it, either spelling works (http://h:p,
http://h:p/v1 or http://h:p/v1/messages are read as the host); refed_dspy.clients.api_base gives each client the form it
expects. Other providers' `api_base` is passed on as written.
"""

from __future__ import annotations

from refed_dspy.providers.registry import PROVIDERS, provider_for


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
