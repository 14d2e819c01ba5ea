"""MLflow traces of a run's DSPy calls (`tracking.log_traces`): optional, sampled, without keys.

MLflow's DSPy autologging (`mlflow.dspy.autolog`) traces through a DSPy callback that it adds to DSPy's global
settings. A `dspy.context` opened before that keeps the settings it copied when it was opened, so the calls made inside
it never reach the callback: the ledger scope of an optimization (refed_dspy.clients.lm_routing.ledger_scope) is one,
and an optimization with log_traces on logged no trace at all. `dspy_traces` therefore opens a context of its own whose
callbacks hold MLflow's, wherever it is entered; the calls made inside it (in the asyncio tasks and threads started
there too, which copy it) are traced.

Sampled: `tracking.trace_sample_ratio` of the traces are kept, each trace being one call of a program's module (a piece
of a run's work, an example an optimizer runs) with its LM calls inside (MLflow's own sampler, which reads
MLFLOW_TRACE_SAMPLING_RATIO as it makes its tracer at the block's first span; a ratio the user set there is theirs).
Masked: the span processor `connected` installs masks every key the process holds in a span's inputs, outputs and
attributes (refed_dspy.tracking.mlflow_runs.mask_span), and the callback is MLflow's handed each failed call's
exception masked (`masked_callback_class`), for the span event that records it. A run on Ray makes its
calls on the workers, which trace nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.config import Config, TrackingConfig
from refed_dspy.secrets import mask
from refed_dspy.tracking.mlflow_runs import connected, mlflow_run

SAMPLING = "MLFLOW_TRACE_SAMPLING_RATIO"


@contextlib.contextmanager
def dspy_traces(tracking: TrackingConfig) -> Iterator[bool]:
    """Within the block, trace the DSPy calls made in it to MLflow when tracking is on and `tracking.log_traces`;
    yields whether it does. The traces are written out (MLflow exports them in the background) when it is left."""
    if not (tracking.enabled and tracking.log_traces):
        yield False
        return
    import mlflow
    from mlflow.dspy.callback import MlflowCallback

    # connecting makes MLflow's tracer anew: made at the first span, with the ratio then set
    with _sampled(tracking.trace_sample_ratio), connected(tracking):
        ours = [c for c in dspy.settings.get("callbacks") or [] if not isinstance(c, MlflowCallback)]
        try:
            with dspy.context(callbacks=[*ours, masked_callback_class()()], track_usage=True):
                _autolog(mlflow, disable=False)  # sees the block's callback: adds none to DSPy's global settings
                yield True
        finally:
            _autolog(mlflow, disable=True)
            mlflow.flush_trace_async_logging()


def masked_error(err: BaseException | None) -> BaseException | None:
    """`err` itself when neither its message nor its traceback (its causes included) holds a key the process holds;
    else a stand-in of the same type name whose message is the masked one (MLflow records a failed call's exception
    as a span event, which a span processor cannot edit, and a gateway's error may quote the request's key)."""
    if err is None:
        return None
    stand_in = type(type(err).__name__, (Exception,), {"__module__": type(err).__module__})
    try:
        text = str(err)
        whole = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    except Exception:  # noqa: BLE001 - an error that cannot say itself: its type's name only, the span still ended
        return stand_in(type(err).__name__)
    if mask(text) == text and mask(whole) == whole:
        return err
    return stand_in(mask(text))


@functools.cache
def masked_callback_class() -> type:
    """MLflow's DSPy callback class with its `on_*_end` hooks handed each exception through `masked_error` (made on
    first use: importing MLflow's callback imports MLflow)."""
    from mlflow.dspy.callback import MlflowCallback

    def masking(name: str) -> Any:
        theirs = getattr(MlflowCallback, name)

        def hook(self: Any, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
            theirs(self, call_id, outputs, masked_error(exception))

        return hook

    ends = ("module", "lm", "adapter_format", "adapter_parse", "tool", "evaluate")
    return type("MaskedMlflowCallback", (MlflowCallback,), {f"on_{e}_end": masking(f"on_{e}_end") for e in ends})


def _autolog(mlflow: Any, disable: bool) -> None:
    """MLflow's DSPy autologging turned on (traces, from compiling and evaluating too; no per-candidate models or
    percent scores) or off. It sets its flags, then configures DSPy (its callback, token usage); DSPy refuses that
    outside the thread and async task that first configured it (a run's task is another): the block's own context
    carries both, so that refusal is skipped."""
    with contextlib.suppress(RuntimeError):
        mlflow.dspy.autolog(
            log_traces=True,
            log_traces_from_compile=True,
            log_traces_from_eval=True,
            log_compiles=False,
            log_evals=False,
            disable=disable,
            silent=True,
        )


@contextlib.contextmanager
def _sampled(ratio: float) -> Iterator[None]:
    """MLflow's sampling ratio set to `ratio` within the block (a ratio the user set in the variable is theirs)."""
    if SAMPLING in os.environ:
        yield
        return
    os.environ[SAMPLING] = str(ratio)
    try:
        yield
    finally:
        os.environ.pop(SAMPLING, None)


@contextlib.contextmanager
def run_traces(config: Config, run_dir: str | Path) -> Iterator[bool]:
    """`dspy_traces` for a run dir's step (synthesize, judge): the traces belong to the run dir's MLflow run, active
    for the block. Nothing when traces are off; yields whether they are on."""
    if not (config.tracking.enabled and config.tracking.log_traces):
        yield False
        return
    with dspy_traces(config.tracking) as on, mlflow_run(config, run_dir):
        yield on
