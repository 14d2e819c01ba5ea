"""Which environment variable holds an LM's key: the config's `api_key_env`; else `<PROVIDER>_API_KEY` when it is set;
else the one LiteLLM names for the model's provider (its own table, read without touching the environment), which
also names the variable to set when none is."""

from __future__ import annotations

import functools
import os
import types
from typing import Any

from refed_dspy.clients.spec import LMSpec, provider_of
from refed_dspy.errors import MissingKeyError

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


def check_key(spec: LMSpec, role: str) -> str | None:
    """Return the API key for `spec`, raising MissingKeyError when its variable is unset."""
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
