"""Which environment variable holds an LM's key, and where that key may go.

The variable: the config's `api_key_env`; else `<PROVIDER>_API_KEY` when it is set; else the one LiteLLM reads for the
model's provider (refed_dspy.providers.litellm_table, a table of LiteLLM's: no import of LiteLLM), which also names the
variable to set when none is.

Where the key goes: a key goes only to its own provider's hosts. The variable's provider (by its name: OPENAI_API_KEY
is openai's, AZURE_OPENAI_API_KEY azure's; a name of one's own, MY_VLLM_KEY, is nobody's) is checked against every
endpoint the key is sent to (each api_base; with none, the endpoint the environment gives the model's client,
OPENAI_BASE_URL and kin, else the provider's own endpoint), each host as the resolver reads it: a known provider's key
to another known provider's endpoint, or to a host that only looks like one, is refused before any call
(refed_dspy.providers.hosts.key_refusal, said here for an LM built from a config (`check_key_goes_to_its_provider`,
`check_key`) and for an LM object a user hands in or a logged program carries (`check_lm_key`)); a public host refed
does not know, or plain http, gets one warning line. Loopback and private hosts take any key. This is the early word,
before a run dir is made; the guarantee is the HTTP layer's, which checks every request as it leaves
(refed_dspy.clients.destination).

Every key read here is held for masking (refed_dspy.secrets): a provider that quotes it back never gets it printed.
"""

from __future__ import annotations

import os
from typing import Any

from refed_dspy.clients.destination import warn_once
from refed_dspy.clients.endpoints import endpoint_of
from refed_dspy.config.lm import LMSpec
from refed_dspy.errors import KeyProviderError, MissingKeyError
from refed_dspy.providers.base import provider_of
from refed_dspy.providers.hosts import (
    default_host,
    family,
    key_refusal,
    key_warnings,
    provider_key_names,
    routed_provider,
)
from refed_dspy.providers.litellm_table import KEY_VARIABLES
from refed_dspy.providers.registry import provider_for
from refed_dspy.secrets import hold, is_credential_name, is_secret_value


def _own_variable(provider: str, names: tuple[str, ...]) -> str:
    own = f"{provider.upper()}_API_KEY"
    return own if own in names or not names else names[-1]


def api_key_env(spec: LMSpec) -> str | None:
    """The environment variable that must hold this spec's key, or None when no key is needed."""
    if spec.api_key_env is not None:
        return spec.api_key_env or None
    provider = provider_of(spec.model)
    if provider_for(spec.model).keyless:  # a local server (LiteLLM asks it for an address, which api_base gives)
        return None
    own = f"{provider.upper()}_API_KEY"
    if os.environ.get(own):
        return own  # the usual name is set
    names = provider_key_names(spec.model)
    set_names = [n for n in names if os.environ.get(n)]
    if set_names:
        return set_names[0]
    return _own_variable(provider, names)


def _variable_of(provider: str) -> str:
    """The variable a provider's key is usually read from (GROQ_API_KEY, TOGETHERAI_API_KEY)."""
    return _own_variable(family(provider), KEY_VARIABLES.get(family(provider), ()))


def check_key_goes_to_its_provider(spec: LMSpec, role: str) -> str | None:
    """KeyProviderError, one line naming the variable, the host and the fix, when `spec`'s key (its api_key_env, or
    the variable it follows from the model) would reach another provider's endpoint (`key_refusal`); else the
    variable (`api_key_env`; None when no key is needed). Reads no key."""
    named = spec.api_key_env
    env = api_key_env(spec)
    endpoints = spec.endpoints or env_endpoints(spec.model)
    refusal = key_refusal(env, spec.model, endpoints)
    if refusal is None:
        _warn(env, spec.model, endpoints, role)
        return env
    theirs = refusal.endpoint_owner
    if named and routed_provider(spec.model) == theirs:
        own = api_key_env(spec.model_copy(update={"api_key_env": None}))
        fix = f"leave {role}.api_key_env unset to use ${own}, the key this model needs, or name a variable that holds "
        fix += f"{theirs}'s key"
    else:
        fix = f'set {role}.api_key_env = "{_variable_of(theirs)}" (or another variable that holds {theirs}\'s key)'
    if named:
        said = f"{role}.api_key_env = {named!r} is {refusal.owner}'s key, but '{spec.model}' sends its key to"
    else:
        said = f"{role}: '{spec.model}' sends its key, ${env} ({refusal.owner}'s), to"
    where = f"{refusal.where} ({refusal.why})" + _from_environment(spec, endpoints)
    raise KeyProviderError(f"{said} {where}: refused before any call; {fix}")


