"""An LM's key and where it may go: whose key a variable is, which hosts it may reach, the route of a config
section's key decided, and that key read, held and checked before any call.

Where a key may go: a key goes only to its own provider's hosts (each provider's `hosts`), read as the resolver and
URL parsers read them (`folded_hosts`: percent-decoded, then IDNA/UTS-46 folds a soft hyphen away and narrows
full-width letters; an IPv4 address in any inet_aton form is its dotted quad), or to hosts that are the user's own
(loopback and private addresses, local names), where any key may go. Whose key a variable is comes from its name
(`key_provider`: OPENAI_API_KEY is openai's, AZURE_OPENAI_API_KEY azure's; a name of one's own, MY_VLLM_KEY, is
nobody's), and which provider a model's calls go to from the model (`routed_provider`). One decision says where a key
may go: `key_destination` for one request (refed_dspy.clients.destination checks every request as it leaves),
`key_refusal` for a config's endpoints before any call: a known provider's key to another known provider's endpoint,
or to a host that only looks like one, is refused; a public host refed does not know, or plain http, is warned about.

A config section's key (`key_route`, pure over a mapping of the environment's names and endpoints, never a key's
value): the variable, the config's `api_key_env`, else `<PROVIDER>_API_KEY` when it is set, else the one LiteLLM reads
for the model's provider (refed_dspy.providers.litellm_table, a table of LiteLLM's: no import of LiteLLM), which also
names the variable to set when none is; the endpoints the key is sent to (each api_base; with none, the endpoint the
environment gives the model's client, OPENAI_BASE_URL and kin, else the provider's own endpoint); refused or warned.
`check_key_goes_to_its_provider` and `check_key` say that route in the config's terms before a run dir is made, and
`check_key` reads the key, held for masking (refed_dspy.secrets: a provider that quotes it back never gets it
printed). A warning is one line, once per variable and host in a process, whether said here or as a request leaves
(`warn_once`). An LM object's own key is checked likewise by refed_dspy.clients.destination (`check_lm_key`).
LiteLLM is imported only to place a bare model name (`routed_provider`).
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit
from urllib.request import proxy_bypass_environment

import idna

from refed_dspy.errors import KeyProviderError, MissingKeyError
from refed_dspy.providers.base import Provider, provider_of
from refed_dspy.providers.litellm_table import (
    DEFAULT_HOSTS,
    KEY_VARIABLES,
    LITELLM_PROVIDERS,
    SIGNED_WITH,
    key_variables,
    signs_itself,
)
from refed_dspy.providers.registry import PROVIDERS, provider_for
from refed_dspy.secrets import HUB_TOKEN_FILE, hold

log = logging.getLogger(__name__)
_lock = threading.Lock()
_warned: set[tuple[str, str]] = set()  # (variable, host) pairs already warned about in this process

# the address ranges of one's own network (RFC 1918, shared address space, unique local IPv6); Python's `is_private`
# also counts the documentation ranges, which are nobody's network
_PRIVATE_NETS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
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


def _uts46(host: str) -> str | None:
    try:  # IDNA 2008 with UTS-46's mapping, as the idna package, httpx and browsers resolve a name
        return idna.encode(host, uts46=True, std3_rules=False, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _nameprep(host: str) -> str | None:
    try:  # IDNA 2003's nameprep: Python's `idna` codec, which socket.getaddrinfo applies to a name
        return host.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return None


def _visible(host: str) -> str:
    """`host` as it renders: compatibility forms narrowed (NFKC), format characters and combining marks dropped."""
    text = unicodedata.normalize("NFKC", host)
    return "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Mn", "Me"))


def _ipv4_part(text: str) -> int | None:
    """One part of an IPv4 address as inet_aton and the WHATWG URL parser read it: `0x` hex, a leading `0` octal,
    else decimal; None when it is not a number."""
    base = 10
    if text[:2].lower() == "0x":
        text, base = text[2:] or "0", 16
    elif len(text) > 1 and text.startswith("0"):
        text, base = text[1:], 8
    try:
        return int(text, base) if text.isascii() and text.isalnum() else None
    except ValueError:
        return None


def ipv4_of(host: str) -> str | None:
    """The dotted-quad IPv4 address `host` names when it is written in any form inet_aton and the WHATWG URL parser
    take (`134744072`, `0x8080808`, `010.0.0.1`, `10.1`: one to four parts, decimal, hex or octal, the last filling
    the bytes left); None for a name."""
    parts = host.strip().rstrip(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_part(part) for part in parts]
    if any(n is None for n in numbers):
        return None
    *head, last = (int(n or 0) for n in numbers)
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + last
    return str(ipaddress.IPv4Address(value))


@functools.lru_cache(maxsize=1024)
def folded_hosts(host: str) -> tuple[str, ...]:
    """Every name a resolver or a URL parser may read `host` as, lower-case and without a trailing dot: as written
    and percent-decoded (`api%2Egroq.com` is api.groq.com to a WHATWG parser, as many proxies are), each mapped by
    UTS-46 (a soft hyphen or a zero-width space vanishes, `ª` is `a`, full-width letters narrow), by IDNA 2003's
    nameprep, and as it renders; and an IPv4 address in any inet_aton form as its dotted quad (`134744072` is
    8.8.8.8). A key may go to a host only where it may go to each of them. The one reading of a host for every rule
    that reads hosts (keys, plain http, loopback)."""
    raw = host.strip()
    written = tuple(dict.fromkeys((raw, unquote(raw))))
    forms = [f for one in written for f in (one, _uts46(one), _nameprep(one), _visible(one))]
    names = [f.lower().rstrip(".") for f in forms if f]
    return tuple(dict.fromkeys(n for name in names for n in (name, ipv4_of(name)) if n))


def is_private_host(host: str) -> bool:
    """The host is the user's own machine or network: loopback (127.0.0.0/8, ::1, localhost), a private address
    (10/8, 172.16/12, 192.168/16, fc00::/7, link-local; an IPv4 address in any inet_aton form, `ipv4_of`), a local
    name (*.local, *.internal, ...) or a bare single-label name (a machine on the LAN, a container's service name)."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(ipv4_of(host) or host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or any(ip in net for net in _PRIVATE_NETS if net.version == ip.version)
    )


