"""Where a key is sent, and whether it may go there: the hosts of the providers' own endpoints (each provider's
`hosts`), the host of an endpoint, the hosts that are the user's own (loopback and private addresses, local names), where
any key may go; whose key a variable is (`key_provider`), which provider a model's calls go to (`routed_provider`), and
the one decision on where a key may go (`key_refusal`).

Pure functions over the registered providers and LiteLLM's table: nothing here reads a key, and LiteLLM is imported
only to place a bare model name (`routed_provider`). Reading a key, and saying a refusal, is refed_dspy.clients.keys's.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from refed_dspy.providers.base import provider_of
from refed_dspy.providers.litellm_table import KEY_VARIABLES, LITELLM_PROVIDERS
from refed_dspy.providers.registry import PROVIDERS

_LOCAL_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa")
_PARTS = re.compile(r"[-_]")
_KEY_SUFFIX = re.compile(r"(_API)?_(KEY|TOKEN)$")
_BY_COMPACT = {name.replace("_", "").upper(): name for name in LITELLM_PROVIDERS}


def host_of(url: str) -> str:
    """The host name of an endpoint URL, lower-case ('' when it names none); a URL without a scheme is read as
    `host[:port][/path]`."""
    text = url.strip()
    try:
        return (urlsplit(text if "//" in text else f"//{text}").hostname or "").lower().rstrip(".")
    except ValueError:  # a malformed URL (an unclosed IPv6 bracket): no host we can place
        return ""


def is_private_host(host: str) -> bool:
    """The host is the user's own machine or network: loopback (127.0.0.0/8, ::1, localhost), a private address
    (10/8, 172.16/12, 192.168/16, fc00::/7, link-local), a local name (*.local, *.internal, ...) or a bare single-label
    name (a machine on the LAN, a container's service name)."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    return ip.is_loopback or ip.is_private or ip.is_link_local


def _at(host: str, pattern: str) -> bool:
    name = pattern.lstrip(".")
    return host == name or host.endswith("." + name)


def provider_hosts() -> dict[str, tuple[str, ...]]:
    """The hosts of each provider's own endpoints, by its name (those whose hosts refed knows)."""
    return {p.name: p.hosts for p in PROVIDERS.values() if p.hosts}


def host_provider(host: str) -> str | None:
    """The provider whose own endpoint `host` is (api.groq.com: groq; x.openai.azure.com: azure), None for any other
    host (a proxy, a gateway, a server of one's own)."""
    for provider, hosts in provider_hosts().items():
        if any(_at(host, pattern) for pattern in hosts):
            return provider
    return None


def family(provider: str) -> str:
    """The provider whose hosts `provider`'s calls reach: the one whose hosts refed knows that answers for the prefix,
    else the one its name is made of (text-completion-openai and custom_openai: openai; azure_ai: azure), else
    itself."""
    known = provider_hosts()
    owner = PROVIDERS.for_prefix(provider)
    if owner is not None and owner.name in known:
        return owner.name
    if provider in known:
        return provider
    return next((part for part in _PARTS.split(provider) if part in known), provider)


def hosts_known(provider: str) -> bool:
    """Whether refed knows where `provider`'s own endpoints are (its family's `hosts`)."""
    return family(provider) in provider_hosts()


def one_party(a: str, b: str) -> bool:
    """Providers `a` and `b` are one party for a key: the same family of endpoints, or LiteLLM reads one variable for
    both (ai21 and ai21_chat, codestral and text-completion-codestral)."""
    if family(a) == family(b):
        return True
    return bool(set(KEY_VARIABLES.get(a, ())) & set(KEY_VARIABLES.get(b, ())))


def default_host(provider: str) -> str | None:
    """Where `provider`'s calls go when no api_base is given, where refed knows it (None for Azure: a resource of
    one's own)."""
    return next((h for h in provider_hosts().get(family(provider), ()) if not h.startswith(".")), None)


def routed_provider(model: str) -> str | None:
    """The provider LiteLLM sends `model`'s calls to: its prefix, or for a bare name LiteLLM's own placing of it
    ('claude-3-5-haiku-20241022' is Anthropic's, not OpenAI's; only a bare name imports LiteLLM); None for a bare name
    it cannot place."""
    if "/" in model:
        return provider_of(model)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List" banner for a name it cannot place
    try:
        return str(litellm.get_llm_provider(model)[1]) or None
    except Exception:  # noqa: BLE001 - a name LiteLLM cannot place
        return None


@functools.lru_cache(maxsize=512)
def provider_key_names(model: str) -> tuple[str, ...]:
    """The variables LiteLLM reads `model`'s key from, whether they are set here or not (its own table, copied in
    refed_dspy.providers.litellm_table; () for a provider it reads no key variable for)."""
    provider = routed_provider(model)
    return KEY_VARIABLES.get(provider, ()) if provider else ()


@functools.lru_cache(maxsize=256)
def key_provider(env: str) -> str | None:
    """The provider whose key variable `env` is: by its name (`<PROVIDER>_API_KEY`, `_KEY` or `_TOKEN`, the provider
    spelled as in LiteLLM's provider list, underscores aside: TOGETHERAI_API_KEY is together_ai's), else the provider
    LiteLLM reads it for (GOOGLE_API_KEY: gemini's); None when it names no provider LiteLLM knows (a name of your own,
    MY_VLLM_KEY, AZURE_OPENAI_API_KEY)."""
    upper = env.upper()
    stem = _KEY_SUFFIX.sub("", upper)
    if stem != upper and stem.replace("_", "") in _BY_COMPACT:
        return _BY_COMPACT[stem.replace("_", "")]
    return next((p for p, names in sorted(KEY_VARIABLES.items()) if upper in names), None)


@dataclass(frozen=True)
class Refusal:
    """A key that must not go where it would: whose key it is, where it would go, and whose endpoint that is."""

    env: str
    owner: str  # the provider whose key the variable is
    where: str  # the host (or "<provider>'s endpoint") it would be sent to
    endpoint_owner: str  # the provider whose own endpoint that is


def _destinations(model: str, endpoints: Sequence[str]) -> list[tuple[str, str | None]]:
    """(where, whose endpoint) for each place a key of `model` is sent: each api_base's host (whose: None for a host
    of the user's or one refed does not know), or, with none, the model's provider's own endpoint."""
    if endpoints:
        out: list[tuple[str, str | None]] = []
        for url in endpoints:
            host = host_of(url)
            out.append((host or url, None if not host or is_private_host(host) else host_provider(host)))
        return out
    provider = routed_provider(model)
    if provider is None:
        return []  # a bare name LiteLLM cannot place: where it goes is not certain
    return [(default_host(provider) or f"{provider}'s endpoint", provider)]


def key_refusal(env: str | None, model: str, endpoints: Sequence[str]) -> Refusal | None:
    """The one decision on where a key may go: a Refusal when the key in `env` would reach an endpoint of another
    provider than its own, None otherwise. Refused only when that is certain: the variable is a provider's (not a
    name of one's own), refed knows that provider's hosts, and the endpoint is another known provider's own (one
    of its hosts, or the model's provider's default endpoint). Loopback and private hosts, and hosts refed does not
    know, take any key; providers that are one party (text-completion-openai and openai) share keys."""
    if not env:
        return None
    owner = key_provider(env)
    if owner is None or not hosts_known(owner):
        return None
    for where, endpoint_owner in _destinations(model, endpoints):
        if endpoint_owner is not None and not one_party(owner, endpoint_owner):
            return Refusal(env, owner, where, endpoint_owner)
    return None
