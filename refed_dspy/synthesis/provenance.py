"""What a run executes, as it will be recorded: the teacher taken from the LM object itself, and a
program's content hash.

A teacher LM or a program passed in from Python decides what a run produces as much as the config
does, so both enter the run's fingerprint, config.toml, the summary and every record's `meta`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from refed_dspy.clients.keys import key_env_of
from refed_dspy.config import Config

# The LM settings that change what a teacher writes, as dspy.LM keeps them (lm.kwargs), and their config fields.
_LM_FIELDS = ("temperature", "max_tokens")


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
    """{model, api_base, temperature, max_tokens} of a dspy.LM (what it will really call), None where unknown."""
    kwargs = getattr(lm, "kwargs", None) or {}
    out: dict[str, Any] = {
        "model": getattr(lm, "model", None),
        "api_base": kwargs.get("api_base") or kwargs.get("base_url"),
    }
    for name in _LM_FIELDS:
        out[name] = kwargs.get(name)
    if out["max_tokens"] is None:
        out["max_tokens"] = kwargs.get("max_completion_tokens")
    return out


def with_lm_of(config: Config, role: str, lm: Any) -> Config:
    """`config` with its `role`'s ("teacher", "judge") model, api_base, temperature, max_tokens and key variable
    taken from the LM object that will really run, so that the fingerprint, config.toml, the price, the records and
    a logged program name that LM and not the config's."""
    spec = getattr(config, role)
    built = getattr(lm, "refed_spec", None)
    if built is not None and built.model_dump() == spec.model_dump():
        return config  # built from this very config (build_lm): the config already says what it is
    who = lm_identity(lm)
    update: dict[str, Any] = {}
    if who["model"] and who["model"] != spec.model:
        update["model"] = who["model"]
    if who["api_base"] != spec.primary_api_base:
        update["api_base"] = who["api_base"]
    for name in _LM_FIELDS:
        if who[name] is not None and who[name] != getattr(spec, name):
            update[name] = who[name]
    key_env = key_env_of(lm)
    if key_env is not None and key_env != spec.api_key_env:
        update["api_key_env"] = key_env
    if not update:
        return config
    return config.model_copy(update={role: spec.model_copy(update=update)})
