"""Which environment variable holds an LM's key: the config's `api_key_env`; else `<PROVIDER>_API_KEY` when it is set;
else the one LiteLLM names for the model's provider (its own table, read without touching the environment), which
also names the variable to set when none is.

A key goes only to its own provider: a config whose `api_key_env` names another provider's variable (by LiteLLM's
provider list: `OPENAI_API_KEY` is OpenAI's) for a model whose calls go to its own provider's endpoint (no `api_base`,
or the provider's known host) is refused before the key is read (`check_key_goes_to_its_provider`)."""

from __future__ import annotations

import functools
import os
import re
import types
from typing import Any
from urllib.parse import urlsplit

from refed_dspy.clients.spec import LMSpec, provider_of
from refed_dspy.clients.wire import default_base
from refed_dspy.errors import KeyProviderError, MissingKeyError

# local servers: no key (LiteLLM asks them for an address, OLLAMA_API_BASE, which api_base gives)
KEYLESS_PROVIDERS = ("ollama", "ollama_chat", "lm_studio", "hosted_vllm")


@functools.lru_cache(maxsize=512)
def provider_key_names(model: str) -> tuple[str, ...]:
    """The variables LiteLLM reads `model`'s key from, whether they are set here or not: its validate_environment,
    run against an empty environment (a copy of its globals; the process's environment is not touched)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List" banner on stdout for a provider it does not know
    check = litellm.validate_environment
    try:
        empty = types.ModuleType("os")
        empty.__dict__.update(os.__dict__)
        empty.environ = {}  # type: ignore[attr-defined]
        unset = types.FunctionType(
            check.__code__, {**check.__globals__, "os": empty}, check.__name__, check.__defaults__, check.__closure__
        )
        unset.__kwdefaults__ = check.__kwdefaults__
        missing = unset(model).get("missing_keys") or []
    except Exception:  # noqa: BLE001 - LiteLLM changed: the fallback name below
        missing = []
    return tuple(name for name in missing if name.endswith(("_KEY", "_TOKEN")))


def api_key_env(spec: LMSpec) -> str | None:
    """The environment variable that must hold this spec's key, or None when no key is needed."""
    if spec.api_key_env is not None:
        return spec.api_key_env or None
    provider = provider_of(spec.model)
    if provider in KEYLESS_PROVIDERS:
        return None
    own = f"{provider.upper()}_API_KEY"
    if os.environ.get(own):
        return own  # the usual name is set: no need to ask LiteLLM (importing it takes seconds)
    names = provider_key_names(spec.model)
    set_names = [n for n in names if os.environ.get(n)]
    if set_names:
        return set_names[0]
    return own if own in names or not names else names[-1]


