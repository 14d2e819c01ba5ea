"""Saving and loading compiled programs (a whole pipeline, or its per-instruction part).

A saved program is DSPy's own state JSON (`Module.save`) with one more top-level key, `refed`:
the resolved config (secrets masked), the optimizer and its settings, the scores and the
program class. Plain DSPy loads it too (`RespondAndImprove().load(path)` ignores the extra key).
A program is loaded from such a file or from an MLflow model URI (`models:/...`, `runs:/...`).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dspy
from pydantic import BaseModel

from refed_dspy.config.section import mask_secrets
from refed_dspy.errors import ConfigError
from refed_dspy.store.jsonl import write_json_atomic

if TYPE_CHECKING:  # a method builds the program a file's state is loaded into; programs/ sits below methods/
    from refed_dspy.methods import Method, SynthesisSettings

FORMAT = 1
MLFLOW_SCHEMES = ("models:/", "runs:/")
PYTHON_SCHEME = "python:"  # config.toml's synthesis.program for a program passed as an object


@contextlib.contextmanager
def keep_active_model() -> Iterator[None]:
    """Restore MLflow's active-model context after the block.

    `log_model` and `load_model` make their model the process's "active model", to which MLflow
    then links every later metric, even of other runs in other stores (a foreign-key error on a
    server that does not hold that model).
    """
    from mlflow.tracking import fluent

    active = getattr(fluent, "_ACTIVE_MODEL_CONTEXT", None)
    before = active.get() if active is not None else None
    try:
        yield
    finally:
        if active is not None:
            active.set(before)


def save_program(program: dspy.Module, path: str | Path, config: BaseModel, info: dict[str, Any]) -> Path:
    """Write `program`'s state with the `refed` block (config, `info` such as optimizer and scores).

    Args:
        program: the program whose state is saved.
        path: the JSON file to write (its folder is created; the file is replaced atomically).
        config: the resolved config, saved with its secrets masked.
        info: further keys of the `refed` block, such as the optimizer, its settings and the scores.

    Returns:
        `path`, as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "state.json"
        program.save(str(raw))
        state = json.loads(raw.read_text(encoding="utf-8"))
    state["refed"] = {
        "format": FORMAT,
        "program": type(program).__name__,
        "config": mask_secrets(config.model_dump(mode="json")),
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **info,
    }
    write_json_atomic(path, state)
    return path


def instructions_text(program: dspy.Module) -> str:
    """Each predictor's instructions and demo count, as readable text.

    Args:
        program: the program whose predictors are described.

    Returns:
        One Markdown section per predictor (a `## name (n demos)` heading and its instructions).
    """
    parts = []
    for name, pred in program.named_predictors():
        parts.append(f"## {name} ({len(pred.demos)} demos)\n\n{pred.signature.instructions.strip()}\n")
    return "\n".join(parts)


