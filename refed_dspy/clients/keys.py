"""Which environment variable holds an LM's key, and where that key may go.

The variable: the config's `api_key_env`; else `<PROVIDER>_API_KEY` when it is set; else the one LiteLLM reads for the
model's provider (refed_dspy.providers.litellm_table, a table of LiteLLM's: no import of LiteLLM), which also names the
variable to set when none is. Which variable, which endpoints and whether the key may go there is one pure decision of
refed_dspy.providers.hosts (`key_route`, over the environment's names and endpoints); this module reads the key, and
says the refusal and the warnings in the config's terms.

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
from refed_dspy.providers.hosts import KeyRoute, key_route, key_variable, provider_variable_set
from refed_dspy.secrets import hold, is_credential_name, is_secret_value


def api_key_env(spec: LMSpec) -> str | None:
    """The environment variable that must hold this spec's key, or None when no key is needed."""
    return key_variable(spec.model, spec.api_key_env, os.environ)


def check_key_goes_to_its_provider(spec: LMSpec, role: str) -> str | None:
    """KeyProviderError, one line naming the variable, the host and the fix, when `spec`'s key (its api_key_env, or
    the variable it follows from the model) would reach another provider's endpoint (`key_route`); else the
    variable (`api_key_env`; None when no key is needed), with a warning line for each endpoint to look at. Reads no
    key."""
    route = key_route(spec.model, spec.api_key_env, spec.endpoints, os.environ)
    refusal = route.refusal
    if refusal is None:
        _warn(route, role)
        return route.env
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
        env = key_env_of(lm) if isinstance(key, str) and key else provider_variable_set(model, os.environ)
    if not env:  # nobody's key (none, or one held in no variable): not placed
        return
    hold(key, env)
    base = endpoint_of(lm)
    route = key_route(model, env, [base] if isinstance(base, str) and base else [], os.environ)
    refusal = route.refusal
    if refusal is None:
        _warn(route, role)
        return
    raise KeyProviderError(
        f"{role}: the LM '{model}' sends ${refusal.env} ({refusal.owner}'s key) to {refusal.where} ({refusal.why}): "
        f"refused before any call; give it {refusal.endpoint_owner}'s key "
        f'(api_key=os.environ["{route.theirs_variable}"]) or an api_base of {refusal.owner}\'s'
    )


def _warn(route: KeyRoute, role: str) -> None:
    for found in route.warnings:
        warn_once(route.env or "", route.owner, found, role)


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