def loopback_host(header: str | None) -> bool:
    """Whether an HTTP Host header (or an Origin, `scheme://host[:port]`) names this machine's loopback interface:
    localhost, or a loopback address (127.0.0.0/8 in any inet_aton form, ::1). A page that reached a local server
    under another name (DNS rebinding) must not read what it serves."""
    if not header:
        return False
    netloc = header.split("://", 1)[-1].split("/", 1)[0]
    if netloc.startswith("["):  # [::1]:8765
        name = netloc[1:].split("]", 1)[0]
    else:
        name = netloc.rsplit(":", 1)[0] if ":" in netloc else netloc
    name = name.lower().rstrip(".")
    try:
        return name == "localhost" or ipaddress.ip_address(ipv4_of(name) or name).is_loopback
    except ValueError:
        return False


def _at(host: str, pattern: str) -> bool:
    name = pattern.lstrip(".")
    return host == name or host.endswith("." + name)


def _domain(pattern: str) -> tuple[str, ...]:
    """The labels of the domain a provider's host pattern is under (api.openai.com, .openai.azure.com: its last two)."""
    return tuple(pattern.lstrip(".").split("."))[-2:]


def lookalike_of(host: str) -> str | None:
    """The provider whose own domain `host` carries inside another domain (`api.openai.com.evil.test`,
    `openai.com.example.net`: openai), where `host` is none of that provider's hosts; None for any other host."""
    if host_provider(host) is not None:
        return None
    labels = tuple(host.split("."))
    for provider, patterns in provider_hosts().items():
        for domain in {_domain(p) for p in patterns}:
            n = len(domain)
            if any(labels[i : i + n] == domain for i in range(len(labels) - n)):
                return provider
    return None


def provider_hosts() -> dict[str, tuple[str, ...]]:
    """The hosts of each provider's own endpoints, by its name (those whose hosts refed knows): a provider file's
    `hosts`, then the host LiteLLM sends a keyed provider's calls to when no api_base is given (DEFAULT_HOSTS)."""
    hosts = {p.name: p.hosts for p in PROVIDERS.values() if p.hosts}
    for name, host in DEFAULT_HOSTS.items():
        owner = PROVIDERS.for_prefix(name)
        name = owner.name if owner is not None and owner.hosts else name
        if not any(_at(host, pattern) for pattern in hosts.get(name, ())):
            hosts[name] = (*hosts.get(name, ()), host)
    return hosts


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


