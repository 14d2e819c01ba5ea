"""What an optimization leaves: what `optimize` returns and optimize_summary.json holds (`OptimizeResult`); the files
it writes beside program.json: instructions.txt, before_after.md (a few validation examples,
before and after) and config.toml.

and its MLflow run: its params, its figures as metrics, its files as artifacts and its program as the
logged model. Which program it keeps (`kept_reason`, `given_back`), and the reason it can name when that is the one
it started from.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dspy

from refed_dspy.config import Config, LMSpec, TrackingConfig, to_toml
from refed_dspy.programs.saved import instructions_text
from refed_dspy.store.jsonl import write_text_atomic
from refed_dspy.store.records import Reference, final_response
from refed_dspy.tracking.mlflow_runs import (
    KIND_TAG,
    RUN_DIR_TAG,
    STEPS_TAG,
    USAGE_TABLE,
    config_params,
    connected,
    log_program,
    usage_figures,
    usage_table,
)
from refed_dspy.tracking.traces import dspy_traces


@dataclass
class OptimizeResult:
    """What `optimize` returns: the program it kept, the two programs' scores and where everything went.

    `program` is the one it kept (`kept`): the optimized program, or the baseline (the program it started from) when
    the optimized one scored below it on the validation set or the optimizer gave back what it was given. Either way
    `score_before` is the baseline's validation score and `score_after` the optimized program's; `kept_line` says
    which was kept and why, in the line `refed optimize` prints.
    """

    program: dspy.Module
    optimizer: str
    score_before: float
    score_after: float
    steps: list[float]
    out_dir: Path
    program_path: Path
    usage: dict[str, Any]
    n_train: int
    n_val: int
    mlflow_run_id: str | None = None
    model_uri: str | None = None
    kept: Literal["compiled", "baseline"] = "compiled"
    kept_reason: str | None = None  # why the baseline was kept (None: the optimized program was)
    candidate_path: Path | None = None  # the optimized program, saved beside a baseline that scored higher
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kept_line(self) -> str:
        """Which program was kept and why, in one line: "kept: the baseline program (the optimized program scored
        0.4777 on the validation set, below the baseline's 0.5658); the optimized one is in ..." or "kept: the
        optimized program (it scored 0.6120 on the validation set, above the baseline's 0.5658)"."""
        return kept_line(
            self.kept, self.kept_reason, self.score_before, self.score_after, self.candidate_path, self.n_val
        )

    @property
    def cost_usd(self) -> float | None:
        """What the optimization cost in USD, every invocation of it and the synthesis of its examples included (None:
        a price is unknown); `extra["this_invocation"]` is this invocation's part."""
        return self.usage.get("cost_usd")

    def summary(self) -> dict[str, Any]:
        """The JSON-able figures (optimize_summary.json).

        Returns:
            The status, optimizer, scores, steps, example counts, paths (as strings), usage, MLflow ids and which
                program was kept, with `extra`'s keys merged in.
        """
        return {
            "status": "complete",
            "optimizer": self.optimizer,
            "score_before": self.score_before,
            "score_after": self.score_after,
            "steps": self.steps,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "out_dir": str(self.out_dir),
            "program": str(self.program_path),
            "usage": self.usage,
            "mlflow_run_id": self.mlflow_run_id,
            "model_uri": self.model_uri,
            "kept": self.kept,
            "kept_reason": self.kept_reason,
            "candidate_program": str(self.candidate_path) if self.candidate_path else None,
            **self.extra,
        }


def _example_text(ex: Any) -> str:
    if ex.get("instruction"):
        return f"**Instruction:** {ex.instruction}"
    return f"**Reference:** {Reference.coerce(ex.reference).instruction}"


def prediction_text(pred: Any) -> str:
    """What a prediction of any target produced, as text: the final response; the proposed instructions; or the
    first samples of a pipeline."""
    if pred is None:
        return ""
    if pred.get("instructions") is not None:
        return "\n".join(f"- ({feature}) {text}" for feature, text in pred.instructions) or "(no instruction)"
    if pred.get("samples") is not None:
        return "\n\n".join(f"{s.instruction}\n-> {final_response(s)}" for s in pred.samples[:3]) or "(no sample)"
    return final_response(pred)


def before_after_markdown(before_rows: list, after_rows: list, k: int) -> str:
    """The first `k` validation examples: their input, what the program made and its score, before and after."""

    def cut(text: str, n: int = 800) -> str:
        return text if len(text) <= n else text[:n] + " [...]"

    def quoted(pred: Any) -> str:
        return cut(prediction_text(pred)).replace("\n", "\n> ")

    parts = ["# Before and after optimization (validation examples)\n"]
    for i, ((ex, p0, s0), (_, p1, s1)) in enumerate(zip(before_rows[:k], after_rows[:k], strict=False), 1):
        parts.append(
            f"## Example {i}\n\n{cut(_example_text(ex), 420)}\n\n"
            f"**Before** (score {s0:.3f}):\n\n> {quoted(p0)}\n\n"
            f"**After** (score {s1:.3f}):\n\n> {quoted(p1)}\n"
        )
    return "\n".join(parts)


def write_outputs(out: Path, config: Config, result: dict[str, Any], program_path: Path, shown: int) -> list[Path]:
    """instructions.txt, before_after.md (`shown` validation examples) and config.toml (the config of record) beside
    program.json; returns the four paths."""

    files = [program_path, out / "instructions.txt", out / "before_after.md", out / "config.toml"]
    write_text_atomic(files[1], instructions_text(result["program"]))
    write_text_atomic(
        files[2],
        before_after_markdown(result["before_rows"], result["after_rows"], shown),
    )
    write_text_atomic(files[3], to_toml(config))
    return files


@contextlib.contextmanager
def tracked(tracking: TrackingConfig, record: Config, out: Path, optimizer: str):
    """An MLflow run for this optimization, with the config of record `record` as its params (or nothing when tracking
    is off). Traces of its DSPy calls only when tracking.log_traces is on (refed_dspy.tracking.traces: a sample,
    keys masked); DSPy autologging's compile and eval logging stay off: they log a model per candidate and scores in
    percent, where this run logs one model and every score on the metric's 0-1 scale."""
    if not tracking.enabled:
        yield None
        return
    import mlflow

    with (
        connected(tracking),
        dspy_traces(tracking),
        mlflow.start_run(
            run_name=f"optimize-{optimizer}",
            tags={KIND_TAG: "optimize", STEPS_TAG: "optimize", RUN_DIR_TAG: str(out.resolve())},
            nested=mlflow.active_run() is not None,  # a cell of an experiment: a child of its run
        ) as run,
    ):
        mlflow.log_params(config_params(record))
        yield run


def log_result(result: dict[str, Any], summary: dict[str, Any], files: list[Path], teacher: LMSpec) -> str:
    """The optimization's figures, its files and its program (run with the teacher of record `teacher`) into the
    active MLflow run; returns the logged model's URI."""
    import mlflow

    mlflow.log_metrics(
        {
            "score_before": result["score_before"],
            "score_after": result["score_after"],
            "kept_baseline": float(summary.get("kept") == "baseline"),
            "wall_s": float(summary.get("wall_s") or 0.0),
            **usage_figures(summary["usage"]),
            "examples_calls": float(summary.get("examples_usage", {}).get("calls", 0)),
        }
    )
    mlflow.log_table(usage_table(summary["usage"]), USAGE_TABLE)
    for step, score in enumerate(result["steps"]):
        mlflow.log_metric("step_score", score, step=step)
    for p in files:
        mlflow.log_artifact(str(p))
    example = next(((ex, pred) for ex, pred, _ in result["before_rows"] if pred is not None), None)
    return log_program(result["program"], teacher, example=example)


def log_summary(path: Path) -> None:
    """optimize_summary.json, written once the run's figures are logged, as an artifact of the active run."""
    import mlflow

    mlflow.log_artifact(str(path))


SMALL_VALSET = 10  # validation examples below which a score's difference says little (each example moves it 1/n)


def kept_reason(
    unchanged: bool,
    before: float,
    after: float,
    threshold: float | None,
    traces: dict[str, int],
    n_val: int,
    more_val: str = "raise optimize.n_val",
) -> str | None:
    """Why the starting program (the baseline) is the result (None: the compiled one is). `unchanged`: the optimizer
    gave back the program it was given; `before` / `after`: the two programs' validation scores; `threshold` and
    `traces` (scored, passed): what bootstrapping demos met; `more_val`: how to get more validation examples."""
    if unchanged:
        scored, passed = traces.get("scored", 0), traces.get("passed", 0)
        if scored and not passed and threshold is not None:
            why = (
                f"no bootstrapped trace passed the threshold: 0 of {scored} scored {threshold:.4f} or more "
                "(optimize.threshold; unset, it is the starting program's mean on validation), so no demo was added"
            )
        else:
            why = "the optimizer gave back the program it was given"
    elif after < before:
        why = f"the optimized program scored {after:.4f} on the validation set, below the baseline's {before:.4f}"
    else:
        return None
    if n_val < SMALL_VALSET:
        why += f"; {n_val} validation examples are too few to tell programs apart: {more_val}"
    return why


def kept_line(
    kept: str,
    reason: str | None,
    before: float,
    after: float,
    candidate: str | Path | None = None,
    n_val: int | None = None,
) -> str:
    """The one line that says which program an optimization kept and why (`refed optimize` prints it; the Python API's
    `OptimizeResult.kept_line`). `kept`: "compiled" (the optimized program) or "baseline" (the one it started from);
    `reason`: why the baseline was kept (kept_reason); `before` / `after`: the baseline's and the optimized program's
    validation scores; `candidate`: where the optimized program was saved when the baseline was kept; `n_val`: the
    validation examples (fewer than SMALL_VALSET: said to be too few, as kept_reason says it of a kept baseline)."""
    if kept != "baseline":
        versus = "above" if after > before else "equal to" if after == before else "below"
        scores = f"it scored {after:.4f} on the validation set, {versus} the baseline's {before:.4f}"
        if n_val is not None and n_val < SMALL_VALSET:
            scores += f"; {n_val} validation examples are too few to tell programs apart"
        return f"kept: the optimized program ({scores})"
    line = f"kept: the baseline program ({reason or 'the optimizer changed nothing'})"
    if candidate:
        line += f"; the optimized one is in {candidate}"
    return line


def same_prompts(a: dspy.Module, b: dspy.Module) -> bool:
    """Whether two programs ask their LMs the same things: of one class, neither with a forward of its own (DSPy's
    KNNFewShot returns the program with a new forward and its predictors as they were), and the same predictors
    with the same signatures (instructions, fields) and demos."""
    if type(a) is not type(b) or "forward" in vars(a) or "forward" in vars(b):
        return False
    return [(n, p.dump_state()) for n, p in a.named_predictors()] == [
        (n, p.dump_state()) for n, p in b.named_predictors()
    ]


def given_back(
    result: dict[str, Any], start: dspy.Module, n_val: int, more_val: str
) -> tuple[dict[str, Any], bool, str | None]:
    """A compile's `result` (see refed_dspy.optimizers.compile.optimize), whether the optimizer gave back the program
    it was given (then `start` is the result, as it scored), and why the starting program is the result (None: the
    compiled one is); `n_val` and `more_val` as kept_reason takes them."""
    unchanged = same_prompts(result["program"], start)
    why_kept = kept_reason(
        unchanged,
        result["score_before"],
        result["score_after"],
        result["threshold"],
        result["traces"],
        n_val,
        more_val,
    )
    if unchanged:  # the optimizer gave back what it was given (GEPA may): that program, as it scored
        unchanged_rows = {"after_rows": result["before_rows"], "score_after": result["score_before"]}
        result = {**result, "program": start, **unchanged_rows}
    return result, unchanged, why_kept
