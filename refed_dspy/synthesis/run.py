"""The synthesis stage: feedback, work units, samples; budgeted and resumable, on the execution engine.

The engine (refed_dspy.engine) runs the calls: the window of calls in flight and its rate-limit controller, budget
reservations, retries, the failure streak, accounting and the stop on a signal. What to start next is next_work.py's to say. This
stage runs one piece of work through its part of the pipeline program, and writes what finished: a record, a
reject, or the journal line of a unit.

The run resolved before any call is a `SynthesisPlan`: what synthesis/api.py makes of the config and of what the
caller handed in, and what the run's stage, its run dir and its tracking read instead of the config.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.adapters import RepairingAdapter
from refed_dspy.config import Config, LMSpec, RunConfig, SynthesisConfig, config_hash
from refed_dspy.config.schema import PROMPT_FORMAT
from refed_dspy.engine.execution import Engine
from refed_dspy.engine.failures import Failure, classify
from refed_dspy.engine.progress import Progress
from refed_dspy.engine.stage import StageBase, Started
from refed_dspy.launch.plan import Launch
from refed_dspy.ledger.usage import Totals, usage_of
from refed_dspy.methods import METHODS, Method
from refed_dspy.store.jsonl import write_json_atomic
from refed_dspy.store.records import Reference, RejectRecord, SampleMeta, SampleRecord, content_id, teacher_key
from refed_dspy.store.rundir import OnMismatch, ResumeState, RunDir
from refed_dspy.synthesis.next_work import (
    TASK_STAGES,
    Item,
    NextWork,
    Unit,
    default_call_budget,
    feedback_record,
    parts_of,
    worst_calls,
)
from refed_dspy.synthesis.program import RunProgram
from refed_dspy.synthesis.summary import (
    RunStats,
    RunSummary,
    earlier_figures,
    run_summary,
)

log = logging.getLogger(__name__)


class SynthesisRun(StageBase):
    """Runs one synthesis plan to completion against its teacher LM (see refed_dspy.synthesis.api)."""

    doing = {"feedback": "collecting feedback", "unit": "synthesizing instructions", "sample": "writing responses"}

    def __init__(self, plan: SynthesisPlan, rundir: RunDir, started: Started, adapter: RepairingAdapter | None = None):
        super().__init__(
            plan.teacher,
            "teacher",
            started,
            adapter,
            prices=plan.launch.prices,
        )
        self.syn = plan.settings
        self.method: Method = METHODS.get(self.syn.method)
        self.refs = plan.references
        self.rundir = rundir
        self.program = plan.program
        # the runner schedules the pipeline's parts itself; each comes from the program, compiled or not
        self.parts = parts_of(self.program.program)  # a compiled program drives every stage
        self.show_progress = plan.show_progress
        self.progress_every_s = plan.run.progress_every_s
        self.new_ledger = plan.run.new_ledger  # go on where the ledger is gone (CallLog.open)
        self.max_calls = default_call_budget(self.syn, len(self.refs))
        concurrency = self.window(self.syn.concurrency)  # on Ray, synthesis.concurrency is per worker
        self.make_engine(
            concurrency=concurrency,
            worst_calls=worst_calls(self.method, self.syn, self.program.builtin, self.parts),
            max_calls=self.max_calls,
            max_cost_usd=self.syn.max_cost_usd,
            max_consecutive_failures=self.syn.max_consecutive_failures,
            stop_grace_s=plan.run.stop_grace_s,
            seed=self.syn.seed,
        )
        self.next_work = NextWork(
            self.method,
            self.syn,
            self.refs,
            concurrency,
            self.syn.dedup_rouge_threshold,
            self.syn.min_yield,
        )
        self.chash = config_hash(plan.record)
        self.estimate_hash = config_hash(plan.record, endpoints=False)  # an estimate of this run's config has it
        effort = plan.teacher.reasoning_effort  # a record says it only where it is set (provenance)
        self.lm_settings: dict[str, Any] = {"reasoning_effort": effort} if effort is not None else {}
        self.stats = RunStats()
        self.accepted = 0
        self.teachers: Counter = Counter()  # samples by (teacher model, endpoint), of all invocations
        self.reject_keys: set[str] = set()
        self.rejects_on_file = 0  # reject records of all invocations, as the summary counts them
        self.writers: dict[str, Any] = {}
        self.earlier_wall_s, self.earlier_retries = 0.0, 0

    # ---- the stage: what to start, one piece of work, what came back ---------------------------
    def fill(self, engine: Engine) -> None:
        self.report.note()  # on Ray, a worker lost since: refed status says so
        self.next_work.fill(engine, self.accepted)

    def take_back(self, kind: str, payload: Any) -> bool:
        return self.next_work.take_back(kind, payload, self.accepted)

    def wants_more(self) -> bool:
        return self.accepted < self.syn.size

    def key(self, kind: str, payload: Any) -> str:
        if kind == "feedback":
            return f"feedback:{payload.id}"
        if kind == "unit":
            return f"unit:{payload.id(self.refs[payload.ref_index])}"
        return f"sample:{payload.id}"

    async def work(self, kind: str, payload: Any, calls: list) -> tuple[Any, Failure | None]:
        """One task: its inputs made here, its part run where the transport runs it, its result read here."""
        pred, failure = await self.run_part(kind, TASK_STAGES[kind], self._inputs(kind, payload), calls)
        if failure is not None:
            return None, failure
        try:
            return self._result(kind, payload, pred, calls), None
        except Exception as err:  # noqa: BLE001 - as the guard does: every failure becomes a reject
            return None, classify(err)

    def _inputs(self, kind: str, payload: Any) -> dict[str, Any]:
        """The inputs of one task's part (a part that tags its own calls overrides the stage's tag)."""
        if kind == "feedback":
            return {"reference": payload}
        ref = self.refs[payload.ref_index]
        if kind == "unit":
            # a unit starts only once its reference's feedback is in (until then it is parked)
            fb = self.next_work.feedback.get(ref.id) if self.method.collects_feedback else None
            return self.method.unit_inputs(ref, payload.feature, fb, self.syn, payload.pass_no)
        return self.method.sample_inputs(ref, payload.instruction, self.next_work.feedback.get(ref.id))

    def _result(self, kind: str, payload: Any, pred: Any, calls: list) -> Any:
        """What a finished part's prediction becomes: feedback as it is, a unit's instructions, a sample's record."""
        if kind == "feedback":
            return pred
        if kind == "unit":
            return pred.new_instructions
        return self._record(payload, self.refs[payload.ref_index], pred, calls)

    def _record(self, item: Item, ref: Reference, pred: dspy.Prediction, calls: list) -> SampleRecord:
        meta = SampleMeta(
            id=item.id,
            method=self.method.name,
            reference_id=ref.id,
            feature=item.feature,
            teacher=self.spec.model,
            endpoint=self.spec.primary_api_base,
            program=self.program.identity,
            program_hash=self.program.hash,
            prompt_format=PROMPT_FORMAT,
            usage=usage_of(calls, self.price),
            unit=item.unit,
            config_hash=self.chash,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **self.lm_settings,
        )
        return SampleRecord(**self.method.record_fields(item.instruction, ref, pred, self.syn), meta=meta)

    def handle(self, kind: str, payload: Any, result: Any, failure: Failure | None, usage: dict) -> None:
        """Write what one piece of work produced (a record, or a reject) and queue what it makes possible."""
        if self.watch is not None:
            self.watch.work_ended(kind, failure.reason if failure is not None else None)
        if kind == "feedback":
            self._feedback_done(payload, result, failure, usage)
        elif kind == "unit":
            self._unit_done(payload, result, failure, usage)
        elif failure is not None:
            ref_id = self.refs[payload.ref_index].id
            self._reject(failure, "sample", payload.id, ref_id, usage, instruction=payload.instruction)
            if failure.final:
                self.next_work.watch.note(False)
        elif self.accepted < self.syn.size:  # always: samples start only below size
            self.writers["samples"].append(result.model_dump(mode="json"))
            self.accepted += 1
            if self.watch is not None:
                self.watch.written()
            self.teachers[teacher_key(result.meta.model_dump())] += 1
            self.next_work.watch.note(True)
            self.stats.new_samples += 1

    def _feedback_done(self, ref: Reference, result: Any, failure: Failure | None, usage: dict) -> None:
        if failure is not None:
            self._reject(failure, "feedback", ref.id, ref.id, usage)
            self.next_work.feedback_in(ref, None, final=failure.final)
            return
        fb = feedback_record(ref, result, usage)
        self.writers["feedback"].append(fb.model_dump(mode="json"))
        self.next_work.feedback_in(ref, fb)

    def _unit_done(self, unit: Unit, texts: Any, failure: Failure | None, usage: dict) -> None:
        ref = self.refs[unit.ref_index]
        uid = unit.id(ref)
        if failure is not None:
            self._reject(failure, "synthesize", uid, ref.id, usage)
            if failure.final:
                self.next_work.done_units.add(uid)
            return
        kept, dropped = self.next_work.unit_in(unit, texts)
        for text, reason, detail in dropped:
            self._reject(
                Failure(reason, detail),
                "dedup" if reason != "degenerate" else "synthesize",
                content_id(uid, text),
                ref.id,
                {},
                instruction=text,
            )
        self.writers["journal"].append(
            {
                "kind": "unit",
                "unit": uid,
                "reference_id": ref.id,
                "feature": unit.feature,
                "pass": unit.pass_no,
                "kept": kept,
                "usage": usage,
            }
        )

    def _reject(
        self, failure: Failure, stage: str, item_id: str | None, ref_id: str | None, usage: dict, **extra: Any
    ) -> None:
        key = f"{stage}:{item_id}"
        self.stats.rejects[failure.reason] += 1
        if key in self.reject_keys and failure.final:
            return
        self.reject_keys.add(key)
        rec = RejectRecord(
            stage=stage, **failure.record_fields(), reference_id=ref_id, item_id=item_id, usage=usage, **extra
        )
        self.writers["rejects"].append(rec.model_dump(mode="json"))
        self.rejects_on_file += 1
        if self.watch is not None:
            self.watch.rejected(stage, failure.reason)

    def note_attempt(self, key: str, outcome: str, usage: dict) -> None:
        """Journal the usage of an attempt that leaves no record (retried, or cut off by an interruption), so the
        totals read back on resume hold every call that was paid for."""
        self.writers["journal"].append({"kind": "attempt", "task": key, "outcome": outcome, "usage": usage})

    # ---- the run ------------------------------------------------------------------------------
    async def run(self, resumed: bool) -> RunSummary:
        """Run to completion in a prepared run dir (`resumed`: it holds earlier work); returns the summary.

        Stopped by Ctrl-C, SIGTERM or SIGHUP, it writes the summary (status interrupted) and raises KeyboardInterrupt.
        """
        totals = Totals()
        state = self.rundir.load(tally=totals.add) if resumed else ResumeState()
        self.next_work.restore(state)
        self.accepted = state.samples
        if self.accepted > self.syn.size:  # a size below what the run has: nothing is made, and nothing removed
            log.info(
                f"{self.rundir.path} has {self.accepted} samples already, more than synthesis.size {self.syn.size}: "
                "nothing to make (a smaller size removes none)"
            )
        self.teachers = state.teachers
        self.reject_keys = set(state.reject_keys)
        self.rejects_on_file = state.rejects
        self.engine.budget.totals = totals
        self.open_log(self.rundir.ledger, self.rundir.shows_ledger, self.new_ledger)
        if resumed:
            self.earlier_wall_s, self.earlier_retries = earlier_figures(self.rundir.summary)
        self.writers = self.rundir.writers()
        self.report.note()
        if self.watch is not None:
            self.watch.begin(self.syn.size, self.accepted, state.reject_reasons)
        progress = Progress(
            self.syn.size,
            self.accepted,
            enabled=self.show_progress,
            every_s=self.progress_every_s,
            label="synthesize",
            cap_usd=self.syn.max_cost_usd,
        )
        return await self.run_to_end(
            progress,
            self.writers.values(),
            lambda: (self.accepted, self.rejects_on_file),
            self._write_summary,
            lambda s: f"{self.accepted} samples kept in {self.rundir.path}",
            done=lambda: self.accepted >= self.syn.size,
        )

    def _write_summary(self, status: str) -> RunSummary:
        self.report.note(final=True)
        summary = run_summary(self, status)
        try:
            write_json_atomic(self.rundir.summary, summary.to_json())
        except OSError as err:  # the records are complete; the summary is rebuilt on resume
            log.warning("cannot write %s: %s", self.rundir.summary, err.strerror or err)
        return summary


@dataclass(frozen=True)
class SynthesisPlan:
    """A synthesis run resolved before any call: its LM (in `launch`), program, references and settings.

    `record` is the config of record (the teacher of record in it, and the program named): what the run dir's
    config.toml and fingerprint, each record's config_hash and MLflow keep of the run. What the run does is read from
    the other fields.
    """

    run_dir: Path
    settings: SynthesisConfig  # [synthesis]
    teacher: LMSpec  # the teacher of record: a teacher handed in is described by its own settings
    program: RunProgram
    references: list[Reference]
    launch: Launch  # the teacher's LM (or Ray's workers), its prices and its transport
    run: RunConfig  # progress and stop settings
    record: Config
    on_mismatch: OnMismatch = "error"  # for a run dir made by another config or program
    show_progress: bool = False
    detach: bool = False  # batch mode: return once the requests are submitted
    answers_from: tuple[Path, ...] = ()  # caches of work the run builds on, read where its own has no answer
    references_given: bool = False  # handed in from Python: kept in the run dir, its seeds of record
