"""`refed train`: supervised fine-tuning of a student on a run's samples (or a dataset's pairs), with LoRA adapters.

The loop is transformers' `Trainer` over the student with PEFT's LoRA adapters, the loss on each response only (its
chat template around it: refed_dspy.training.student). Before anything loads, the pairs are read and split (a held-out
share drawn with `[train] seed`), and what decides the adapter (the student, the data's hash, the settings) is compared
with the plan the output dir holds: a dir of another training is refused, one line, nothing touched.

Checkpoints go to `OUT/checkpoints/` every `save_steps` steps (the adapter, the optimizer, the scheduler and the random
states). A training stopped (a kill -9 included) resumes from the newest checkpoint that was written whole: the same
command again takes fewer steps. When it ends: the adapter in `OUT/adapter/`, the held-out loss, and
`OUT/train_summary.json`; with tracking on, an MLflow run with the settings, the loss curve and the adapter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from refed_dspy.config import Config, TrainConfig
from refed_dspy.config.load import ConfigLike, given_config
from refed_dspy.engine.progress import Heartbeat, duration
from refed_dspy.errors import ConfigError, RunInterrupted
from refed_dspy.quality.statistics import Pair, pairs_of
from refed_dspy.store.jsonl import write_json_atomic
from refed_dspy.store.ownership import check_output_dir, owned
from refed_dspy.store.results import Result
from refed_dspy.tracking.mlflow_runs import KIND_TAG, failure_warned, flat_params, log_params_once, mlflow_run
from refed_dspy.training.student import IGNORE, Example, Student

INSTALL = "pip install --require-hashes --no-deps --only-binary :all: -r requirements/train.txt"
PLAN, SUMMARY, CHECKPOINTS, ADAPTER = "train_plan.json", "train_summary.json", "checkpoints", "adapter"
CURVE_POINTS = 20  # losses in the curve when [train] logging_steps is unset
# what does not change the adapter a training makes: where it runs, how often it is saved
_NOT_DECIDING = {"device", "save_steps", "logging_steps"}


class TrainSummary(Result):
    """What `refed train` wrote to `OUT/train_summary.json`."""

    student: str = Field(description="The model fine-tuned, as [train] student names it.")
    source: str = Field(description="The run dir or dataset the pairs came from.")
    samples: int = Field(description="The pairs trained on.")
    held_out: int = Field(description="The pairs kept out of training, for `held_out_loss`.")
    skipped: int = Field(0, description="The pairs of the source not used (an empty instruction or response).")
    steps: int = Field(description="The optimizer steps taken in all (resumed ones included).")
    resumed_from: int = Field(0, description="The step of the checkpoint this invocation resumed from (0: none).")
    losses: list[float] = Field(description="The training loss at each logging step, in order.")
    loss_steps: list[int] = Field(description="The step of each loss in `losses`.")
    held_out_loss: float | None = Field(description="The mean loss on the held-out pairs' responses (None: none).")
    wall_s: float = Field(description="Seconds this invocation took, loading included.")
    adapter: str | None = Field(description="The trained LoRA adapter's folder (None until the training ends).")
    device: str
    dtype: str
    status: Literal["complete", "interrupted"] = "complete"


def import_peft() -> Any:
    """The peft package; ConfigError naming the install when it is missing."""
    try:
        import peft
    except ImportError as err:
        raise ConfigError(f"training needs the train extra ({err.name} is not installed): {INSTALL}") from None
    return peft


def split(pairs: list[Pair], share: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, held-out pairs): `share` of them held out, drawn with `seed` (at least one when `share` > 0
    and there are two or more)."""
    n = len(pairs)
    held = 0 if share <= 0 or n < 2 else min(n - 1, max(1, round(share * n)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    out = set(order[:held])
    return [p for i, p in enumerate(pairs) if i not in out], [p for i, p in enumerate(pairs) if i in out]


def plan_of(settings: TrainConfig, train: list[Pair], held: list[Pair]) -> dict[str, Any]:
    """What decides the adapter a training makes: its settings and the hash of its data, split as it is."""
    digest = hashlib.sha256()
    for part, pairs in (("train", train), ("held_out", held)):
        for p in pairs:
            digest.update(json.dumps([part, p.instruction, p.response]).encode())
    deciding = {k: v for k, v in settings.model_dump(mode="json").items() if k not in _NOT_DECIDING}
    return {"settings": deciding, "data": digest.hexdigest(), "count": f"{len(train)} + {len(held)} held-out pairs"}


def check_plan(path: Path, plan: dict[str, Any], write: bool = True) -> None:
    """Refuse (ConfigError) when the folder of `path` holds the work of another plan than `plan`; else record it there
    (`write`: now; else the caller does, once the work can start: a typo that stops it before then is not kept)."""
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old != plan:
            out = path.parent
            why = _plan_diff(old, plan, path.name)
            raise ConfigError(
                f"{out} holds the work of other data or settings ({why}): pass another --out, or delete {out}"
            )
        return
    if write:
        write_json_atomic(path, plan)


def _plan_diff(old: Any, new: dict[str, Any], name: str) -> str:
    if not isinstance(old, dict):
        return f"its {name} cannot be read"
    was = old.get("settings", {})
    lines = [f"{k}: {was.get(k)!r} -> {v!r}" for k, v in new["settings"].items() if was.get(k) != v]
    if old.get("data") != new["data"]:
        lines.append(f"the data ({old.get('count')} -> {new['count']})")
    return "; ".join(lines) or "its plan differs"


def last_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint written whole (its trainer state, written last, reads), or None."""
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else ():
        try:
            step = int(path.name.split("-", 1)[1])
            json.loads((path / "trainer_state.json").read_text())
        except (ValueError, OSError):
            continue
        found.append((step, path))
    return max(found)[1] if found else None


class Collate:
    """Pads a batch of Examples on the right: the pad id, an attention mask of 0 and the IGNORE label."""

    def __init__(self, torch: Any, pad: int):
        self.torch, self.pad = torch, pad

    def __call__(self, batch: list[Example]) -> dict[str, Any]:
        width = max(len(e.input_ids) for e in batch)

        def padded(rows: list[list[int]], fill: int) -> Any:
            return self.torch.tensor([r + [fill] * (width - len(r)) for r in rows])

        return {
            "input_ids": padded([e.input_ids for e in batch], self.pad),
            "attention_mask": padded([[1] * len(e.input_ids) for e in batch], 0),
            "labels": padded([e.labels for e in batch], IGNORE),
        }


def steps_of(settings: TrainConfig, samples: int) -> int:
    """The optimizer steps a training of `samples` pairs takes: transformers steps on an epoch's last batches too when
    they are fewer than `gradient_accumulation`, so an epoch is its batches over that, rounded up."""
    if settings.max_steps:
        return settings.max_steps
    batches = -(-samples // settings.batch_size)
    per_epoch = max(1, -(-batches // settings.gradient_accumulation))
    return max(1, math.ceil(per_epoch * settings.epochs))  # as transformers rounds a fraction of an epoch


def logging_steps(settings: TrainConfig, steps: int) -> int:
    """Steps between two losses of the curve: the config's, else about CURVE_POINTS over the training, two at least."""
    if settings.logging_steps:
        return settings.logging_steps
    return max(1, min(steps // CURVE_POINTS or 1, steps // 2 or 1))


def arguments(transformers: Any, settings: TrainConfig, student: Student, out: Path, steps: int) -> Any:
    """transformers' TrainingArguments for this training: its steps, batches, rate, checkpoints and precision."""
    return transformers.TrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        max_steps=steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        learning_rate=settings.learning_rate,
        warmup_steps=round(settings.warmup_ratio * steps),
        lr_scheduler_type="linear",
        logging_steps=logging_steps(settings, steps),
        save_steps=settings.save_steps,
        save_total_limit=2,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=student.dtype == "bfloat16" and student.device != "cpu",
        fp16=student.dtype == "float16",
        use_cpu=student.device == "cpu",
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def examples(student: Student, settings: TrainConfig, pairs: list[Pair]) -> list[Example]:
    return [
        student.example(p.instruction, p.response, settings.max_prompt_tokens, settings.max_response_tokens)
        for p in pairs
    ]


class StepLine:
    """The progress line of a training: step, the last loss, seconds a step and the time left, measured over this
    invocation's steps up to the last one seen done (a step under way does not stretch the figure)."""

    def __init__(self, trainer: Any, resumed_at: int, clock: Any = time.monotonic):
        self.trainer, self.resumed_at, self.clock = trainer, resumed_at, clock
        self.started = clock()
        self.seen = (resumed_at, self.started)  # the last step seen done, and when it was seen

    def __call__(self) -> str:
        state, now = self.trainer.state, self.clock()
        step, total = state.global_step, state.max_steps or 0
        if step > self.seen[0]:
            self.seen = (step, now)
        losses = [e["loss"] for e in state.log_history if "loss" in e]
        line = f"step {step}/{total}" + (f", loss {losses[-1]:.3f}" if losses else "")
        if step <= self.resumed_at:
            return f"{line}, ETA unknown"
        per_step = (self.seen[1] - self.started) / (self.seen[0] - self.resumed_at)
        left = max(0.0, per_step * max(0, total - step) - (now - self.seen[1]))
        return f"{line}, {per_step:.1f} s/step, ETA {duration(left)}"


def train_student(
    source: str | Path, out: str | Path, config: ConfigLike | None = None, show_progress: bool = False
) -> TrainSummary:
    """Fine-tune `[train] student` with LoRA on the pairs of a run dir (its samples' final responses) or a dataset.

    Args:
        source: a run dir, or anything [seeds] source takes (a JSONL of instructions and responses, a Hub dataset).
        out: the training's folder: its plan, checkpoints, adapter and summary. A folder of this same training (the
            same pairs and settings) is resumed from its newest checkpoint; a finished one is returned as it is.
        config: [train] describes the student and the loop, [tracking] the MLflow run (defaults when None).
        show_progress: a progress line on stderr (step, loss, time left).

    Returns:
        What `out/train_summary.json` holds: the steps, the loss curve, the held-out loss, the adapter's folder.

    Raises:
        ConfigError: no pairs, `out` holds another training, the student cannot be loaded, its layers have none of
            `target_modules`, or the train extra is not installed (before any step is taken).
        RunDirError: `out` is not refed's to take (a folder of the user's, a run dir, the source or around it), or
            another command holds it.
        RunInterrupted: a stop (Ctrl-C, a signal), carrying the summary so far (resumable from the last checkpoint).
    """
    config, out, start = given_config(config) or Config(), Path(out), time.monotonic()
    settings = config.train
    found = pairs_of(source)
    usable = [p for p in found.items if p.instruction.strip() and p.response.strip()]
    train, held = split(usable, settings.held_out, settings.seed)
    if not train:
        raise ConfigError(f"{source} has no pair with both an instruction and a response to train on")
    check_output_dir(out, [source])
    with owned(out, "train", "refed train", flag="--out"):
        plan = plan_of(settings, train, held)
        check_plan(out / PLAN, plan, write=False)
        summary = finished_training(out)  # a finished training is not run again (it is logged if it was not)
        if summary is None:
            peft = import_peft()
            student = Student(settings.student, settings.device, settings.dtype).load()
            base = {
                "student": settings.student,
                "source": str(source),
                "samples": len(train),
                "held_out": len(held),
                "skipped": found.skipped + len(found.items) - len(usable),
                "device": student.device,
                "dtype": student.dtype,
            }
            with warnings.catch_warnings():  # transformers' and peft's notes on their own internals: nothing to act on
                warnings.simplefilter("ignore")
                trainer = _trainer(peft, student, settings, out, train, held)
                write_json_atomic(out / PLAN, plan)  # the student and its adapters are there: the training starts
                summary = _fit(trainer, out, base, start, config.run.progress_every_s if show_progress else None)
    if config.tracking.enabled:
        track_training(config, out, summary)
    return summary


def _fit(trainer: Any, out: Path, base: dict[str, Any], start: float, every_s: float | None) -> TrainSummary:
    """Train from the newest checkpoint (or the start), then save the adapter and write the summary; a progress line
    every `every_s` seconds (None: none)."""
    resume = last_checkpoint(out / CHECKPOINTS)
    base = {**base, "resumed_from": _step_of(resume)}
    beat = Heartbeat("refed train", StepLine(trainer, _step_of(resume)), every_s) if every_s is not None else None
    try:
        with beat or contextlib.nullcontext():
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except KeyboardInterrupt:
        summary = _summary(trainer, base, start, None, None, "interrupted")
        write_json_atomic(out / SUMMARY, summary.to_json())
        raise RunInterrupted(summary) from None
    held_loss = trainer.evaluate()["eval_loss"] if trainer.eval_dataset else None
    adapter = (out / ADAPTER).resolve()
    trainer.model.save_pretrained(str(adapter))
    summary = _summary(trainer, base, start, held_loss, str(adapter), "complete")
    write_json_atomic(out / SUMMARY, summary.to_json())
    return summary


def _trainer(peft: Any, student: Student, settings: TrainConfig, out: Path, train: list[Pair], held: list[Pair]) -> Any:
    """transformers' Trainer over the student with LoRA adapters on `target_modules`, printing nothing itself."""
    transformers = student.transformers
    transformers.set_seed(settings.seed)
    lora = peft.LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules,
    )
    try:
        model = peft.get_peft_model(student.model, lora)
    except ValueError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"[train] target_modules {settings.target_modules} on {student.name}: {first[:300]}"
        ) from None
    trainer = transformers.Trainer(
        model=model,
        args=arguments(transformers, settings, student, out, steps_of(settings, len(train))),
        train_dataset=examples(student, settings, train),
        eval_dataset=examples(student, settings, held) or None,
        data_collator=Collate(student.torch, student.tokenizer.pad_token_id),
    )
    trainer.remove_callback(transformers.PrinterCallback)
    return trainer


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-", 1)[1]) if checkpoint else 0


def finished_training(out: Path) -> TrainSummary | None:
    """The summary of a training `out` holds when it ended, with its adapter there; else None."""
    try:
        summary = TrainSummary.model_validate(json.loads((out / SUMMARY).read_text()))
    except (OSError, ValueError):
        return None
    if summary.status != "complete" or not (out / ADAPTER).is_dir():  # the folder's own: it may have moved
        return None
    return summary


def _summary(
    trainer: Any, base: dict[str, Any], start: float, held_loss: float | None, adapter: str | None, status: str
) -> TrainSummary:
    logged = [e for e in trainer.state.log_history if "loss" in e]
    return TrainSummary(
        **base,
        steps=trainer.state.global_step,
        losses=[round(float(e["loss"]), 6) for e in logged],
        loss_steps=[int(e["step"]) for e in logged],
        held_out_loss=None if held_loss is None else round(float(held_loss), 6),
        wall_s=round(time.monotonic() - start, 2),
        adapter=adapter,
        status=status,
    )


def track_training(config: Config, out: Path, summary: TrainSummary) -> None:
    """The training as the MLflow run of `out`: [train]'s settings, the loss curve, the held-out loss, the adapter."""
    import mlflow

    with failure_warned(out), mlflow_run(config, out) as run:
        if "steps" in run.data.metrics:  # logged by the invocation that finished it
            return
        mlflow.set_tag(KIND_TAG, "train")
        log_params_once(flat_params(config.train.model_dump(mode="json"), "train."))
        for step, loss in zip(summary.loss_steps, summary.losses, strict=True):
            mlflow.log_metric("train_loss", loss, step=step)
        figures = {"held_out_loss": summary.held_out_loss, "steps": summary.steps, "wall_s": summary.wall_s}
        mlflow.log_metrics({k: float(v) for k, v in figures.items() if v is not None})
        mlflow.log_artifacts(str(out / ADAPTER), artifact_path=ADAPTER)
        mlflow.log_artifact(str(out / SUMMARY))
