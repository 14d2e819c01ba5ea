"""What a provider's endpoint speaks, and how `api_base` is taken for it: LiteLLM's convention, for every client.

LiteLLM takes an Anthropic `api_base` as the host (`https://api.anthropic.com`; it appends `/v1/messages`), and an
OpenAI-compatible one with its version path (`http://localhost:8000/v1`; it appends `/chat/completions`). DSPy 3.4's
own client (lm15) takes an Anthropic base *with* `/v1` (it appends only `/messages`), so the same config reached
`<host>/messages` there. Here an Anthropic `api_base` may be written either way (`http://h:p`, `http://h:p/v1` or
`http://h:p/v1/messages`): it is read as the host, and each client is given the form it expects (`fit_api_base`).
Other providers' `api_base` is passed on as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from refed_dspy.providers.base import provider_of


@dataclass(frozen=True)
class Wire:
    """A request format: its name, the path a chat call appends to the provider's `api_base` (as LiteLLM takes it),
    and the provider's own `api_base`."""

    name: str
    path: str
    default_base: str


ANTHROPIC = Wire("Anthropic Messages", "/v1/messages", "https://api.anthropic.com")
OPENAI = Wire("OpenAI chat completions", "/chat/completions", "https://api.openai.com/v1")
# providers whose calls go out in the OpenAI chat format to an api_base that carries its version path
_OPENAI_LIKE = ("openai", "hosted_vllm", "lm_studio", "openrouter", "together_ai", "deepseek", "groq", "xai")
_ANTHROPIC_SUFFIXES = ("/v1/messages", "/v1")


def wire_of(model: str) -> Wire | None:
    """The request format `model`'s calls use, where refed knows it (None: another provider's own format)."""
    provider = provider_of(model)
    if provider == "anthropic":
        return ANTHROPIC
    if provider in _OPENAI_LIKE:
        return OPENAI
    return None


def server_root(api_base: str) -> str:
    """`api_base` without a trailing slash, `/v1` or `/v1/messages`: the server's host (and any path before those)."""
    base = api_base.strip().rstrip("/")
    for suffix in _ANTHROPIC_SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def host_form(model: str, api_base: str) -> str:
    """`api_base` as LiteLLM takes it for `model`'s provider: for Anthropic the host (a trailing `/v1` or
    `/v1/messages` dropped, so either spelling works); for the others as written, without a trailing slash."""
    return server_root(api_base) if wire_of(model) is ANTHROPIC else api_base.strip().rstrip("/")


def default_base(model: str) -> str | None:
    """The provider's own `api_base`, where refed knows it (OpenAI's, Anthropic's)."""
    wire = wire_of(model)
    return wire.default_base if wire is not None and provider_of(model) in ("openai", "anthropic") else None


def call_url(model: str, api_base: str | None) -> str:
    """The URL a chat call of `model` goes to with `api_base` (unset: the provider's own); for a provider whose
    format or default endpoint refed does not know, `api_base` itself (or 'the provider's default endpoint')."""
    wire, base = wire_of(model), api_base or default_base(model)
    if wire is None or base is None:
        return api_base or f"{provider_of(model)}'s default endpoint"
    return host_form(model, base) + wire.path