# the hosts of providers' own endpoints (a name starting with "." is a domain): an api_base there is the provider's
PROVIDER_HOSTS = {
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
_KEY_SUFFIX = re.compile(r"(_API)?_(KEY|TOKEN)$")


@functools.lru_cache(maxsize=64)
def key_provider(env: str) -> str | None:
    """The provider whose key variable `env` is, by its name (`<PROVIDER>_API_KEY`, `_KEY` or `_TOKEN`, the provider
    spelled as in LiteLLM's provider list, underscores aside: TOGETHERAI_API_KEY is together_ai's); None when it
    names no provider LiteLLM knows (a name of your own, AZURE_OPENAI_API_KEY)."""
    stem = _KEY_SUFFIX.sub("", env.upper())
    if stem == env.upper():
        return None
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import litellm

    compact = stem.replace("_", "")
    for item in litellm.provider_list:
        name = str(getattr(item, "value", item))
        if name.replace("_", "").upper() == compact:
            return name
    return None


def _same_hosts(owner: str, provider: str, model: str) -> bool:
    """The key's provider serves the model's provider's own endpoint: one family of model prefixes
    (text-completion-openai/... is OpenAI's), or the host the model's calls go to by default is the key's provider's."""
    if owner in provider.replace("-", "_").split("_"):
        return True
    base = default_base(f"{provider}/{model.split('/', 1)[-1]}")
    host = (urlsplit(base).hostname or "").lower() if base else ""
    hosts = PROVIDER_HOSTS.get(owner, ())
    return bool(host) and any(host == h or (h.startswith(".") and host.endswith(h)) for h in hosts)


def _providers_endpoint(spec: LMSpec) -> str | None:
    """Where `spec`'s calls go when that is its provider's own endpoint (no api_base, or one at the provider's known
    host): the URL, or the provider's name; None for an endpoint of its own (a proxy, a local server)."""
    provider, base = provider_of(spec.model), default_base(spec.model)
    if not spec.endpoints:
        return f"{provider}'s endpoint" + (f" ({base})" if base else "")
    hosts = PROVIDER_HOSTS.get(provider, ())
    for url in spec.endpoints:
        host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower()
        if any(host == h or (h.startswith(".") and host.endswith(h)) for h in hosts):
            return url
    return None


def routed_provider(model: str) -> str | None:
    """The provider LiteLLM sends `model`'s calls to: its prefix, or for a bare name LiteLLM's own placing of it
    ('claude-3-5-haiku-20241022' is Anthropic's, not OpenAI's); None for a bare name it cannot place."""
    if "/" in model:
        return provider_of(model)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List" banner for a name it cannot place
    try:
        return str(litellm.get_llm_provider(model)[1]) or None
    except Exception:  # noqa: BLE001 - a name LiteLLM cannot place
        return None


def check_key_goes_to_its_provider(spec: LMSpec, role: str) -> None:
    """KeyProviderError when `spec.api_key_env` names another provider's key and the model's calls go to its own
    provider's endpoint (see the module docstring); nothing otherwise. Refused only when that is certain: the key's
    provider is one whose hosts are known (PROVIDER_HOSTS) and the calls go elsewhere; a key of a provider of the same
    hosts (OPENAI_API_KEY for text-completion-openai/...) or of one refed does not place passes."""
    env = spec.api_key_env
    if not env or (provider_of(spec.model) in KEYLESS_PROVIDERS):
        return
    provider = routed_provider(spec.model)
    if provider is None or env == f"{provider.upper()}_API_KEY":
        return  # the usual name (and no need to import LiteLLM for it)
    owner = key_provider(env)
    if owner is None or owner == provider or owner not in PROVIDER_HOSTS or env in provider_key_names(spec.model):
        return
    if _same_hosts(owner, provider, spec.model):
        return
    endpoint = _providers_endpoint(spec)
    if endpoint is None:
        return
    own = api_key_env(spec.model_copy(update={"api_key_env": None}))
    instead = f"leave {role}.api_key_env unset to use ${own}, the key this model needs" if own else "unset it"
    raise KeyProviderError(
        f"{role}.api_key_env = {env!r} is {owner}'s key, but '{spec.model}' sends its key to {endpoint}: refused "
        f"before any call; {instead}, or name a variable that holds {provider}'s key"
    )


def check_key(spec: LMSpec, role: str) -> str | None:
    """Return the API key for `spec`, raising KeyProviderError when it names another provider's key for this
    provider's endpoint, MissingKeyError when its variable is unset."""
    check_key_goes_to_its_provider(spec, role)
    env = api_key_env(spec)
    if env is None:
        return None
    key = os.environ.get(env)
    if not key:
        raise MissingKeyError(
            f"the {role} model '{spec.model}' needs an API key in ${env}, which is not set: "
            f'run `export {env}=...` (or set {role}.api_key_env to another variable, or to "" for a server without keys)'
        )
    return key


# an inline key this short is a placeholder for a server that checks none ("unused", "EMPTY", "none"), not a secret
_PLACEHOLDER_KEY_LEN = 16


def key_env_of(lm: Any) -> str | None:
    """Where the key of an LM object comes from, as a config's api_key_env says it: the environment variable whose
    value it holds; "" for a placeholder (a server that needs no key); None when unknown (no inline key: the
    provider's variable; an inline secret held in no variable)."""
    key = (getattr(lm, "kwargs", None) or {}).get("api_key")
    if not isinstance(key, str) or not key:
        return None
    for name, value in os.environ.items():
        if value == key and name.endswith(("_KEY", "_TOKEN")):
            return name
    return "" if len(key) < _PLACEHOLDER_KEY_LEN else None
