"""Which program a synthesis run executes, and how it is named in the run's provenance.

One of: the built-in pipeline of the method; a compiled program named by `synthesis.program` (a file or an
MLflow URI); or a DSPy module passed from Python, either a whole pipeline (`program=`) or only its
per-instruction part (`respond=`). Every program but the built-in one enters the run's fingerprint by its
content hash, so a run dir is never continued by another program without being told to.

Where a compiled program came from (`program_origin`), when an experiment made it: the experiment, its dir and the
cell, and the cell's test figures. Read once, when a run loads the program (`synthesis.program`), from the
registered model version's tags (`models:/NAME@ALIAS` or `models:/NAME/VERSION`: refed tags a champion's version) or
from the experiment dir a `cells/<id>/optimize/program.json` sits in; the run's summary keeps it, and an export's
dataset card says it. None for any other program.

What a run executes, as it is recorded (its provenance: `with_lm_of`, `program_hash`): the teacher taken from the LM
object itself, and a program's content hash. A teacher LM or a program passed in from Python decides what a run
produces as much as the config does, so both enter the run's fingerprint, config.toml, the summary and every
record's `meta`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.clients.destination import check_lm_key, endpoint_of, key_env_of, told_of
from refed_dspy.config import Config
from refed_dspy.config.lm import reserved_extra_keys
from refed_dspy.config.section import SECRET_NAME
from refed_dspy.errors import ConfigError
from refed_dspy.methods import Method
from refed_dspy.programs.parts import check_pipeline, with_open_parts
from refed_dspy.programs.saved import PYTHON_SCHEME, load_program
from refed_dspy.providers.prices import SERVICE_TIERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunProgram:
    """The pipeline a run executes. `identity`: where it came from; `hash`: its content; `builtin`: the method's own."""

    program: dspy.Module
    identity: str
    hash: str
    builtin: bool
    threaded: tuple[str, ...] = ()  # parts with no aforward, run in worker threads
    origin: dict | None = None  # the experiment and cell that made it (synthesis.program_origin)

    @property
    def fingerprint_hash(self) -> str | None:
        """What the run's fingerprint holds: the hash of any program but the built-in one."""
        return None if self.builtin else self.hash


def resolve_program(
    config: Config, method: Method, program: dspy.Module | None = None, respond: dspy.Module | None = None
) -> tuple[RunProgram, Config]:
    """The program of this run, checked before any call (an LM pinned to one of its predictors sends its key only to
    its provider's hosts: KeyProviderError), and `config` with `synthesis.program` naming it (`python:<Class>` for an
    object from Python, which config.toml then records)."""

    syn = config.synthesis
    given = [name for name, value in (("program=", program), ("respond=", respond)) if value is not None]
    origin = None
    if len(given) > 1:
        raise ConfigError("give either program= (a whole pipeline) or respond= (its per-instruction part), not both")
    if given and syn.program and not syn.program.startswith(PYTHON_SCHEME):
        raise ConfigError(
            f"{given[0]} and synthesis.program = {syn.program!r} both name the program to run; give one of them"
        )
    if program is not None or respond is not None:
        obj = program if program is not None else respond
        if not isinstance(obj, dspy.Module):
            raise ConfigError(f"{given[0]} takes a DSPy module, not a {type(obj).__name__}")
        pipeline = with_open_parts(program) if program is not None else method.build_pipeline(syn, respond=respond)
        identity = f"{PYTHON_SCHEME}{type(obj).__module__}.{type(obj).__qualname__}"
        builtin = False
        config = config.model_copy(update={"synthesis": syn.model_copy(update={"program": identity})})
    elif syn.program:
        # an MLflow URI resolves against tracking.mlflow_uri whether or not this run is tracked
        pipeline, identity = load_program(syn.program, method, config.tracking.mlflow_uri, syn)
        builtin = False
        origin = program_origin(syn.program, config.tracking.mlflow_uri)
    else:
        pipeline = method.build_pipeline(syn)
        identity = f"refed_dspy.programs.{type(pipeline).__name__}"
        builtin = True
    threaded = check_pipeline(pipeline, method, what=f"program {identity}")
    for name, predictor in pipeline.named_predictors():  # an LM pinned to a predictor: its key, to its own hosts only
        if isinstance(getattr(predictor, "lm", None), dspy.BaseLM):
            check_lm_key(predictor.lm, f"program {identity}: {name}.lm")
    if threaded:
        log.warning(
            "program %s: %s %s no aforward; %s forward runs in worker threads",
            identity,
            " and ".join(threaded),
            "has" if len(threaded) == 1 else "have",
            "its" if len(threaded) == 1 else "their",
        )
    return RunProgram(pipeline, identity, program_hash(pipeline), builtin, tuple(threaded), origin), config


_PREFIX = "refed."


def program_origin(spec: str | None, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The origin of the program `spec` names, or None (not an experiment's, or nothing says so)."""
    if not spec:
        return None
    if spec.startswith("models:/"):
        return _registered(spec, tracking_uri)
    return _from_experiment_dir(Path(spec))


def _registered(uri: str, tracking_uri: str | None) -> dict[str, Any] | None:
    """A registered version's refed tags (a champion's: refed.experiment, refed.experiment.cell, ...)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name_part = uri.removeprefix("models:/")
    try:
        client = MlflowClient(tracking_uri)
        if "@" in name_part:
            name, alias = name_part.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, number = name_part.rsplit("/", 1)
            version = client.get_model_version(name, number)
    except (MlflowException, ValueError, OSError):
        return None
    tags = {k.removeprefix(_PREFIX): v for k, v in (version.tags or {}).items() if k.startswith(_PREFIX)}
    if "experiment" not in tags:
        return None
    return {
        "experiment": tags["experiment"],
        "experiment_dir": tags.get("experiment.dir"),
        "cell": tags.get("experiment.cell"),
        "champion": True,
        "test_score": tags.get("test_score"),
        "test_difference": tags.get("test_difference"),
        "model_version": f"{name}/{version.version}",
    }


def _from_experiment_dir(path: Path) -> dict[str, Any] | None:
    """`<exp>/cells/<id>/optimize/program.json`, where `<exp>/experiment.json` exists: that experiment's cell."""
    path = path.resolve()
    # only the program the cell kept: its test score is that program's (program.candidate.json, a compiled program
    # the cell did not keep, was never tested)
    if path.name != "program.json" or len(path.parents) < 4 or path.parents[2].name != "cells":
        return None
    exp, cell_id = path.parents[3], path.parents[1].name
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, KeyError):  # not one of ours
        result = json.loads((exp / "experiment.json").read_text(encoding="utf-8"))
        row = next((r for r in result.get("cells") or [] if isinstance(r, dict) and r.get("id") == cell_id), {})
        diff = row.get("difference") or {}
        return {
            "experiment": result.get("name"),
            "experiment_dir": str(exp),
            "cell": cell_id,
            "champion": result.get("champion") == cell_id,
            "test_score": None if row.get("test_mean") is None else f"{row['test_mean']:.4f}",
            "test_difference": (
                f"{diff['mean']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]" if diff else None
            ),
        }
    return None


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
    kwargs = told_of(lm)  # its engines' too
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