# providers LiteLLM names apart whose hosts are one company's (a key of one at the other's host stays with its owner)
ONE_COMPANY = {"codestral": "mistral", "qwen_ai_platform": "dashscope", "qwencloud": "dashscope", "azure_ai": "azure"}


def one_party(a: str, b: str) -> bool:
    """Providers `a` and `b` are one party for a key: the same family of endpoints, one company's (ONE_COMPANY:
    codestral.mistral.ai and api.mistral.ai), or LiteLLM reads one variable for both (ai21 and ai21_chat)."""
    if _company(a) == _company(b):
        return True
    return bool(set(KEY_VARIABLES.get(a, ())) & set(KEY_VARIABLES.get(b, ())))


def _company(provider: str) -> str:
    return ONE_COMPANY.get(family(provider), family(provider))


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
    refed_dspy.providers.litellm_table, else those its client of the provider reads: `Provider.client_keys`; () for
    a provider it reads no key variable for)."""
    provider = routed_provider(model)
    if not provider:
        return ()
    serving = PROVIDERS.for_prefix(provider)
    return key_variables(provider) or (serving.client_keys if serving is not None else ())


@functools.lru_cache(maxsize=256)
def key_provider(env: str) -> str | None:
    """The provider whose key variable `env` is: one its documentation names (`Provider.key_names`:
    AZURE_OPENAI_API_KEY is azure's, HF_TOKEN huggingface's, CO_API_KEY cohere's), else by its name
    (`<PROVIDER>_API_KEY`, `_KEY` or `_TOKEN`, the provider spelled as in LiteLLM's provider list, underscores aside:
    TOGETHERAI_API_KEY is together_ai's), else the provider LiteLLM reads it for (GOOGLE_API_KEY: gemini's); None when
    it names no provider (a name of your own: MY_VLLM_KEY)."""
    upper = env.upper()
    documented = next((p.name for p in PROVIDERS.values() if upper in p.key_names), None)
    if documented is not None:
        return documented
    stem = _KEY_SUFFIX.sub("", upper)
    if stem != upper and stem.replace("_", "") in _BY_COMPACT:
        return _BY_COMPACT[stem.replace("_", "")]
    if upper in CREDENTIAL_OWNERS:
        return CREDENTIAL_OWNERS[upper]
    return next((p for p, names in sorted(KEY_VARIABLES.items()) if upper in names), None)


# variables LiteLLM reads a provider's credential from that neither its key table nor a key's usual name places
# (read from its code: get_secret_str and os.environ): a value in one is that provider's, and goes to no other's host
CREDENTIAL_OWNERS = {
    "AIMLAPI_KEY": "aiml",
    "ANYSCALE_API_KEY": "anyscale",  # LiteLLM routes anyscale/ though its provider list leaves it out
    "ANTHROPIC_AWS_API_KEY": "bedrock",  # LiteLLM sends it to Anthropic on AWS (llms/bedrock/claude_platform)
    "ALEPH_ALPHA_API_KEY": "aleph_alpha",
    "ALEPHALPHA_API_KEY": "aleph_alpha",
    "ARK_API_KEY": "volcengine",
    "AWS_BEARER_TOKEN_BEDROCK": "bedrock",
    "AZURE_AD_TOKEN": "azure",
    "AZURE_CLIENT_SECRET": "azure",  # its Entra ID secret (secret_managers/get_azure_ad_token_provider)
    "AZURE_PASSWORD": "azure",  # its Entra ID password (llms/azure/common_utils, with AZURE_USERNAME)
    "BFL_API_KEY": "black_forest_labs",
    "DATABRICKS_CLIENT_SECRET": "databricks",
    "FEATHERLESS_API_KEY": "featherless_ai",
    "FRIENDLI_TOKEN": "friendliai",
    "GIGACHAT_ACCESS_TOKEN": "gigachat",  # sent to the model's endpoint whenever it is set (SENT_WHEN_SET)
    "GIGACHAT_CREDENTIALS": "gigachat",  # posted to its token endpoint (gigachat_auth_url, $GIGACHAT_AUTH_URL)
    "JINA_API_KEY": "jina_ai",
    "LAMBDA_API_KEY": "lambda_ai",
    "LLAMA_API_KEY": "meta_llama",
    "MISTRAL_AZURE_API_KEY": "azure_ai",
    "NANOGPT_API_KEY": "nano-gpt",
    "OPENCODE_API_KEY": "opencode_go",
    "PALM_API_KEY": "gemini",
    "RUNWAYML_API_SECRET": "runwayml",
    "SCW_SECRET_KEY": "scaleway",
    "SNOWFLAKE_JWT": "snowflake",
    "STIMA_API_KEY": "apertis",
    HUB_TOKEN_FILE.upper(): "huggingface",
    "VERCEL_OIDC_TOKEN": "vercel_ai_gateway",  # read after VERCEL_AI_GATEWAY_API_KEY (main.py)
    "VERTEXAI_CREDENTIALS": "vertex_ai",  # a service account's JSON (main.py: vertex_credentials)
    "VOYAGE_AI_API_KEY": "voyage",
    "VOYAGE_AI_TOKEN": "voyage",
    "WATSONX_APIKEY": "watsonx",
    "WATSONX_ZENAPIKEY": "watsonx",
    "WX_API_KEY": "watsonx",
    "YOUCOM_API_KEY": "you_com",
}
# the key variables of its own a provider whose client signs itself sends, when set (bedrock's API keys)
_OWNED = {"bedrock": ("AWS_BEARER_TOKEN_BEDROCK",)}


class SentWhenSet(NamedTuple):
    """Credentials a provider's client sends whenever they are set, whatever key it is given: `sent`, sent once every
    variable of `with_` is set too, to the model's endpoint or to the hosts the variables of `hosts` name."""

    sent: tuple[str, ...]
    with_: tuple[str, ...]
    hosts: tuple[str, ...]


# Databricks' OAuth secret, posted with its client id to `<host>/oidc/v1/token` (LiteLLM's token fetch, with requests)
# of the api_base or $DATABRICKS_API_BASE, or of $DATABRICKS_HOST for an agent; with no client id it is never sent
_DATABRICKS_OAUTH = SentWhenSet(("DATABRICKS_CLIENT_SECRET",), ("DATABRICKS_CLIENT_ID",), ("DATABRICKS_HOST",))
SENT_WHEN_SET = {
    "databricks": _DATABRICKS_OAUTH,
    "databricks_agent": _DATABRICKS_OAUTH,
    "gigachat": SentWhenSet(("GIGACHAT_ACCESS_TOKEN",), (), ()),  # LiteLLM's bearer token over any key it is given
}


@dataclass(frozen=True)
class Refusal:
    """A key that must not go where it would: whose key it is, where it would go, and whose endpoint that is."""

    env: str
    owner: str  # the provider whose key the variable is
    where: str  # the host (or "<provider>'s endpoint") it would be sent to
    endpoint_owner: str  # the provider whose own endpoint (or look-alike) that is
    why: str = ""  # what that host is, in words


@dataclass(frozen=True)
class Destination:
    """Whether a provider's key may go to one URL: `ok`, `warn` (an unknown public host of a provider whose hosts
    refed knows, or plain http to a public address: sent, with one warning line) or `refuse` (another known
    provider's host, or a host that only looks like a known provider's: not sent). `host` is the name decided on (as
    the resolver reads it), `owner` the provider whose endpoint or look-alike it is (refuse), `why` says it in words."""

    verdict: Literal["ok", "warn", "refuse"]
    host: str = ""
    owner: str | None = None
    why: str = ""


def url_hosts(url: str) -> tuple[str, str, tuple[str, ...]]:
    """(scheme, host as written, every name a resolver may read it as) of an endpoint URL; the host is read as a
    URL parser reads it (userinfo and port apart) and as a minimal one does (everything before the path), so that a
    client that reads it either way is covered."""
    text = url.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    authority = re.split(r"[/?#]", text.split("://", 1)[-1], maxsplit=1)[0]
    written = host_of(text)
    raw = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
    names = tuple(dict.fromkeys(h for one in (written, raw.strip("[]")) if one for h in folded_hosts(one)))
    return scheme, written or raw, names


@functools.lru_cache(maxsize=1024)
def key_destination(owner: str, url: str) -> Destination:
    """The one decision on where the key of provider `owner` may go, for one request's URL. Refused, where refed knows
    `owner`'s hosts: a name the resolver may read the host as is another provider's own host (not one party with
    `owner`: openai and text-completion-openai are one), or carries a known provider's domain inside another one
    (api.openai.com.evil.test). Loopback and private hosts take any key. Warned: plain http to a public address, or
    a host refed does not know where it knows `owner`'s hosts (a gateway: it may be yours)."""
    scheme, written, names = url_hosts(url)
    if not names or all(is_private_host(h) for h in names):
        return Destination("ok", written)
    for host in names:
        theirs = host_provider(host)
        if theirs is not None and not one_party(owner, theirs):
            return Destination("refuse", host, theirs, f"{theirs}'s endpoint")
    for host in names:
        like = lookalike_of(host)
        if like is not None:
            return Destination("refuse", host, like, f"not {like}'s, though its name carries {like}'s domain")
    if scheme == "http":
        shown = next((f"{written} ({ip})" for ip in [ipv4_of(written)] if ip and ip != written), written)
        return Destination(
            "warn", shown, None, "a public address over plain http: the key crosses the network unencrypted"
        )
    if hosts_known(owner) and not any(host_provider(h) is not None for h in names):
        return Destination("warn", written, None, f"a host refed does not know as {owner}'s (a gateway or proxy?)")
    return Destination("ok", written)


def key_destinations(model: str, endpoints: Sequence[str] = ()) -> list[str]:
    """Each URL a key of `model` is sent to: each endpoint given (api_base, or one the environment supplies), or, with
    none, the model's provider's own endpoint."""
    if endpoints:
        return list(endpoints)
    provider = routed_provider(model)
    if provider is None:
        return []  # a bare name LiteLLM cannot place: where it goes is not certain
    host = default_host(provider)
    return [f"https://{host}"] if host else []


def key_refusal(env: str | None, model: str, endpoints: Sequence[str]) -> Refusal | None:
    """The decision of `key_destination` for a config before any call: a Refusal when the key in `env` would reach
    an endpoint that is not its provider's (`endpoints`: the api_base values, or the endpoint the environment
    supplies; none: the model's provider's own), None otherwise. A variable that names no provider (a name of one's
    own) is nobody's key and goes anywhere."""
    if not env:
        return None
    owner = key_provider(env)
    if owner is None:
        return None
    for url in key_destinations(model, endpoints):
        found = key_destination(owner, url)
        if found.verdict == "refuse":
            return Refusal(env, owner, found.host, found.owner or "another party", found.why)
    if not endpoints:
        provider = routed_provider(model)
        if provider is not None and default_host(provider) is None and not one_party(owner, provider):
            return Refusal(env, owner, f"{provider}'s endpoint", provider, f"{provider}'s endpoint")
    return None


def key_warnings(env: str | None, endpoints: Iterable[str]) -> list[Destination]:
    """The warnings `key_destination` gives the key in `env` for `endpoints` (none for a name of one's own)."""
    owner = key_provider(env) if env else None
    if owner is None:
        return []
    found = (key_destination(owner, url) for url in endpoints)
    return [d for d in found if d.verdict == "warn"]


def own_variable(provider: str, names: tuple[str, ...]) -> str:
    """The variable to name for `provider`'s key: `<PROVIDER>_API_KEY` where LiteLLM reads it (or reads none), else
    the last of the variables it reads (`names`)."""
    own = f"{provider.upper()}_API_KEY"
    return own if own in names or not names else names[-1]


def variable_of(provider: str) -> str:
    """The variable a provider's key is usually read from (GROQ_API_KEY, TOGETHERAI_API_KEY)."""
    return own_variable(family(provider), key_variables(family(provider)))


def key_variable(model: str, named: str | None, environ: Mapping[str, str]) -> str | None:
    """The environment variable that must hold `model`'s key (None when no key is needed): `named` (a config's
    api_key_env; "" for none), else `<PROVIDER>_API_KEY` when it is set, else the first set of those LiteLLM reads,
    else the one to name when none is."""
    return _key_variable(provider_for(model), model, named, environ)


def _key_variable(serving: Provider, model: str, named: str | None, environ: Mapping[str, str]) -> str | None:
    if named is not None:
        return named or None
    if serving.keyless:  # a local server (LiteLLM asks it for an address, which api_base gives)
        return None
    provider = provider_of(model)
    own = f"{provider.upper()}_API_KEY"
    if environ.get(own):
        return own  # the usual name is set
    names = (*provider_key_names(model), *_OWNED.get(provider, ()))
    found = next((n for n in names if environ.get(n)), None)
    if found is None and signs_itself(provider):
        return None  # its client signs with the AWS credentials it reads itself: no key to send
    return found or own_variable(provider, names)


def provider_variable_set(model: str, environ: Mapping[str, str]) -> str | None:
    """The variable an LM without an inline key takes its key from (its provider's client reads it), when it is set
    in `environ`: the only case where a key is sent."""
    provider = provider_of(model)
    if provider_for(model).keyless:
        return None
    names = (f"{provider.upper()}_API_KEY", *key_variables(provider), *_OWNED.get(provider, ()))
    return next((name for name in names if environ.get(name)), None)


def _set_endpoints(serving: Provider, environ: Mapping[str, str]) -> list[str]:
    """The endpoints the environment gives the client of a model `serving` serves when a config gives no api_base
    (OPENAI_BASE_URL and OPENAI_API_BASE for openai/ and a bare name, ANTHROPIC_BASE_URL, AZURE_OPENAI_ENDPOINT, DSPy's
    `<PREFIX>_API_BASE`): each set one counts, since the client that reads it is not known here."""
    return [environ[name].strip() for name in serving.endpoint_variables if environ.get(name, "").strip()]


def environment_endpoint(serving: Provider, environ: Mapping[str, str]) -> str | None:
    """The endpoint a client of a model `serving` serves takes from the environment when a config gives no api_base
    (the first of `_set_endpoints`, LiteLLM's order: OPENAI_BASE_URL before OPENAI_API_BASE); None: its own."""
    return next(iter(_set_endpoints(serving, environ)), None)


@dataclass(frozen=True)
class KeyRoute:
    """Where a config's key goes, decided before any call: the variable that holds it (None: no key), the endpoints
    it is sent to (the api_base values, else those the environment gives the client: `given_by` names the first such
    variable), and either the refusal, with what would fix it, or the warnings it is sent with."""

    env: str | None
    endpoints: tuple[str, ...]
    owner: str | None = None  # the provider whose key the variable is (None: a name of one's own, nobody's)
    refusal: Refusal | None = None
    warnings: tuple[Destination, ...] = ()
    given_by: str | None = None
    own: str | None = None  # the variable the model's key is read from when api_key_env is unset
    theirs_variable: str = ""  # the variable that holds the key of the provider whose endpoint it is
    model_is_theirs: bool = False  # the model's calls go to that provider (the api_key_env named is the wrong one)


def key_route(model: str, named: str | None, api_bases: Sequence[str], environ: Mapping[str, str]) -> KeyRoute:
    """The route of the key of a config's section (`model`, its api_key_env `named`, its `api_bases`) in the
    environment `environ`: refused when it would reach an endpoint that is not its provider's (`key_refusal`), else
    warned for each endpoint to look at (a gateway, plain http; with none given, the provider's own)."""
    serving = provider_for(model)
    env = _key_variable(serving, model, named, environ)
    endpoints = tuple(api_bases) or tuple(_set_endpoints(serving, environ))
    owner = key_provider(env) if env else None
    refusal = key_refusal(env, model, endpoints) or sent_when_set_refusal(model, endpoints, environ)
    if refusal is None:
        reached = endpoints or key_destinations(model)
        proxied = [d for url in reached if owner and (d := plain_proxy(url, environ)) is not None]
        return KeyRoute(env, endpoints, owner, warnings=(*key_warnings(env, reached), *proxied))
    given = [n for n in serving.endpoint_variables if environ.get(n, "").strip() in endpoints] if not api_bases else []
    return KeyRoute(
        env,
        endpoints,
        owner,
        refusal=refusal,
        given_by=given[0] if endpoints and given else None,
        own=_key_variable(serving, model, None, environ),
        theirs_variable=variable_of(refusal.endpoint_owner),
        model_is_theirs=routed_provider(model) == refusal.endpoint_owner,
    )


def sent_when_set_refusal(model: str, endpoints: Sequence[str], environ: Mapping[str, str]) -> Refusal | None:
    """The refusal for a credential `model`'s client sends by itself when it is set (`SENT_WHEN_SET`: whatever key the
    config names, none included) that would reach an endpoint that is not its provider's (`endpoints`, or a host the
    environment names for it); None otherwise, and where no endpoint is named (the client sends it nowhere then)."""
    sent, with_, hosts = SENT_WHEN_SET.get(provider_of(model), SentWhenSet((), (), ()))
    reached = [*endpoints, *(environ[h].strip() for h in hosts if environ.get(h, "").strip())]
    set_ = [n for n in sent if all(environ.get(v, "").strip() for v in (n, *with_))]
    return next((r for n in set_ if reached and (r := key_refusal(n, model, reached))), None)


def sent_by_itself(refusal: Refusal, who: str, fix: str) -> KeyProviderError:
    """The refusal of a credential `who` (a section, an LM) would send by itself (`sent_when_set_refusal`), one line
    ending in `fix` (what else to do than unset it)."""
    return KeyProviderError(
        f"{who} sends ${refusal.env} ({refusal.owner}'s credential, sent whenever it is set) to {refusal.where} "
        f"({refusal.why}): refused before any call; unset ${refusal.env}{fix}"
    )


def _proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxies `environ` sets, by scheme (`no`: the hosts none is used for), read as urllib reads them for the
    clients that send refed's requests (its getproxies_environment): any spelling, then a lower-case variable over
    it (an empty one unsets it), HTTP_PROXY not taken under CGI (REQUEST_METHOD)."""
    found: dict[str, str] = {}
    for name, value in environ.items():
        if value and name.lower().endswith("_proxy"):
            found[name.lower().removesuffix("_proxy")] = value.strip()
    if "REQUEST_METHOD" in environ:
        found.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            scheme = name.lower().removesuffix("_proxy")
            if value:
                found[scheme] = value.strip()
            else:
                found.pop(scheme, None)
    return found


def plain_proxy(url: str, environ: Mapping[str, str]) -> Destination | None:
    """The warning for a key sent over plain http to a private endpoint through a proxy at a public address
    (`HTTP_PROXY` or `ALL_PROXY` over http, the endpoint not in `NO_PROXY`): the key crosses the network unencrypted
    on its way to the proxy. None otherwise (a public endpoint over plain http is warned for itself)."""
    scheme, written, names = url_hosts(url)
    if scheme != "http" or not names or not all(is_private_host(h) for h in names):
        return None
    proxies = _proxies(environ)
    proxy = proxies.get("http") or proxies.get("all") or ""
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    host = host_of(proxy)
    if not host or not proxy.lower().startswith("http://") or is_private_host(host):
        return None
    if proxy_bypass_environment(written, {"no": proxies.get("no", "")}):
        return None
    why = f"over plain http, through the proxy {host} (not a private address): the key crosses the network unencrypted"
    return Destination("warn", written, None, why)


class KeyedSection(Protocol):
    """What the key of an LM section (refed_dspy.config.lm.LMSpec) is decided from."""

    model: str
    api_key_env: str | None

    @property
    def endpoints(self) -> Sequence[str]: ...


def check_key_goes_to_its_provider(spec: KeyedSection, role: str) -> str | None:
    """KeyProviderError, one line naming the variable, the host and the fix, when `spec`'s key (its api_key_env, or
    the variable it follows from the model) would reach another provider's endpoint (`key_route`); else the
    variable (LMSpec.key_variable; None when no key is needed), with a warning line for each endpoint to look at.
    Reads no key."""
    route = key_route(spec.model, spec.api_key_env, spec.endpoints, os.environ)
    refusal = route.refusal
    if refusal is None:
        warn_route(route, role)
        return route.env
    if refusal.env != route.env:  # not the key: a credential its client sends by itself (SENT_WHEN_SET)
        fix = f" for this run, or point {role}.api_base at {refusal.owner}'s endpoint"
        raise sent_by_itself(refusal, f"{role}: '{spec.model}'", fix)
    named, theirs = spec.api_key_env, refusal.endpoint_owner
    if named and route.model_is_theirs:
        fix = f"leave {role}.api_key_env unset to use ${route.own}, the key this model needs, or name a variable that "
        fix += f"holds {theirs}'s key"
    else:
        fix = f'set {role}.api_key_env = "{route.theirs_variable}" (or another variable that holds {theirs}\'s key)'
    if named:
        said = f"{role}.api_key_env = {named!r} is {refusal.owner}'s key, but '{spec.model}' sends its key to"
    else:
        said = f"{role}: '{spec.model}' sends its key, ${route.env} ({refusal.owner}'s), to"
    where = f"{refusal.where} ({refusal.why})"
    if route.given_by:
        where += f", the endpoint ${route.given_by} gives the client (no api_base is set)"
    raise KeyProviderError(f"{said} {where}: refused before any call; {fix}")


def check_key(spec: KeyedSection, role: str) -> str | None:
    """Return the API key for `spec` (held for masking), raising KeyProviderError when it would reach another
    provider's endpoint, MissingKeyError when its variable is unset."""
    env = check_key_goes_to_its_provider(spec, role)
    if env is None:
        return None
    if env in SIGNED_WITH:
        raise KeyProviderError(
            f"{role}.api_key_env = {env!r} is the secret AWS signs requests with, never sent as a key: leave "
            f"{role}.api_key_env unset ('{spec.model}' signs with it), or name a variable that holds an API key"
        )
    key = os.environ.get(env)
    # a provider's name mistyped ('opneai/...') would otherwise ask for $OPNEAI_API_KEY
    typo = unknown_prefix(spec.model) if not key and not spec.api_base else None
    if typo is not None:
        raise MissingKeyError(f"{role}.model = '{spec.model}': {typo}; fix {role}.model (no LM call was made)")
    if not key:
        raise MissingKeyError(
            f"the {role} model '{spec.model}' needs an API key in ${env}, which is not set: "
            f'run `export {env}=...` (or set {role}.api_key_env to another variable, or to "" for a server without keys)'
        )
    hold(key, env)
    return key


