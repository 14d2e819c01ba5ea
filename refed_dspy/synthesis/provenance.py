"""What a run executes, as it will be recorded: the teacher taken from the LM object itself, and a
program's content hash.

A teacher LM or a program passed in from Python decides what a run produces as much as the config
does, so both enter the run's fingerprint, config.toml, the summary and every record's `meta`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from refed_dspy.clients.endpoints import endpoint_of
from refed_dspy.clients.keys import key_env_of
from refed_dspy.config import Config
from refed_dspy.config.lm import reserved_extra_keys
from refed_dspy.config.section import SECRET_NAME
from refed_dspy.providers.prices import SERVICE_TIERS

# The LM settings that change what a teacher writes, as dspy.LM keeps them (lm.kwargs), and their config fields.
_LM_FIELDS = ("temperature", "max_tokens")
_PRICE_FIELDS = ("input_usd_per_mtok", "cached_input_usd_per_mtok", "output_usd_per_mtok", "cache_write_usd_per_mtok")


def program_hash(program: Any) -> str:
    """`sha256:<12 hex>` over the program's class and its saved state (each predictor's instructions, fields and
    demos): two programs with the same prompts and demos have the same hash, wherever they were loaded from."""
    state = program.dump_state()
    if isinstance(state, dict):
        state = {k: v for k, v in state.items() if k != "metadata"}  # DSPy's version numbers: not the content
        for value in state.values():
            if isinstance(value, dict):
                value.pop("lm", None)  # an LM pinned to a predictor is provenance of its own, not content
    text = json.dumps({"class": type(program).__name__, "state": state}, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def lm_identity(lm: Any) -> dict[str, Any]:
    """{model, api_base, temperature, max_tokens, reasoning_effort} of a dspy.LM (what it will really call), None
    where unknown."""
    kwargs = getattr(lm, "kwargs", None) or {}
    out: dict[str, Any] = {
        "model": getattr(lm, "model", None),
        "api_base": endpoint_of(lm),
    }
    for name in _LM_FIELDS:
        out[name] = kwargs.get(name)
    if out["max_tokens"] is None:
        out["max_tokens"] = kwargs.get("max_completion_tokens")
    out["reasoning_effort"] = kwargs.get("reasoning_effort")
    return out


def lm_extra(lm: Any) -> dict[str, Any]:
    """The LM's own provider settings beyond the ones an LMSpec names (frequency_penalty, top_p, ...): what `extra`
    records for it. Keys, endpoints and client settings are left out, and so is anything that looks like a secret."""
    kwargs = getattr(lm, "kwargs", None) or {}
    return {k: v for k, v in kwargs.items() if k not in reserved_extra_keys() and not SECRET_NAME.search(k)}


def with_lm_of(config: Config, role: str, lm: Any) -> Config:
    """`config` with its `role` ("teacher", "judge") described by the LM object that will really run, so that the
    fingerprint, config.toml, the price, the records and a logged program name that LM and not the config's section:
    its model, api_base, temperature, max_tokens, reasoning effort, timeout, retries, service tier, key variable and
    extra settings (the LM's own: the section's `extra` is not carried over to an LM that does not have it). Its price
    is that of its own model: the section's prices hold only when the LM runs the model the section names; another
    model takes the
    `[prices]` table's entry for it, else LiteLLM's map. How the run asks it (adapter, schema dialect, repairs) stays
    the config's."""
    spec = getattr(config, role)
    built = getattr(lm, "refed_spec", None)
    if (
        built is not None
    ):  # built by build_lm: its spec is what it is (this config's, or the one the user built it from)
        return config if built.model_dump() == spec.model_dump() else config.model_copy(update={role: built})
    who = lm_identity(lm)
    kwargs = getattr(lm, "kwargs", None) or {}
    model = who["model"] or spec.model
    update: dict[str, Any] = {
        "model": model,
        "api_base": who["api_base"],
        "reasoning_effort": who["reasoning_effort"],
        "extra": lm_extra(lm),
    }
    for name in _LM_FIELDS:
        if who[name] is not None:
            update[name] = who[name]
    if kwargs.get("timeout") is not None:
        update["timeout"] = float(kwargs["timeout"])
    if kwargs.get("api_version") is not None:
        update["api_version"] = kwargs["api_version"]
    if kwargs.get("service_tier") in SERVICE_TIERS:  # the tier it asks for: what its calls are reserved at
        update["service_tier"] = kwargs["service_tier"]
    if isinstance(getattr(lm, "num_retries", None), int):
        update["num_retries"] = lm.num_retries
    key_env = key_env_of(lm)
    if key_env is not None:
        update["api_key_env"] = key_env
    if model != spec.model:  # the section's prices are for its own model
        entry = config.prices.get(model)
        for name in _PRICE_FIELDS:
            update[name] = getattr(entry, name) if entry is not None else None
    new = spec.model_copy(update=update)
    return config if new.model_dump() == spec.model_dump() else config.model_copy(update={role: new})
