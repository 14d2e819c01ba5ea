"""An LM section's key: which environment variable holds it, read and held for masking, and whether it may go where
the section sends it, said in the config's terms. The LM objects' own keys are checked likewise by
refed_dspy.clients.destination (`check_lm_key`), which also checks every request as it leaves.

The variable: the config's `api_key_env`; else `<PROVIDER>_API_KEY` when it is set; else the one LiteLLM reads for the
model's provider (refed_dspy.providers.litellm_table, a table of LiteLLM's: no import of LiteLLM), which also names the
variable to set when none is. Which variable, which endpoints and whether the key may go there is one pure decision of
refed_dspy.providers.hosts (`key_route`, over the environment's names and endpoints); this module reads the key, and
says the refusal and the warnings.

Where the key goes: a key goes only to its own provider's hosts. The variable's provider (by its name: OPENAI_API_KEY
is openai's, AZURE_OPENAI_API_KEY azure's; a name of one's own, MY_VLLM_KEY, is nobody's) is checked against every
endpoint the key is sent to (each api_base; with none, the endpoint the environment gives the model's client,
OPENAI_BASE_URL and kin, else the provider's own endpoint), each host as the resolver reads it: a known provider's key
to another known provider's endpoint, or to a host that only looks like one, is refused before any call
(`check_key_goes_to_its_provider`, `check_key`); a public host refed does not know, or plain http, gets one warning
line (`warn_once`: once per variable and host in a process, whether said here or as a request leaves). Loopback and
private hosts take any key. This is the early word, before a run dir is made; the guarantee is the HTTP layer's, which
checks every request as it leaves (refed_dspy.clients.destination).

Every key read here is held for masking (refed_dspy.secrets): a provider that quotes it back never gets it printed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Protocol

from refed_dspy.errors import KeyProviderError, MissingKeyError
from refed_dspy.providers.hosts import Destination, KeyRoute, key_route
from refed_dspy.secrets import hold

log = logging.getLogger(__name__)
_lock = threading.Lock()
_warned: set[tuple[str, str]] = set()  # (variable, host) pairs already warned about in this process


class KeyedSection(Protocol):
    """What the key of an LM section (refed_dspy.config.lm.LMSpec) is decided from."""

    model: str
    api_key_env: str | None

    @property
    def endpoints(self) -> Sequence[str]: ...


def check_key_goes_to_its_provider(spec: KeyedSection, role: str) -> str | None:
    """KeyProviderError, one line naming the variable, the host and the fix, when `spec`'s key (its api_key_env, or
    the variable it follows from the model) would reach another provider's endpoint (`key_route`); else the
    variable (LMSpec.key_variable; None when no key is needed), with a warning line for each endpoint to look at. Reads no
    key."""
    route = key_route(spec.model, spec.api_key_env, spec.endpoints, os.environ)
    refusal = route.refusal
    if refusal is None:
        warn_route(route, role)
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


def check_key(spec: KeyedSection, role: str) -> str | None:
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
