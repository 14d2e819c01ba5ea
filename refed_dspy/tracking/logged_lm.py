"""The LM a logged program carries: everything needed to reach the teacher from wherever the model is loaded, and no key.

MLflow's DSPy flavor pickles `dspy.settings` (the LM among them) beside the program. `LoggedLM` is a `dspy.LM` that
keeps the model, the endpoint (`api_base`, `api_version`), the sampling settings and the *name* of the environment
variable holding its key. It never pickles a key: when it is loaded (unpickled: `mlflow.pyfunc.load_model`,
`mlflow.dspy.load_model`, `mlflow models serve`) it reads the key from that variable, and a server that needs none
(`api_key_env = ""`) gets a placeholder. `REFED_API_BASE`, set where it is loaded, points it at another endpoint. The key
it reads goes only to its provider's hosts (refed_dspy.clients.keys.check_lm_key): loading refuses otherwise.
"""

from __future__ import annotations

import os
from typing import Any

import dspy

from refed_dspy.clients.api_base import fit_api_base
from refed_dspy.clients.keys import api_key_env, check_lm_key, key_env_of
from refed_dspy.config.lm import LMSpec

API_BASE_VAR = "REFED_API_BASE"  # set where a logged program is loaded: the endpoint its LM calls instead
NO_KEY = ""  # key_env of a server that needs no key
_SECRETS = ("api_key",)


class LoggedLM(dspy.LM):
    """A dspy.LM that reads its key (and, with REFED_API_BASE, its endpoint) from the environment it is loaded in."""

    key_env: str | None = None  # the variable holding the key; NO_KEY: none needed; None: the provider's default

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["kwargs"] = {k: v for k, v in state.get("kwargs", {}).items() if k not in _SECRETS}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.bind_environment()

    def bind_environment(self) -> LoggedLM:
        """Take the key (and REFED_API_BASE) from this process's environment; returns self. KeyProviderError when that
        key would reach another provider's endpoint."""
        base = os.environ.get(API_BASE_VAR)
        if base:
            self.kwargs["api_base"] = base
        fit_api_base(self)  # in the form this environment's DSPy client takes
        if self.key_env == NO_KEY:
            self.kwargs["api_key"] = "unused"  # OpenAI-compatible clients insist on some key
        elif self.key_env and os.environ.get(self.key_env):
            self.kwargs["api_key"] = os.environ[self.key_env]
        if self.key_env != NO_KEY:
            check_lm_key(self, "the logged program's LM", self.key_env)
        return self

    def dump_state(self) -> dict[str, Any]:
        state = super().dump_state()
        state.pop("api_key", None)
        return state


def logged_lm(spec: LMSpec) -> LoggedLM:
    """The LM to log with a program compiled for `spec`: its model, endpoint, settings (`extra` included; it holds no
    secret) and key variable, no key."""
    kwargs = {k: v for k, v in spec.lm_kwargs().items() if k != "num_retries"}  # DSPy's retries where it is loaded
    lm = fit_api_base(LoggedLM(**kwargs))
    lm.key_env = NO_KEY if spec.api_key_env == NO_KEY else api_key_env(spec)
    return lm


def logged_lm_like(lm: Any) -> LoggedLM:
    """A LoggedLM standing in for an LM object (one a user pinned to a predictor with `set_lm`): its model, endpoint
    and settings, the variable its key comes from (clients.keys.key_env_of; the provider's own when unknown), no key."""
    kwargs = {k: v for k, v in (getattr(lm, "kwargs", None) or {}).items() if k not in _SECRETS}
    out = LoggedLM(str(lm.model), model_type=getattr(lm, "model_type", "chat"), **kwargs)
    out.key_env = key_env_of(lm)
    return out