def unknown_prefix(model: str) -> str | None:
    """Why `model`'s provider prefix is one that neither LiteLLM's table nor a provider of refed's knows, with the
    nearest known one ('opneai/gpt-4o-mini'); None when it is known or the model has none (OpenAI's)."""
    prefix = provider_of(model)
    if "/" not in model or prefix in LITELLM_PROVIDERS or PROVIDERS.for_prefix(prefix) is not None:
        return None
    if not re.fullmatch(r"[a-z0-9_]+", prefix):  # an organisation's model name (meta-llama/..., Qwen/...)
        return None
    near = difflib.get_close_matches(prefix, sorted(LITELLM_PROVIDERS), n=1, cutoff=0.6)
    own = f"a model a server of yours serves is openai/{model} with that server's api_base"
    return f"'{prefix}' is no provider LiteLLM knows" + (
        f"; did you mean '{near[0]}/{model.split('/', 1)[1]}'? ({own})" if near else f" ({own})"
    )


def warn_route(route: KeyRoute, role: str) -> None:
    """A warning line (once) for each endpoint of `route` to look at."""
    for found in route.warnings:
        warn_once(route.env or "", route.owner, found, role)


def warn_once(env: str, owner: str | None, found: Destination, role: str | None = None) -> None:
    """One warning line for the key in `env` (provider `owner`'s) going to `found.host` (said once per variable and
    host in a process)."""
    with _lock:
        if (env, found.host) in _warned:
            return
        _warned.add((env, found.host))
    who = f"{role}: " if role else ""
    log.warning("%s$%s (%s's key) goes to %s: %s", who, env, owner, found.host, found.why)
