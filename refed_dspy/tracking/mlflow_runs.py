"""MLflow tracking: each run dir maps to one MLflow run (tagged with the run dir's absolute path).

Synthesis, judging, compare, report and export of one run dir all log into that run; each
`refed optimize` is a run of its own. Params come from the resolved config with secrets masked
(keys never live in the config anyway, and the value of every key the process holds is masked in what MLflow is
given: refed_dspy.secrets); metrics from the summaries; artifacts are the files the run wrote (masked when written). A tracking failure never loses data: the run's files are written before anything is
logged, and `track_*` helpers warn instead of raising.

The LM a logged program carries (`LoggedLM`): everything needed to reach the teacher from wherever the model is loaded, and no key.

MLflow's DSPy flavor pickles `dspy.settings` (the LM among them) beside the program. `LoggedLM` is a `dspy.LM` that
keeps the model, the endpoint (`api_base`, `api_version`), the sampling settings and the *name* of the environment
variable holding its key. It never pickles a key: when it is loaded (unpickled: `mlflow.pyfunc.load_model`,
`mlflow.dspy.load_model`, `mlflow models serve`) it reads the key from that variable, and a server that needs none
(`api_key_env = ""`) gets a placeholder. `REFED_API_BASE`, set where it is loaded, points it at another endpoint. The key
it reads goes only to its provider's hosts (refed_dspy.clients.destination.check_lm_key): loading refuses otherwise.

What a run puts in MLflow's run table: the few figures people compare across runs (calls, cost and LM time, in
all and by role) as metrics, and the by-stage breakdown as a table artifact, instead of every leaf of a usage dict
(11 fields x every stage: 100+ metrics no one compares).

For an experiment dir, MLflow as its lab notebook: one parent run per experiment directory (found again on a
resume), one child run per cell (the optimize run: its grid values as params, its held-out figures as metrics, its
compiled program as its logged model), the leaderboard as the parent's artifacts, and the champion's program in the
Model Registry under an alias (`models:/<name>@<alias>`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import dspy

from refed_dspy.adapters import build_adapter
from refed_dspy.clients.destination import CHECKING_CALLS, check_lm_key, key_env_of, key_of, told_of
from refed_dspy.clients.lm import fit_api_base
from refed_dspy.config import Config, TrackingConfig, to_toml
from refed_dspy.config.lm import LMSpec
from refed_dspy.config.section import mask_secrets
from refed_dspy.errors import ConfigError
from refed_dspy.programs.saved import keep_active_model
from refed_dspy.runtime.quiet import dropping
from refed_dspy.secrets import find_held, hold, mask, mask_value, sources_of
from refed_dspy.tracking.telemetry import set_telemetry

RUN_DIR_TAG = "refed.run_dir"
KIND_TAG = "refed.kind"  # what made the MLflow run: synthesize | compare | optimize (or the first step logged)
STEPS_TAG = "refed.steps"  # every step logged into it, in order: synthesize,judge,report,export
_PARAM_MAX = 6000
log = logging.getLogger(__name__)


@contextlib.contextmanager
def connected(tracking: TrackingConfig) -> Iterator[Any]:
    """MLflow pointed at the [tracking] URI and experiment for the block, with every trace span masked before it is
    exported (`mask_span`, before the span processors the process had); yields the experiment. After the block the
    process's tracking URI, active experiment (and its MLFLOW_EXPERIMENT_ID), span processors and tracing switched off
    are as they were: a library call with tracking on leaves its caller's MLflow where it was, and a later
    `mlflow.start_run()` of theirs goes to their store and experiment. The state is the process's: blocks nest, but two
    threads' blocks must not overlap. ConfigError, in one line with the fix, for a store MLflow would refuse (a file
    store without MLFLOW_ALLOW_FILE_STORE=true), before MLflow is asked."""
    if tracking.store_problem:
        raise ConfigError(f"tracking: {tracking.store_problem}")
    set_telemetry(tracking.telemetry)
    import mlflow

    with _caller_mlflow_kept(mlflow) as theirs:
        mlflow.set_tracking_uri(tracking.mlflow_uri)  # a new URI makes the tracer anew, with no span processor
        experiment = mlflow.set_experiment(tracking.experiment)
        mlflow.tracing.configure(span_processors=[mask_span, *theirs])  # theirs see our spans masked
        yield experiment


@contextlib.contextmanager
def _caller_mlflow_kept(mlflow: Any) -> Iterator[list[Any]]:
    """The process's MLflow tracking URI, active experiment (MLflow's own global and the variable it sets for
    subprocesses), span processors (yielded; other than ours) and tracing switched off restored after the block. MLflow
    has no public way to unset an active experiment: its module global is read and set back, where this MLflow has
    it."""
    from mlflow.tracing.config import get_config
    from mlflow.tracing.provider import is_tracing_enabled
    from mlflow.tracking import fluent

    uri = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    experiment_id, variable = getattr(fluent, "_active_experiment_id", None), os.environ.get(_EXPERIMENT_VAR)
    processors, tracing = list(get_config().span_processors), is_tracing_enabled()
    try:
        yield [p for p in processors if p is not mask_span]
    finally:
        if mlflow.get_tracking_uri() != uri:
            mlflow.set_tracking_uri(uri)  # which makes the tracer anew, with no span processor: set again below
        mlflow.tracing.configure(span_processors=processors)
        if not tracing:
            mlflow.tracing.disable()
        if hasattr(fluent, "_active_experiment_id"):
            fluent._active_experiment_id = experiment_id
        if variable is None:
            os.environ.pop(_EXPERIMENT_VAR, None)
        else:
            os.environ[_EXPERIMENT_VAR] = variable


_EXPERIMENT_VAR = "MLFLOW_EXPERIMENT_ID"  # what mlflow.set_experiment sets for subprocesses


_SPAN_IO = ("mlflow.spanInputs", "mlflow.spanOutputs")  # the attributes a span's inputs and outputs are kept in


def mask_span(span: Any) -> None:
    """An MLflow trace span with the keys the process holds masked in its inputs, outputs and attributes (DSPy's
    autologging records an LM's call, and a gateway's answer may quote the request's key)."""
    if span.inputs is not None:
        span.set_inputs(mask_value(span.inputs))
    if span.outputs is not None:
        span.set_outputs(mask_value(span.outputs))
    for name, value in list((span.attributes or {}).items()):
        if name in _SPAN_IO:
            continue  # set above
        masked = mask_value(value)
        if masked is not value:
            span.set_attribute(name, masked)


@contextlib.contextmanager
def mlflow_run(config: Config, run_dir: str | Path) -> Iterator[object]:
    """The MLflow run of `run_dir` in the config's MLflow experiment (created on first use), active for the block."""
    import mlflow

    with connected(config.tracking) as experiment:
        path = str(Path(run_dir).resolve())
        where = f"tags.`{RUN_DIR_TAG}` = '{path}'"
        found = mlflow.search_runs(
            experiment_ids=[experiment.experiment_id], output_format="list", max_results=1, filter_string=where
        )
        run_id = found[0].info.run_id if found else None
        tags = None if run_id else {RUN_DIR_TAG: path}
        with mlflow.start_run(run_id=run_id, run_name=None if run_id else Path(path).name, tags=tags) as run:
            yield run


@contextlib.contextmanager
def failure_warned(where: str | Path) -> Iterator[None]:
    """The block's tracking failure (MLflow unreachable, its store refused) as one warning line saying that the files
    in `where` are complete, instead of an exception: every command writes its files before it logs them."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - tracking must not lose a finished run
        first = str(err).splitlines()[0] if str(err) else ""
        why = first if isinstance(err, ConfigError) else f"{type(err).__name__}: {first}"
        log.warning("warning: MLflow tracking failed (%s); the files are complete in %s", why, where)


def log_artifacts(config: Config, run_dir: str | Path, paths: list[Path], kind: str) -> str | None:
    """Log files as artifacts under `kind/` of the run dir's MLflow run; returns the MLflow run id, or None after a
    warning when tracking failed (failure_warned)."""
    import mlflow

    with failure_warned(run_dir), mlflow_run(config, run_dir) as run:
        for p in paths:
            mlflow.log_artifact(str(p), artifact_path=kind)
        return run.info.run_id
    return None


def flat_params(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> {'a.b': 'value'} as MLflow params (None dropped, secrets masked, long values cut)."""
    out: dict[str, str] = {}
    for key, value in mask_secrets(data).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        elif value is not None:
            text = mask(str(value))
            out[name] = text if len(text) <= _PARAM_MAX else text[: _PARAM_MAX - 3] + "..."
    return out


def config_params(config: Config) -> dict[str, str]:
    """The resolved config as MLflow params, plus the model strings under short names. The LM sections as
    LMSpec.identity gives them: the temperature and output limit sent, and a reasoning effort where one is set."""
    data = config.model_dump(mode="json")
    data["teacher"], data["judge"] = config.teacher.identity("teacher"), config.judge.identity("judge")
    params = flat_params(data, "config.")
    params.update(
        {"teacher_model": config.teacher.model, "judge_model": config.judge.model, "method": config.synthesis.method}
    )
    return params


def log_params_once(params: dict[str, str]) -> None:
    """Log params into the active run. A param already logged with another value (MLflow params are
    immutable; e.g. a resumed run with a larger size) is recorded as tag `refed.changed.<name>`."""
    import mlflow

    run = mlflow.active_run()
    existing = mlflow.get_run(run.info.run_id).data.params if run else {}
    new = {k: v for k, v in params.items() if k not in existing}
    if new:
        mlflow.log_params(new)
    for k, v in params.items():
        if k in existing and existing[k] != v:
            mlflow.set_tag(f"refed.changed.{k}", v[:_PARAM_MAX])


def summary_metrics(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a summary dict as MLflow metrics (`usage.calls`, `rejects.truncated`, ...)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(summary_metrics(value, f"{name}."))
        elif isinstance(value, (bool, int, float)):
            out[name] = float(value)
    return {k.replace(":", "_"): v for k, v in out.items()}


def track_run_dir(
    config: Config,
    run_dir: str | Path,
    kind: str,
    summary: dict[str, Any],
    artifacts: list[Path],
    metric_prefix: str = "",
) -> str | None:
    """Log config params, summary metrics and artifacts of one step (`kind`: synthesize, judge,
    compare) into the run dir's MLflow run. Returns the run id, or None after a warning when MLflow
    cannot be reached (the run's own files are already written)."""
    import mlflow

    with failure_warned(run_dir), mlflow_run(config, run_dir) as run:
        tags = run.data.tags
        steps = [x for x in (tags.get(STEPS_TAG) or "").split(",") if x]
        if KIND_TAG not in tags:
            mlflow.set_tag(KIND_TAG, kind)
        if kind not in steps:
            mlflow.set_tag(STEPS_TAG, ",".join([*steps, kind]))
        log_params_once(config_params(config))
        mlflow.log_metrics(summary_metrics(summary, metric_prefix))
        mlflow.log_text(mask(to_toml(config)), f"{kind}/config.toml")
        for p in artifacts:
            if Path(p).exists():
                mlflow.log_artifact(str(p), artifact_path=kind)
        return run.info.run_id
    return None


def _example_io(example: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(inputs, outputs) of one (dspy.Example, Prediction) as JSON-able dicts, for the model's signature."""
    if example is None:
        return None
    ex, pred = example

    def plain(value: Any) -> Any:
        if hasattr(value, "model_dump"):
            return json.dumps(value.model_dump())
        return value if isinstance(value, (str, int, float, bool)) else json.dumps(value, default=str)

    inputs = {k: plain(v) for k, v in ex.inputs().toDict().items() if v is not None}
    outputs = {k: plain(v) for k, v in pred.toDict().items() if v is not None}
    return inputs, outputs


def log_program(program: Any, teacher: Any, name: str = "program", example: Any = None) -> str:
    """`mlflow.dspy.log_model` of a compiled program into the active run; returns its model URI.

    The model carries a signature and an input example (from one validation example and its prediction, so no
    LM is called to infer them) and, as its DSPy settings, the LM of `teacher` (an LMSpec) as a LoggedLM (its model,
    endpoint and key variable, no key) and the output adapter the teacher was compiled with. Loaded anywhere, it
    calls that endpoint, with the key of that environment, asking for the same output format.
    MLflow's check of the input example, and its inference of the requirements by predicting it, are skipped on
    purpose: they would call the teacher (a paid call no budget sees) and print a traceback wherever the key is not at
    hand or the reply fails; the requirements are `program_requirements()`.
    """
    import dspy
    import mlflow
    from mlflow.models import infer_signature

    io = _example_io(example)
    extra: dict[str, Any] = {}
    if io is not None:
        extra = {"signature": infer_signature(io[0], io[1]), "input_example": io[0]}
    # given requirements, MLflow does not infer them, which loads the model and predicts its input example in a
    # subprocess: a teacher call no budget sees, and its traceback on stderr when the reply fails
    extra["pip_requirements"] = program_requirements()
    program = without_keys(program)
    with (
        _LOGGING,  # one log at a time: the example check is switched off for the process while a model is logged
        keep_active_model(),
        _no_example_check(),
        _quiet_about_our_own_pickles(),
        dspy.context(lm=logged_lm(teacher), adapter=build_adapter(teacher), callbacks=[]),
    ):
        info = mlflow.dspy.log_model(program, name=name, use_dspy_model_save=True, **extra)
    return info.model_uri


_LOGGING = threading.Lock()
# what loading a logged program imports: MLflow's own inference of them found these
_REQUIRED = ("dspy", "mlflow", "refed-dspy", "numpy", "pandas")


def program_requirements() -> list[str]:
    """The pip requirements of a logged program: the installed versions of what loading it imports."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in _REQUIRED:
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # run from a source tree: no distribution to name
            continue
    return found


def without_keys(program: Any) -> Any:
    """A copy of `program` (pickled and loaded again; the program itself untouched) whose every LM is a LoggedLM: a
    predictor's pinned LM (`set_lm`), one a module keeps as an attribute, in a container or in any object. MLflow
    pickles the whole program, and a dspy.LM pickles its API key. ConfigError when the pickle would still hold a key
    the process holds (in an object that is no LM)."""
    buffer = io.BytesIO()
    _KeylessPickler(buffer).dump(program)
    data = buffer.getvalue()
    held = find_held(data.decode("latin-1"))
    if held:
        names = sorted({f"${name}" for value in held for name in sources_of(value)}) or ["an inline key"]
        raise ConfigError(
            f"the program keeps {', '.join(names)} in an object that is no LM (a client of its own?): not logged to "
            "MLflow, whose model is the whole program pickled; keep the client outside the program, or pass its key "
            "by variable name"
        )
    return cloudpickle.loads(data)


class _KeylessPickler(cloudpickle.Pickler):
    """cloudpickle, with every LM but a LoggedLM pickled as the LoggedLM that stands in for it (its key held first,
    so that a copy of it elsewhere in the pickle is found)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, dspy.BaseLM) and not isinstance(obj, LoggedLM):
            hold(key_of(obj))
            return _same, (logged_lm_like(obj),)
        return super().reducer_override(obj)


def _same(value: Any) -> Any:
    return value


# DSPy warns when it pickles settings and when MLflow loads the pickle back (to infer requirements): about the files
# log_program itself has just written, nothing the user can act on
_PICKLE_LOGGERS = ("dspy.dsp.utils.settings", "dspy.primitives.base_module")


def _quiet_about_our_own_pickles() -> contextlib.AbstractContextManager[None]:
    return dropping(_PICKLE_LOGGERS, ("cloudpickle", "untrusted .pkl"))


@contextlib.contextmanager
def _no_example_check() -> Iterator[None]:
    """MLflow's log_model runs the model on its input example to check it can be served; for a DSPy program that is
    an LM call. Within this block the check is a no-op (the example is still saved with the model)."""
    import mlflow.models.utils as model_utils

    check = getattr(model_utils, "_validate_serving_input", None)
    if check is None:  # MLflow moved it: its own check runs
        yield
        return
    model_utils._validate_serving_input = lambda model_uri, serving_input: None
    try:
        yield
    finally:
        model_utils._validate_serving_input = check


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
        if CHECKING_CALLS not in self.callbacks:  # and each request of its calls, where it takes the key
            self.callbacks = [*self.callbacks, CHECKING_CALLS]
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
    lm.key_env = NO_KEY if spec.api_key_env == NO_KEY else spec.key_variable()
    return lm


def logged_lm_like(lm: Any) -> LoggedLM:
    """A LoggedLM standing in for an LM object (one a user pinned to a predictor with `set_lm`): its model, endpoint
    and settings, the variable its key comes from (clients.destination.key_env_of; the provider's own when unknown),
    no key. An LM on engines of its own (build_lm's) has its endpoint and timeout in `client_reach` and its key's
    variable in its section."""
    kwargs = {k: v for k, v in told_of(lm).items() if k not in _SECRETS}
    out = LoggedLM(str(lm.model), model_type=getattr(lm, "model_type", "chat"), **kwargs)
    spec = getattr(lm, "refed_spec", None)
    if isinstance(spec, LMSpec):
        out.key_env = NO_KEY if spec.api_key_env == NO_KEY else spec.key_variable()
    else:
        out.key_env = key_env_of(lm)
    return out


USAGE_TABLE = "usage_by_stage.json"
_COLUMNS = (
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "repairs",
    "lm_seconds",
    "cost_usd",
)


def usage_figures(usage: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """`calls`, `cost_usd` and `lm_seconds`, in all and `.<role>` by role (an unpriced cost left out)."""
    out: dict[str, float] = {}
    parts = [("", usage)] + [(f".{role}", u) for role, u in sorted((usage.get("by_role") or {}).items())]
    for suffix, part in parts:
        for key in ("calls", "cost_usd", "lm_seconds"):
            value = part.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{prefix}{key}{suffix}"] = float(value)
    return out


def usage_table(usage: dict[str, Any]) -> dict[str, list[Any]]:
    """The by-stage breakdown as columns (`stage` and the usage fields), for `mlflow.log_table`."""
    stages = sorted((usage.get("by_stage") or {}).items())
    table: dict[str, list[Any]] = {"stage": [name for name, _ in stages]}
    for column in _COLUMNS:
        table[column] = [part.get(column) for _, part in stages]
    return table


CELL_TAG = "refed.experiment.cell"


@contextlib.contextmanager
def experiment_run(config: Config, out: Path, params: dict[str, Any]) -> Iterator[Any]:
    """The experiment's parent run, active for the block (None when tracking is off): cells' optimize runs nest
    under it. `params`: the experiment's settings, logged once."""
    if not config.tracking.enabled:
        yield None
        return
    import mlflow

    with mlflow_run(config, out) as run:
        if KIND_TAG not in run.data.tags:
            mlflow.set_tag(KIND_TAG, "experiment")
        log_params_once(flat_params(params))
        yield run


def log_cell(run_id: str | None, row: dict[str, Any]) -> None:
    """A finished cell's child run gets its grid values (params), its held-out figures (metrics) and its cell id."""
    if not run_id:
        return
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    client = MlflowClient()
    existing = client.get_run(run_id).data.params
    params = {f"cell.{k}": str(v)[:500] for k, v in flat_params({"values": row["values"]}).items()}
    params["cell.repeat"] = str(row["repeat"])
    diff = row.get("difference") or {}
    figures = {
        "test_score": row.get("test_mean"),
        "test_baseline": row.get("baseline_mean"),
        "test_difference": diff.get("mean"),
        "test_ci_low": diff.get("ci_low"),
        "test_ci_high": diff.get("ci_high"),
        "test_significant": float(bool(diff.get("significant"))) if diff else None,
        "cell_wall_s": row.get("wall_s"),
        **usage_figures(row.get("eval_usage") or {}, "test."),
    }
    client.log_batch(
        run_id,
        metrics=_metrics(figures),
        params=[Param(k, v) for k, v in params.items() if k not in existing],
        tags=[RunTag(CELL_TAG, row["id"])],
    )


def log_experiment(run_id: str, figures: dict[str, float | None]) -> None:
    """The experiment's own figures (calls, cost, cells finished, the champion's difference) as its parent run's
    metrics, so that experiments compare in MLflow's run table; None values are left out."""
    from mlflow import MlflowClient

    MlflowClient().log_batch(run_id, metrics=_metrics(figures))


def _metrics(figures: dict[str, float | None]) -> list[Any]:
    """MLflow metrics of `figures` at step 0, now; None values left out."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in figures.items() if v is not None]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "refed-experiment"


def registered_name(name: str, out: str | Path) -> str:
    """A Model Registry name from an experiment's name (letters, digits, '-', '_', '.') and its out directory: two
    experiment dirs of one name register apart, and the same dir (resumed) finds its model again."""
    return f"{_safe(name)}-{hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:6]}"


def register_champion(
    model_uri: str,
    run_id: str | None,
    name: str,
    alias: str,
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> str:
    """Register `model_uri` (logged by the run `run_id`) under `name` and point `alias` at it, unless the alias
    already points at a version from that run; the version gets `tags` and `description` (what made it: the
    experiment, the cell, its scores). Returns `models:/<name>@<alias>`."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    version = None
    with contextlib.suppress(MlflowException):
        current = client.get_model_version_by_alias(name, alias)
        if current.source == model_uri or (run_id is not None and current.run_id == run_id):
            version = current
    if version is None:
        version = mlflow.register_model(model_uri, name)
        client.set_registered_model_alias(name, alias, version.version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version.version, key, value)
    if description is not None:
        client.update_model_version(name, version.version, description=description)
    return f"models:/{name}@{alias}"


def champion_tags(result: Any, champion: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The tags and description of the champion's model version: the experiment and its dir, the cell and its
    values, its test score with its interval, and its baseline's."""
    diff = champion.get("difference") or {}
    tags = {
        "refed.experiment": result.name,
        "refed.experiment.dir": str(Path(result.out).resolve()),
        CELL_TAG: champion["id"],
        "refed.experiment.values": json.dumps(champion.get("values") or {}, sort_keys=True),
        "refed.test_score": f"{champion.get('test_mean'):.4f}",
        "refed.test_baseline": f"{champion.get('baseline_mean'):.4f}",
        "refed.test_difference": f"{diff.get('mean', 0.0):+.4f} [{diff.get('ci_low', 0.0):+.4f}, "
        f"{diff.get('ci_high', 0.0):+.4f}]",
        "refed.test_examples": str(champion.get("test_n")),
    }
    description = (
        f"Champion of experiment {result.name} ({tags['refed.experiment.dir']}): cell {champion['id']} "
        f"({champion.get('label')}). Test score {tags['refed.test_score']} (0-1) on {champion.get('test_n')} held-out "
        f"examples against the uncompiled program's {tags['refed.test_baseline']}: difference "
        f"{tags['refed.test_difference']} at level {diff.get('level', result.cell_level):.4f}."
    )
    return tags, description