def missing_store(uri: str) -> str | None:
    """The local MLflow store (a sqlite file, or a file store's folder) that `uri` names, when it does not exist;
    None when it exists or is remote. A look-up in a missing local store would create an empty one."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    elif uri.startswith("file:"):
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
    elif "://" not in uri and (uri.startswith((".", "/", "~")) or "/" in uri or "\\" in uri):
        path = Path(uri).expanduser()  # a file store's folder
    else:
        return None  # a server, or a scheme MLflow resolves itself ("databricks", ...)
    return None if path.exists() else str(path)


def _read_state(spec: str, tracking_uri: str | None) -> tuple[dict[str, Any], str]:
    if spec.startswith(PYTHON_SCHEME):
        raise ConfigError(
            f"program {spec}: was passed from Python (program= or respond=) when the run was made; "
            "pass the same program object again, or save it and give its file"
        )
    if spec.startswith(MLFLOW_SCHEMES):
        import mlflow

        where = tracking_uri or mlflow.get_tracking_uri()
        missing = missing_store(where)
        if missing:  # MLflow would create an empty store there to look in it
            raise ConfigError(f"program {spec}: no MLflow store at {missing} (tracking.mlflow_uri = {where!r})")
        before = mlflow.get_tracking_uri()
        try:
            mlflow.set_tracking_uri(where)
            # through pyfunc, not mlflow.dspy.load_model: that one calls dspy.configure with the saved settings,
            # which only the first configuring thread/task may do (a second run in one process would fail)
            with keep_active_model():
                wrapper = getattr(mlflow.pyfunc.load_model(spec), "_model_impl", None)
            loaded = getattr(wrapper, "model", None)
            if not isinstance(loaded, dspy.Module):
                raise ValueError(f"it is not a DSPy program (its pyfunc holds a {type(loaded).__name__})")
        except Exception as err:  # noqa: BLE001 - any MLflow failure is a bad --program
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"program {spec}: cannot load it from MLflow at {where}: {first}") from None
        finally:
            mlflow.set_tracking_uri(before)
        return loaded.dump_state(), spec
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"program {spec}: no such file (give a program.json written by `refed optimize`, "
            "or an MLflow model URI models:/NAME/VERSION or runs:/RUN_ID/program)"
        )
    try:
        raw = path.read_bytes()
        state = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"program {spec}: not a readable program state JSON: {err}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"program {spec}: not a program state (a JSON object is expected)")
    return state, str(path.resolve())


def _is_predictor_state(value: Any) -> bool:
    return isinstance(value, dict) and ("signature" in value or "demos" in value)


def load_state_into(program: dspy.Module, state: dict[str, Any], spec: str) -> list[str]:
    """Apply a saved state to `program`'s predictors; returns the names loaded.

    The state may be of the whole pipeline (`collect.describe`, `synthesizer.synthesize`, `respond.generate`, ...)
    or of its per-instruction part alone (`generate`, `improve`, ... as RespondAndImprove or ReflectPair save it),
    which is applied to `respond`. A predictor in the state that the program does not have is refused: its
    tuning would be dropped without a word.

    Args:
        program: the program whose predictors receive the state.
        state: the saved state (DSPy's state JSON, as read from a file or MLflow).
        spec: where the state came from, named in error messages.

    Returns:
        The names of the program's predictors that were loaded, sorted.

    Raises:
        ConfigError: the state holds a predictor the program does not have, a predictor's state does not load, or
            it holds no predictor state at all.
    """
    mine = dict(program.named_parameters())
    saved = {name for name, value in state.items() if _is_predictor_state(value)}
    prefix = "" if any(name in mine for name in saved) or not any(f"respond.{n}" in mine for n in saved) else "respond."
    foreign = [name for name in sorted(saved) if prefix + name not in mine]
    if foreign:
        raise ConfigError(
            f"program {spec}: holds predictor {', '.join(repr(n) for n in foreign)}, which "
            f"{type(program).__name__} for this method does not have (it has {', '.join(mine) or 'none'}); "
            "was it compiled for another method?"
        )
    loaded = []
    for name in sorted(saved):
        target = prefix + name
        try:
            mine[target].load_state(state[name])
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"program {spec}: predictor '{name}' state does not load: {err}") from None
        loaded.append(target)
    if not loaded:
        raise ConfigError(
            f"program {spec}: holds no state for the predictors of {type(program).__name__} ({', '.join(mine)})"
        )
    return loaded


def load_program(
    spec: str, method: Method, tracking_uri: str | None = None, syn: SynthesisSettings | None = None
) -> tuple[dspy.Module, str]:
    """The pipeline program of `method` (built with `syn`, the synthesis settings) with the saved state of `spec`
    applied (a whole pipeline's, or its per-instruction part's), and its identity (the file's absolute path, or the
    MLflow URI).

    Args:
        spec: a saved program's file, or an MLflow model URI (`models:/...`, `runs:/...`).
        method: the synthesis method whose pipeline is built.
        tracking_uri: the MLflow tracking URI to load a URI from; None: MLflow's current one.
        syn: the synthesis settings the pipeline is built with.

    Returns:
        The program with the state applied, and its identity (the file's absolute path, or the MLflow URI).

    Raises:
        ConfigError: `spec` cannot be read or loaded (a missing file or store, a bad JSON, a program passed from
            Python, or a state that does not fit the method's program).
    """
    state, identity = _read_state(spec, tracking_uri)
    program = method.build_pipeline(syn)
    load_state_into(program, state, spec)
    return program, identity
