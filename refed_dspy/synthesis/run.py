"""The synthesis stage: feedback, work units, samples; budgeted and resumable, on the execution engine.

The engine (refed_dspy.engine) runs the calls: the window of calls in flight, budget reservations,
retries, AIMD, the failure streak, accounting and the stop on a signal. This stage says what to start
next and writes what finished. Samples are started only while accepted + running + waiting to retry <
size, so a run ends with exactly `size` samples. A unit whose reference's feedback is not in yet is
parked (it holds no slot) until it is; slots that would idle collect the feedback of references that
the units still to start will need.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import dspy

from refed_dspy.adapters import RepairingAdapter, build_adapter
from refed_dspy.clients.lm import collect_calls, price_of, stage
from refed_dspy.clients.pricing import Price
from refed_dspy.clients.usage import usage_of
from refed_dspy.config import Config, config_hash
from refed_dspy.engine import Engine, Limits
from refed_dspy.engine.failures import Failure, classify
from refed_dspy.engine.progress import Progress
from refed_dspy.errors import RunAborted
from refed_dspy.methods import Method, get_method
from refed_dspy.programs.parts import acall_part
from refed_dspy.store.jsonl import read_json, read_jsonl, write_json_atomic
from refed_dspy.store.records import (
    Reference,
    ReferenceFeedback,
    RejectRecord,
    SampleMeta,
    SampleRecord,
    content_id,
)
from refed_dspy.store.rundir import ResumeState, RunDir
from refed_dspy.synthesis.program import RunProgram, resolve_program
from refed_dspy.synthesis.units import TASK_STAGES, Item, Unit, default_call_budget, feedback_record, unit_order
from refed_dspy.text import Deduper

log = logging.getLogger(__name__)

_PRIOR_PROMPT_TOKENS = 2000


@dataclass
class RunStats:
    """Figures of this invocation (the summary adds those of earlier invocations from the files)."""

    started: float = field(default_factory=time.monotonic)
    new_samples: int = 0
    rejects: Counter = field(default_factory=Counter)


def estimate_error(path: Any, usage: dict[str, Any], samples: int, size: int, batch: bool) -> dict[str, Any]:
    """{"estimate": ...}: what `refed estimate` said (its estimate.json in the run dir) and how far off the run is,
    in cost (at the mode's price) and calls, once the run has all its samples; {} without an estimate."""
    e = read_json(path)
    total = e.get("total") if isinstance(e, dict) else None
    if not isinstance(total, dict) or e.get("size") != size:
        return {}
    key = "batch_cost_usd" if batch else "cost_usd"
    out: dict[str, Any] = {
        "cost_usd": total.get(key),
        "calls": total.get("calls"),
        "cost_range_usd": [
            total.get(key.replace("cost_usd", "cost_low_usd")),
            total.get(key.replace("cost_usd", "cost_high_usd")),
        ],
    }
    if samples >= size:
        cost = usage.get("cost_usd")
        if cost is not None and out["cost_usd"]:
            out["cost_error"] = round((cost - out["cost_usd"]) / out["cost_usd"], 4)
        if out["calls"]:
            out["calls_error"] = round((usage["calls"] - out["calls"]) / out["calls"], 4)
    return {"estimate": out}


class SynthesisRun:
    """Runs one synthesis config to completion against a teacher LM. Use `run_synthesis`."""

    def __init__(
        self,
        config: Config,
        references: list[Reference],
        teacher: dspy.LM,
        rundir: RunDir,
        program: RunProgram | None = None,
        show_progress: bool = False,
        adapter: RepairingAdapter | None = None,
        broker: Any = None,
    ):
        self.config = config
        self.syn = config.synthesis
        self.method: Method = get_method(self.syn.method)
        self.refs = references
        self.teacher = teacher
        self.rundir = rundir
        self.price: Price | None = price_of(config.teacher, batch=broker is not None)
        if program is None:
            program, _ = resolve_program(config, self.method)
        self.program = program
        # the runner schedules the pipeline's parts itself; each comes from the program, compiled or not
        self.collect = getattr(program.program, "collect", None)
        self.synthesizer = getattr(program.program, "synthesizer", None)
        self.respond = program.program.respond
        self.program_id = program.identity
        self.executor = (
            ThreadPoolExecutor(max_workers=max(1, self.syn.concurrency), thread_name_prefix="refed-part")
            if program.threaded
            else None
        )
        self.show_progress = show_progress
        self.adapter = adapter or build_adapter(config.teacher)
        self.max_calls = default_call_budget(self.syn, len(references))
        self.engine = Engine(
            self,
            Limits(
                concurrency=config.batch.max_in_flight if broker is not None else self.syn.concurrency,
                max_retries=config.teacher.num_retries,
                worst_calls={kind: n * (1 + config.teacher.max_repairs) for kind, n in self._worst_calls().items()},
                max_calls=self.max_calls,
                max_cost_usd=self.syn.max_cost_usd,
                price=self.price,
                max_tokens=config.teacher.max_tokens,
                prior_prompt_tokens=_PRIOR_PROMPT_TOKENS,
                max_consecutive_failures=self.syn.max_consecutive_failures,
                role="teacher",
                stop_grace_s=config.run.stop_grace_s,
                seed=self.syn.seed,
            ),
            broker=broker,
        )
        self.chash = config_hash(config)
        self.stats = RunStats()
        self.pool: deque[Item] = deque()
        self.feedback: dict[str, ReferenceFeedback] = {}
        self.feedback_failed: set[str] = set()
        self.feedback_pending: set[str] = set()  # references whose feedback is being collected
        self.done_units: set[str] = set()
        self.dedup = Deduper(self.syn.dedup_rouge_threshold)
        self.accepted = 0
        self.reject_keys: set[str] = set()
        self.earlier_wall_s = 0.0
        n_features = len(self.method.features)
        per_pass = max(1, len(references) * n_features * self.syn.instructions_per_feature)
        self.max_passes = 2 * math.ceil(self.syn.size / per_pass) + 2
        self.units = unit_order(len(references), self.method.features, self.max_passes)
        self.upcoming: deque[Unit] = deque()  # units taken from self.units but not started yet
        self.parked: dict[str, list[Unit]] = {}  # units waiting for their reference's feedback, by reference id
        self.n_parked = 0
        self.held_unit: Unit | None = None
        self.earlier_retries = 0

    def _worst_calls(self) -> dict[str, int]:
        """LM calls one task of each kind makes at most: the method's count, or the predictors of the part that
        runs it when a program of the user's has more."""
        parts = {"feedback": self.collect, "unit": self.synthesizer, "sample": self.respond}
        declared = self.method.worst_calls(self.syn)
        return {
            kind: max(declared.get(kind, 0), len(part.named_predictors()) if part is not None else 0)
            for kind, part in parts.items()
        }

    # ---- resume -------------------------------------------------------------------------------
    def _restore(self, state: ResumeState) -> None:
        self.feedback = dict(state.feedback)
        self.feedback_failed = set(state.feedback_failed)
        self.accepted = state.samples
        self.reject_keys = set(state.reject_keys)
        index = {ref.id: i for i, ref in enumerate(self.refs)}
        done_items = state.sample_ids | state.final_reject_ids
        for unit_id, row in state.units.items():
            self.done_units.add(unit_id)
            for text in row.get("kept", []):
                self.dedup.add(text)
            ref_index = index.get(row["reference_id"])
            if ref_index is None:
                continue
            for text in row.get("kept", []):
                item_id = content_id(unit_id, text)
                if item_id not in done_items:
                    self.pool.append(Item(item_id, unit_id, ref_index, row["feature"], text))
        self.engine.totals = state.totals
        for i, ref in enumerate(self.refs):  # the samples a method makes straight from the references
            seed = self.method.seed_item(ref, self.syn)
            if seed is not None and seed.id not in done_items:
                self.pool.append(Item(seed.id, seed.unit, i, seed.feature, seed.instruction))

    # ---- what to start next (the engine calls fill) ---------------------------------------------
    def _incoming(self) -> int:
        n = self.syn.instructions_per_feature
        return len(self.pool) + n * (self.engine.pending["unit"] + self.n_parked)

    def _next_unit(self) -> Unit | None:
        if self.held_unit is not None:
            unit, self.held_unit = self.held_unit, None
            return unit
        while True:
            unit = self.upcoming.popleft() if self.upcoming else next(self.units, None)
            if unit is None:
                return None
            ref = self.refs[unit.ref_index]
            if unit.id(ref) in self.done_units or ref.id in self.feedback_failed:
                continue
            fb = self.feedback.get(ref.id)
            if fb is not None and self.method.feature_description(unit.feature, fb) is None:
                continue
            return unit

    def fill(self, engine: Engine) -> None:
        """Start units, samples and feedback while the engine has slots and the run needs samples."""
        n = self.syn.instructions_per_feature
        while engine.stop_reason is None and engine.abort is None:
            free = engine.slots_free()
            need = self.syn.size - self.accepted - engine.pending["sample"]
            if free <= 0 or need <= 0:
                return
            incoming = self._incoming()
            # keep concurrency + n instructions coming; with nothing to sample, a free slot takes a unit
            if incoming < min(need, self.syn.concurrency + n) or (not self.pool and incoming < need):
                unit = self._next_unit()
                if unit is not None:
                    if not self._start_unit(unit):
                        return
                    continue
            if self.pool:
                item = self.pool.popleft()
                if not engine.start("sample", item, 1):
                    self.pool.appendleft(item)
                    return
                continue
            self._prefetch_feedback(need)
            return

    def _prefetch_feedback(self, need: int) -> None:
        """Fill slots that would idle with the feedback of references that units still to be started
        will need, so a unit never waits for its reference's feedback (that wait holds a slot with no
        call in flight). Only as many units as the run still needs are looked at: no feedback is
        collected that the run would not use."""
        if not self.method.collects_feedback or self.engine.slots_free() < 2:
            return
        if len(self.feedback) + len(self.feedback_pending) + len(self.feedback_failed) >= len(self.refs):
            return  # every reference has (or is getting) its feedback
        n = self.syn.instructions_per_feature
        # units cycle through the references, so the next len(refs) units name every reference they will
        units_needed = min(len(self.refs), math.ceil(max(0, need - self._incoming()) / n))
        looked = 0
        for unit in itertools.chain(self.upcoming, self._more_units()):
            if looked >= units_needed or self.engine.slots_free() < 2 or self.engine.stop_reason is not None:
                return
            looked += 1
            ref = self.refs[unit.ref_index]
            if ref.id in self.feedback or ref.id in self.feedback_pending or ref.id in self.feedback_failed:
                continue
            if not self._start_feedback(ref):
                return

    def _more_units(self) -> Iterator[Unit]:
        """Units after self.upcoming, kept in self.upcoming as they are looked at."""
        for unit in self.units:
            self.upcoming.append(unit)
            yield unit

    def _start_unit(self, unit: Unit) -> bool:
        """Start `unit`, or, when its reference's feedback is not in yet, park it (holding no slot) and
        make sure that feedback is coming; False when nothing could be done for lack of slots or budget."""
        ref = self.refs[unit.ref_index]
        if self.method.collects_feedback and ref.id not in self.feedback:
            starts_feedback = ref.id not in self.feedback_pending
            if starts_feedback and (
                (self.engine.slots_free() < 2 and self.engine.running) or not self._start_feedback(ref)
            ):
                self.held_unit = unit
                return False
            self.parked.setdefault(ref.id, []).append(unit)
            self.n_parked += 1
            return True
        return self.engine.start("unit", unit, 1)

    def _start_feedback(self, ref: Reference) -> bool:
        if not self.engine.start("feedback", ref, 2):
            return False
        self.feedback_pending.add(ref.id)
        return True

    def _unpark(self, ref_id: str) -> None:
        """The reference's feedback is in (or failed): its parked units go first in line again."""
        units = self.parked.pop(ref_id, [])
        self.n_parked -= len(units)
        self.upcoming.extendleft(reversed(units))

    # ---- the work items (no shared state: they return results) -------------------------------
    def work(self, kind: str, payload: Any, calls: list):
        """The coroutine of one piece of work (the engine runs it as a task)."""
        return {"feedback": self._run_feedback, "unit": self._run_unit, "sample": self._run_sample}[kind](
            payload, calls
        )

    async def _run_feedback(self, ref: Reference, calls: list):
        with collect_calls(calls), dspy.context(lm=self.teacher, adapter=self.adapter, trace=None):
            try:
                with stage(TASK_STAGES["feedback"]):  # a part that tags its own calls overrides these defaults
                    pred = await acall_part(self.collect, self.executor, reference=ref)
                return pred, None
            except Exception as err:  # noqa: BLE001 - every failure becomes a reject
                return None, classify(err)

    async def _run_unit(self, unit: Unit, calls: list):
        ref = self.refs[unit.ref_index]
        # a unit starts only once its reference's feedback is in (until then it is parked)
        fb = self.feedback.get(ref.id) if self.method.collects_feedback else None
        description = self.method.feature_description(unit.feature, fb) or ""
        with collect_calls(calls), dspy.context(lm=self.teacher, adapter=self.adapter, trace=None):
            try:
                with stage(TASK_STAGES["unit"]):
                    pred = await acall_part(
                        self.synthesizer,
                        self.executor,
                        reference_instruction=ref.instruction,
                        feature_name=unit.feature,
                        feature_description=description,
                        n=self.syn.instructions_per_feature,
                        rollout_id=unit.pass_no or None,
                    )
                return pred.new_instructions, None
            except Exception as err:  # noqa: BLE001
                return None, classify(err)

    async def _run_sample(self, item: Item, calls: list):
        ref = self.refs[item.ref_index]
        fb = self.feedback.get(ref.id)
        with collect_calls(calls), dspy.context(lm=self.teacher, adapter=self.adapter, trace=None):
            try:
                inputs = self.method.sample_inputs(ref, item.instruction, fb)
                with stage(TASK_STAGES["sample"]):
                    pred = await acall_part(self.respond, self.executor, **inputs)
                record = self._record(item, ref, pred, calls)
                return record, None
            except Exception as err:  # noqa: BLE001
                return None, classify(err)

    def _record(self, item: Item, ref: Reference, pred: dspy.Prediction, calls) -> SampleRecord:
        meta = SampleMeta(
            id=item.id,
            method=self.method.name,
            reference_id=ref.id,
            feature=item.feature,
            teacher=self.config.teacher.model,
            program=self.program_id,
            program_hash=self.program.hash,
            usage=usage_of(calls, self.price),
            unit=item.unit,
            config_hash=self.chash,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        return SampleRecord(**self.method.record_fields(item.instruction, ref, pred, self.syn), meta=meta)

    # ---- handling results (the engine calls handle and note_attempt) ---------------------------------
    def _reject(
        self, failure: Failure, stage: str, item_id: str | None, ref_id: str | None, usage: dict, **extra
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

    def note_attempt(self, key: str, outcome: str, usage: dict) -> None:
        """Journal the usage of an attempt that leaves no record (retried, or cut off by an interruption), so the
        totals read back on resume hold every call that was paid for."""
        self.writers["journal"].append({"kind": "attempt", "task": key, "outcome": outcome, "usage": usage})

    def key(self, kind: str, payload: Any) -> str:
        """What identifies one piece of work across its retries."""
        if kind == "feedback":
            return f"feedback:{payload.id}"
        if kind == "unit":
            return f"unit:{payload.id(self.refs[payload.ref_index])}"
        return f"sample:{payload.id}"

    def handle(self, kind: str, payload: Any, result: Any, failure: Failure | None, usage: dict) -> None:
        """Write what one piece of work produced (a record, or a reject) and queue what it makes possible."""
        if kind == "feedback":
            ref: Reference = payload
            self.feedback_pending.discard(ref.id)
            if failure is None:
                fb = feedback_record(ref, result, usage)
                self.writers["feedback"].append(fb.model_dump(mode="json"))
                self.feedback[ref.id] = fb
                self._unpark(ref.id)
            else:
                if failure.final:
                    self.feedback_failed.add(ref.id)
                self._reject(failure, "feedback", ref.id, ref.id, usage)
                self._unpark(ref.id)  # a final failure: _next_unit skips them; else they ask again
        elif kind == "unit":
            unit: Unit = payload
            ref = self.refs[unit.ref_index]
            uid = unit.id(ref)
            if failure is not None:
                self._reject(failure, "synthesize", uid, ref.id, usage)
                if failure.final:
                    self.done_units.add(uid)
                return
            kept, dropped = [], []
            for text in result:
                reason = self.dedup.offer(text)
                (kept if reason is None else dropped).append((text, reason))
            for text, reason in dropped:
                self._reject(
                    Failure(reason, "dropped by instruction dedup"),
                    "dedup",
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
                    "kept": [t for t, _ in kept],
                    "usage": usage,
                }
            )
            self.done_units.add(uid)
            for text, _ in kept:
                self.pool.append(Item(content_id(uid, text), uid, unit.ref_index, unit.feature, text))
        else:
            item: Item = payload
            if failure is not None:
                self._reject(
                    failure, "sample", item.id, self.refs[item.ref_index].id, usage, instruction=item.instruction
                )
                return
            if self.accepted >= self.syn.size:  # cannot happen: samples start only below size
                return
            self.writers["samples"].append(result.model_dump(mode="json"))
            self.accepted += 1
            self.stats.new_samples += 1

    # ---- the run ------------------------------------------------------------------------------
    async def run(self, resumed: bool) -> dict[str, Any]:
        """Run to completion in a prepared run dir (`resumed`: it holds earlier work); returns the summary.

        Stopped by Ctrl-C, SIGTERM or SIGHUP, it writes the summary (status interrupted) and raises KeyboardInterrupt.
        """
        state = self.rundir.load() if resumed else ResumeState()
        self._restore(state)
        self.earlier_wall_s, self.earlier_retries = self._earlier_figures() if resumed else (0.0, 0)
        self.writers = self.rundir.writers()
        progress = Progress(
            self.syn.size,
            self.accepted,
            enabled=self.show_progress,
            every_s=self.config.run.progress_every_s,
            label="synthesize",
        )
        engine = self.engine
        engine.on_progress = lambda: progress.update(self.accepted, engine.totals, sum(self.stats.rejects.values()))
        try:
            await engine.run_closing(progress, self.writers.values())
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=False)
            status = engine.status(done=self.accepted >= self.syn.size)
            summary = self.summary(status)
            try:
                write_json_atomic(self.rundir.summary, summary)
            except OSError as err:  # the records are complete; the summary is rebuilt on resume
                log.warning("cannot write %s: %s", self.rundir.summary, err.strerror or err)
        if engine.abort is not None:
            raise RunAborted(
                f"run stopped: {engine.abort.detail} ({self.accepted} samples kept in {self.rundir.path}; "
                "run the same command again to resume)"
            )
        if status == "interrupted":
            raise KeyboardInterrupt  # the summary is written; the caller learns that the run was stopped
        return summary

    def _earlier_figures(self) -> tuple[float, int]:
        """Wall time and retries of earlier invocations, from the summary they left (0 when there is none)."""
        old = read_json(self.rundir.summary)
        try:
            wall = float(old.get("wall_s_total", old.get("wall_s", 0.0)))
        except (TypeError, ValueError):
            wall = 0.0
        try:
            retries = int((old.get("retries") or {}).get("total", 0))
        except (TypeError, ValueError, AttributeError):
            retries = 0
        return wall, retries

    def summary(self, status: str) -> dict[str, Any]:
        """Figures of the whole run (all invocations), read back from its files."""
        rejects: Counter = Counter()
        by_stage: Counter = Counter()
        for row in read_jsonl(self.rundir.rejects):
            rejects[row.get("reason", "unknown")] += 1
            by_stage[row.get("stage", "unknown")] += 1
        wall = time.monotonic() - self.stats.started
        usage = self.engine.totals.as_dict()
        samples = self.accepted
        per_sample = {}
        if samples:
            per_sample = {
                "calls": round(usage["calls"] / samples, 3),
                "prompt_tokens": round(usage["prompt_tokens"] / samples, 1),
                "completion_tokens": round(usage["completion_tokens"] / samples, 1),
                "cost_usd": round(usage["cost_usd"] / samples, 6) if usage["cost_usd"] is not None else None,
            }
        return {
            "status": status,
            "run_dir": str(self.rundir.path),
            "method": self.method.name,
            "teacher": self.config.teacher.model,
            "program": self.program_id,
            "program_hash": self.program.hash,
            "adapter": getattr(self.adapter, "choice", None) and self.adapter.choice.as_dict(),
            "config_hash": self.chash,
            "size": self.syn.size,
            "samples": samples,
            "new_samples": self.stats.new_samples,
            "references": len(self.refs),
            "feedback_collected": len(self.feedback),
            "units": len(self.done_units),
            "instructions_kept": len(self.dedup),
            "rejects": dict(rejects),
            "rejects_by_stage": dict(by_stage),
            "retries": {
                "total": self.earlier_retries + sum(self.engine.retries.values()),
                "this_invocation": dict(self.engine.retries),
            },
            "max_calls": self.max_calls,
            "concurrency": self.engine.figures()["concurrency"],
            **self.engine.mode_figures(usage, self.config.teacher.batch_price_factor, self.teacher),
            "usage": usage,
            "per_sample": per_sample,
            "cost_usd": usage["cost_usd"],
            **estimate_error(
                self.rundir.path / "estimate.json", usage, samples, self.syn.size, self.engine.broker is not None
            ),
            "price_known": self.price is not None,
            "wall_s": round(wall, 3),
            "wall_s_total": round(self.earlier_wall_s + wall, 3),
            "samples_per_s": round(self.stats.new_samples / wall, 3) if wall > 0 else None,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