def env_endpoints(model: str) -> list[str]:
    """The endpoints the environment gives `model`'s client when a config gives no api_base (OPENAI_BASE_URL and
    OPENAI_API_BASE for openai/, ANTHROPIC_BASE_URL, AZURE_OPENAI_ENDPOINT, DSPy's `<PREFIX>_API_BASE`): each set one
    counts, since the client that reads it is not known here."""
    names = (
        provider_for(model).endpoint_variables if "/" in model else provider_for(f"openai/{model}").endpoint_variables
    )
    return [os.environ[name].strip() for name in names if os.environ.get(name, "").strip()]


def _from_environment(spec: LMSpec, endpoints: list[str]) -> str:
    """', set by $OPENAI_BASE_URL' where the endpoint refused comes from the environment, not the config."""
    if spec.endpoints or not endpoints:
        return ""
    names = provider_for(spec.model).endpoint_variables
    found = [name for name in names if os.environ.get(name, "").strip() in endpoints]
    return f", the endpoint ${found[0]} gives the client (no api_base is set)" if found else ""


def _warn(env: str | None, model: str, endpoints: list[str], role: str) -> None:
    """One warning line for each endpoint the key may go to but that should be looked at (a gateway, plain http)."""
    if not endpoints:
        provider = routed_provider(model)
        host = default_host(provider) if provider else None
        endpoints = [f"https://{host}"] if host else []
    for found in key_warnings(env, endpoints):
        warn_once(env or "", found, role)


def check_key(spec: LMSpec, role: str) -> str | None:
    """Return the API key for `spec` (held for masking), raising KeyProviderError when it would reach another
    provider's endpoint, MissingKeyError when its variable is unset."""
    env = check_key_goes_to_its_provider(spec, role)
    if env is None:
        return None
    key = os.environ.get(env)
    if not key:
        raise MissingKeyError(
            f"the {role} model '{spec.model}' needs an API key in ${env}, which is not set: "
            f'run `export {env}=...` (or set {role}.api_key_env to another variable, or to "" for a server without keys)'
        )
    hold(key, env)
    return key


def check_lm_key(lm: Any, role: str, env: str | None = None) -> None:
    """The check of `check_key_goes_to_its_provider` for an LM object (a user's dspy.LM, a logged program's LM): its
    key's variable `env`, else found by value (`key_env_of`; with no inline key, the variable its provider's client
    reads, when set), its endpoint its api_base (or the provider's own). KeyProviderError when refused; its key is held
    for masking either way. An LM that carries no key, or one held in no variable, is not placed and passes."""
    kwargs = getattr(lm, "kwargs", None) or {}
    key = kwargs.get("api_key")
    hold(key)
    model = getattr(lm, "model", None)
    if not isinstance(model, str) or not model:
        return
    if env is None:
        env = key_env_of(lm) if isinstance(key, str) and key else _provider_variable_set(model)
    if env:
        hold(key, env)
    base = endpoint_of(lm)
    endpoints = [base] if isinstance(base, str) and base else env_endpoints(model)
    refusal = key_refusal(env, model, endpoints)
    if refusal is None:
        _warn(env, model, endpoints, role)
        return
    theirs = refusal.endpoint_owner
    raise KeyProviderError(
        f"{role}: the LM '{model}' sends ${refusal.env} ({refusal.owner}'s key) to {refusal.where} ({refusal.why}): "
        f'refused before any call; give it {theirs}\'s key (api_key=os.environ["{_variable_of(theirs)}"]) '
        f"or an api_base of {refusal.owner}'s"
    )


def _provider_variable_set(model: str) -> str | None:
    """The variable an LM without an inline key takes its key from (its provider's client reads it), when it is set
    here: the only case where a key is sent."""
    provider = provider_of(model)
    if provider_for(model).keyless:
        return None
    names = (f"{provider.upper()}_API_KEY", *KEY_VARIABLES.get(provider, ()))
    return next((name for name in names if os.environ.get(name)), None)


def key_env_of(lm: Any) -> str | None:
    """Where the key of an LM object comes from, as a config's api_key_env says it: the environment variable whose
    value it holds; "" for a placeholder (a server that needs no key); None when unknown (no inline key: the
    provider's variable; an inline secret held in no variable)."""
    key = (getattr(lm, "kwargs", None) or {}).get("api_key")
    if not isinstance(key, str) or not key:
        return None
    for name, value in os.environ.items():
        if value == key and is_credential_name(name):
            return name
    return "" if not is_secret_value(key) else None  # a placeholder ("EMPTY", "unused"): a server that checks none
