"""Where a key is sent: the hosts of the providers' own endpoints, the host of an endpoint, and the hosts that are the
user's own (loopback and private addresses, local names), where any key may go.

Pure functions over our own tables: nothing here imports LiteLLM or reads the environment.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from refed_dspy.providers.litellm_table import KEY_VARIABLES

# the hosts of providers' own endpoints (a name starting with "." is a domain: any host under it); the first plain
# name is where the provider's calls go when no api_base is given
PROVIDER_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "azure": (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"),
    "gemini": ("generativelanguage.googleapis.com",),
    "mistral": ("api.mistral.ai",),
    "groq": ("api.groq.com",),
    "together_ai": ("api.together.xyz",),
    "openrouter": ("openrouter.ai",),
    "deepseek": ("api.deepseek.com",),
    "xai": ("api.x.ai",),
    "cohere": ("api.cohere.com", "api.cohere.ai"),
    "fireworks_ai": ("api.fireworks.ai",),
}
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


def host_provider(host: str) -> str | None:
    """The provider whose own endpoint `host` is (api.groq.com: groq; x.openai.azure.com: azure), None for any other
    host (a proxy, a gateway, a server of one's own)."""
    for provider, hosts in PROVIDER_HOSTS.items():
        if any(_at(host, pattern) for pattern in hosts):
            return provider
    return None


def family(provider: str) -> str:
    """The provider whose hosts `provider`'s calls reach: itself, or the known provider its name is made of
    (text-completion-openai and custom_openai: openai; cohere_chat: cohere; azure_ai: azure)."""
    if provider in PROVIDER_HOSTS:
        return provider
    return next((part for part in _PARTS.split(provider) if part in PROVIDER_HOSTS), provider)


def hosts_known(provider: str) -> bool:
    """Whether refed knows where `provider`'s own endpoints are (PROVIDER_HOSTS, by its family)."""
    return family(provider) in PROVIDER_HOSTS


def one_party(a: str, b: str) -> bool:
    """Providers `a` and `b` are one party for a key: the same family of endpoints, or LiteLLM reads one variable for
    both (ai21 and ai21_chat, codestral and text-completion-codestral)."""
    if family(a) == family(b):
        return True
    return bool(set(KEY_VARIABLES.get(a, ())) & set(KEY_VARIABLES.get(b, ())))


def default_host(provider: str) -> str | None:
    """Where `provider`'s calls go when no api_base is given, where refed knows it (None for Azure: a resource of
    one's own)."""
    return next((h for h in PROVIDER_HOSTS.get(family(provider), ()) if not h.startswith(".")), None)
