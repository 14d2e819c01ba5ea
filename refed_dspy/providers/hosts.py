"""Where a key is sent: the hosts of the providers' own endpoints (each provider's `hosts`), the host of an endpoint,
and the hosts that are the user's own (loopback and private addresses, local names), where any key may go.

Pure functions over the registered providers and LiteLLM's table: nothing here imports LiteLLM or reads the environment.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from refed_dspy.providers.litellm_table import KEY_VARIABLES
from refed_dspy.providers.registry import PROVIDERS

_LOCAL_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa")
_PARTS = re.compile(r"[-_]")


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
