"""Saving and loading compiled per-instruction programs.

A saved program is DSPy's own state JSON (`Module.save`) with one more top-level key, `refed`:
the resolved config (secrets masked), the optimizer and its settings, the scores and the
program class. Plain DSPy loads it too (`RespondAndImprove().load(path)` ignores the extra key).
A program is loaded from such a file or from an MLflow model URI (`models:/...`, `runs:/...`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.config import Config, mask_secrets
from refed_dspy.errors import ConfigError
from refed_dspy.methods import Method
from refed_dspy.store import write_json_atomic

FORMAT = 1
MLFLOW_SCHEMES = ("models:/", "runs:/")


def save_program(program: dspy.Module, path: str | Path, config: Config, info: dict[str, Any]) -> Path:
    """Write `program`'s state with the `refed` block (config, `info` such as optimizer and scores)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "state.json"
        program.save(str(raw))
        state = json.loads(raw.read_text(encoding="utf-8"))
    state["refed"] = {"format": FORMAT, "program": type(program).__name__,
                      "config": mask_secrets(config.model_dump(mode="json")),
                      "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info}
    write_json_atomic(path, state)
    return path


def instructions_text(program: dspy.Module) -> str:
    """Each predictor's instructions and demo count, as readable text."""
    parts = []
    for name, pred in program.named_predictors():
        parts.append(f"## {name} ({len(pred.demos)} demos)\n\n{pred.signature.instructions.strip()}\n")
    return "\n".join(parts)


def _read_state(spec: str, tracking_uri: str | None) -> tuple[dict[str, Any], str]:
    if spec.startswith(MLFLOW_SCHEMES):
        import mlflow

        from refed_dspy.tracking import keep_active_model

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        try:
            with keep_active_model():
                loaded = mlflow.dspy.load_model(spec)
        except Exception as err:  # noqa: BLE001 - any MLflow failure is a bad --program
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"program {spec}: cannot load it from MLflow at {tracking_uri or mlflow.get_tracking_uri()}: {first}") from None
        return loaded.dump_state(), spec
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"program {spec}: no such file (give a program.json written by `refed optimize`, "
                          "or an MLflow model URI models:/NAME/VERSION or runs:/RUN_ID/program)")
    try:
        raw = path.read_bytes()
        state = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"program {spec}: not a readable program state JSON: {err}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"program {spec}: not a program state (a JSON object is expected)")
    return state, f"{path.resolve()}#sha256:{hashlib.sha256(raw).hexdigest()[:12]}"


def load_program(spec: str, method: Method, tracking_uri: str | None = None) -> tuple[dspy.Module, str]:
    """The per-instruction program for `method` with the saved state of `spec` applied, and its identity
    (the file's path and content hash, or the MLflow URI)."""
    from refed_dspy.programs import RespondAndImprove

    if method.recycle:
        raise ConfigError(f"a compiled program applies to the per-instruction methods; method '{method.name}' has none")
    state, identity = _read_state(spec, tracking_uri)
    program = RespondAndImprove(improve=method.improve, sample_feedback=method.sample_feedback)
    loaded = []
    for name, param in program.named_parameters():
        if isinstance(state.get(name), dict):
            try:
                param.load_state(state[name])
            except Exception as err:  # noqa: BLE001
                raise ConfigError(f"program {spec}: predictor '{name}' state does not load: {err}") from None
            loaded.append(name)
    if not loaded:
        names = ", ".join(n for n, _ in program.named_parameters())
        raise ConfigError(f"program {spec}: holds no state for the predictors of RespondAndImprove ({names})")
    return program, identity
