"""The work of a synthesis run, and what it starts next: the policy behind its `fill`, and the state it keeps to decide.

Samples are started only while accepted + running < size, so a run ends with exactly `size` samples. Enough units run
to keep concurrency + n instructions coming. A unit whose reference's feedback is not in yet is parked (it holds no
slot) until it is; slots that would idle collect the feedback of references that the units still to start will need,
and only of those: no feedback is collected that the run would not use.

A sample or a unit refused by a rate limit (429) before any of its calls was paid waits for its Retry-After, but the run
does not: another instruction of the pool (another unit) stands in for it, and when its time comes it is started only
if it is still needed, else it goes back where it came from (no request is sent before its time, no call is paid for
twice). Standing in may make a few instructions more than the run samples (they are kept: a larger run takes them).

It also tells when a run has stopped yielding: most of what it makes is discarded (duplicate or near-duplicate instructions,
samples rejected for good), so asking for more would spend calls on nothing. Pure bookkeeping, no I/O.

The work: units (a reference and one of its features), the items they make, and what each kind of task hands its
part of the pipeline. The runner schedules them; `refed estimate` walks them.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dspy

from refed_dspy.adapters.degenerate import junk_reason
from refed_dspy.engine.execution import Engine
from refed_dspy.methods import Method, SynthesisSettings
from refed_dspy.signatures import FIELD_NAMES
from refed_dspy.store.records import Reference, ReferenceFeedback, content_id
from refed_dspy.store.rundir import ResumeState
from refed_dspy.text.overlap import Deduper

FEEDBACK_SLOTS = 2  # a feedback task holds two slots: describe and critique run at once


class NextWork:
    """The work of one run still to start, and the feedback and units it depends on."""

    def __init__(
        self,
        method: Method,
        syn: SynthesisSettings,
        refs: list[Reference],
        concurrency: int,
        dedup_threshold: float,
        min_yield: float = 0.0,
    ):
        self.method, self.syn, self.refs, self.concurrency = method, syn, refs, concurrency
        self.pool: deque[Item] = deque()  # instructions waiting for their sample
        self.feedback: dict[str, ReferenceFeedback] = {}
        self.feedback_failed: set[str] = set()
        self.feedback_pending: set[str] = set()  # references whose feedback is being collected
        self.done_units: set[str] = set()
        self.dedup = Deduper(dedup_threshold)
        self.watch = YieldWatch(min_yield)  # no new unit starts once it says the run is exhausted
        self.index = {ref.id: i for i, ref in enumerate(refs)}
        self.units = unit_order(len(refs), method.features)  # as many passes as `pass_limit` allows
        self.upcoming: deque[Unit] = deque()  # units taken from self.units but not started yet
        self.parked: dict[str, list[Unit]] = {}  # units waiting for their reference's feedback, by reference id
        self.n_parked = 0
        self.held_unit: Unit | None = None
        self.unusable: set[tuple[int, str]] = set()  # (reference, feature) pairs no pass can give a unit for
        self.engine: Engine | None = None

    def restore(self, state: ResumeState) -> None:
        """Take up what earlier invocations did: feedback, units done (their instructions seen by dedup), and the
        instructions still without a sample."""
        self.feedback = dict(state.feedback)
        self.feedback_failed = set(state.feedback_failed)
        for ref_id in self.feedback_failed:
            self._lose(ref_id)
        done_items = state.sample_ids | state.final_reject_ids
        # a unit that failed for good is done, as in the invocation that met it (its id, unlike an item's, has colons)
        self.done_units.update(rejected for rejected in state.final_reject_ids if ":" in rejected)
        for unit_id, row in state.units.items():
            self.done_units.add(unit_id)
            for text in row.get("kept", []):
                self.dedup.add(text)
            ref_index = self.index.get(row["reference_id"])
            if ref_index is None:
                continue
            for text in row.get("kept", []):
                item_id = content_id(unit_id, text)
                if item_id not in done_items:
                    self.pool.append(Item(item_id, unit_id, ref_index, row["feature"], text))
        for i, ref in enumerate(self.refs):  # the samples a method makes straight from the references
            seed = self.method.seed_item(ref, self.syn)
            if seed is not None and seed.id not in done_items:
                self.pool.append(Item(seed.id, seed.unit, i, seed.feature, seed.instruction))

    # ---- what to start next ------------------------------------------------------------------------
    def fill(self, engine: Engine, accepted: int) -> None:
        """Start units, samples and feedback while the engine has slots and the run needs samples."""
        self.engine = engine
        n = self.syn.instructions_per_feature
        while not engine.stopped:
            need = self._to_start(accepted)
            if engine.slots_free() <= 0 or need <= 0:
                return
            incoming = self._incoming()
            # keep concurrency + n instructions coming; with nothing to sample, a free slot takes a unit (a unit parked
            # for its feedback takes no slot, so no more are parked than that many instructions: a huge size would
            # otherwise park units without end)
            ahead = min(need, self.concurrency + n)
            if incoming < ahead or (not self.pool and incoming < need and self.n_parked * n < ahead):
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

    def take_back(self, kind: str, payload: Any, accepted: int) -> bool:
        """Whether work waiting for its retry's time goes back to where it came from, no longer needed: a sample to
        the pool when those under way (stand-ins included) make the rest of the run's samples, a unit to the units to
        start when the instructions coming without it are enough."""
        engine = self.engine
        assert engine is not None
        if kind == "sample":
            running = engine.pending["sample"] - engine.waiting["sample"]
            if accepted + running < self.syn.size:
                return False
            self.pool.appendleft(payload)
            return True
        if kind == "unit":
            if self._incoming() < min(self._to_start(accepted), self.concurrency + self.syn.instructions_per_feature):
                return False
            self.upcoming.appendleft(payload)
            return True
        return False

    def _to_start(self, accepted: int) -> int:
        """The samples still to start: those waiting for a retry's time that no call was paid for are stood in for."""
        assert self.engine is not None
        return self.syn.size - accepted - self.engine.pending["sample"] + self.engine.waiting["sample"]

    def _incoming(self) -> int:
        assert self.engine is not None
        units = self.engine.pending["unit"] - self.engine.waiting["unit"]  # a unit waiting for a retry is stood in for
        return len(self.pool) + self.syn.instructions_per_feature * (units + self.n_parked)

    def pass_limit(self) -> int:
        """How many passes over the references the run may make: twice as many as the (reference, feature) pairs
        that can still give units need to offer `size` instructions, plus 2. Pairs whose reference's feedback failed
        are not counted, so a teacher that fails on some references does not end the run short of what the others
        can give; a size no pass can reach still ends after a bounded number of units."""
        usable = len(self.refs) * len(self.method.features) - len(self.unusable)
        per_pass = max(1, usable * self.syn.instructions_per_feature)
        return 2 * math.ceil(self.syn.size / per_pass) + 2

    def _lose(self, ref_id: str) -> None:
        """Every feature of reference `ref_id` gives no unit from now on (its feedback failed for good)."""
        i = self.index.get(ref_id)
        if i is not None:
            self.unusable.update((i, feature) for feature in self.method.features)

    def _next_unit(self) -> Unit | None:
        if self.watch.exhausted:
            return None
        if self.held_unit is not None:
            unit, self.held_unit = self.held_unit, None
            return unit
        per_pass = len(self.refs) * len(self.method.features)
        while len(self.unusable) < per_pass:  # some reference can still give some unit
            unit = self.upcoming.popleft() if self.upcoming else next(self.units, None)
            if unit is None:
                return None
            if unit.pass_no >= self.pass_limit():
                self.upcoming.appendleft(unit)  # the limit grows when references fail: it may be taken later
                return None
            ref = self.refs[unit.ref_index]
            if (unit.ref_index, unit.feature) in self.unusable or unit.id(ref) in self.done_units:
                continue
            fb = self.feedback.get(ref.id)
            if ref.id in self.feedback_failed or (
                fb is not None and self.method.feature_description(unit.feature, fb) is None
            ):
                self.unusable.add((unit.ref_index, unit.feature))  # for good: its feedback failed, or no such feature
                continue
            return unit
        return None

    def _prefetch_feedback(self, need: int) -> None:
        """Fill slots that would idle with the feedback of references that units still to be started will need, so
        a unit never waits for its reference's feedback (that wait holds a slot with no call in flight). Only as
        many units as the run still needs are looked at."""
        engine = self.engine
        assert engine is not None
        if not self.method.collects_feedback or engine.slots_free() < FEEDBACK_SLOTS:
            return
        if len(self.feedback) + len(self.feedback_pending) + len(self.feedback_failed) >= len(self.refs):
            return  # every reference has (or is getting) its feedback
        # units cycle through the references, so the next len(refs) units name every reference they will
        units_needed = min(
            len(self.refs), math.ceil(max(0, need - self._incoming()) / self.syn.instructions_per_feature)
        )
        looked = 0
        for unit in itertools.chain(self.upcoming, self._more_units()):
            if looked >= units_needed or engine.slots_free() < FEEDBACK_SLOTS or engine.stopped:
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
        """Start `unit`, or, when its reference's feedback is not in yet, park it (holding no slot) and make sure
        that feedback is coming; False when nothing could be done for lack of slots or budget."""
        engine = self.engine
        assert engine is not None
        ref = self.refs[unit.ref_index]
        if self.method.collects_feedback and ref.id not in self.feedback:
            starts_feedback = ref.id not in self.feedback_pending
            if starts_feedback and (
                (engine.slots_free() < FEEDBACK_SLOTS and engine.busy) or not self._start_feedback(ref)
            ):
                self.held_unit = unit
                return False
            self.parked.setdefault(ref.id, []).append(unit)
            self.n_parked += 1
            return True
        if engine.start("unit", unit, 1):
            return True
        self.held_unit = unit  # the budget must wait for work under way: this unit is next
        return False

    def _start_feedback(self, ref: Reference) -> bool:
        assert self.engine is not None
        if not self.engine.start("feedback", ref, FEEDBACK_SLOTS):
            return False
        self.feedback_pending.add(ref.id)
        return True

    # ---- what came back ----------------------------------------------------------------------------
    def feedback_in(self, ref: Reference, feedback: ReferenceFeedback | None, final: bool = True) -> None:
        """The reference's feedback came (None: it failed; `final`: for good): its parked units go first in line
        again (after a final failure they are skipped; after another one they ask for it again)."""
        self.feedback_pending.discard(ref.id)
        if feedback is not None:
            self.feedback[ref.id] = feedback
        elif final:
            self.feedback_failed.add(ref.id)
            self._lose(ref.id)
        units = self.parked.pop(ref.id, [])
        self.n_parked -= len(units)
        self.upcoming.extendleft(reversed(units))

    def unit_in(self, unit: Unit, texts: list[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
        """A unit's new instructions: those neither junk (a single word, a field name, markup: the gate every method's
        instructions pass, on every route) nor dropped by dedup join the pool; returns (kept, [(dropped, reason,
        detail)])."""
        uid = unit.id(self.refs[unit.ref_index])
        kept, dropped = [], []
        for text in texts:
            junk = junk_reason(text, FIELD_NAMES, instruction=True)
            if junk is not None:
                dropped.append((text, "degenerate", f"the instruction {junk}"))
                self.watch.note(False)
                continue
            reason = self.dedup.offer(text)
            if reason is None:
                kept.append(text)
                self.pool.append(Item(content_id(uid, text), uid, unit.ref_index, unit.feature, text))
            else:
                dropped.append((text, reason, "dropped by instruction dedup"))
                self.watch.note(False)
        self.done_units.add(uid)
        return kept, dropped


YIELD_WINDOW = 100  # the outcomes looked at: enough that a run with a normal share of duplicates never trips it


class YieldWatch:
    """The share of the last `window` outcomes (an instruction dropped by dedup, a sample rejected for good, a sample
    kept) that became samples; below `min_yield` over a full window, the run is exhausted."""

    def __init__(self, min_yield: float, window: int = YIELD_WINDOW):
        self.min_yield = min_yield
        self.window = window
        self.recent: deque[bool] = deque(maxlen=window)
        self.discarded = 0  # in this invocation
        self.reason: str | None = None  # set once, when the run is exhausted

    def note(self, kept: bool) -> None:
        """One outcome: a sample kept (True) or something discarded (False)."""
        self.recent.append(kept)
        self.discarded += not kept
        if self.reason is None and self.min_yield > 0 and len(self.recent) == self.window:
            kept_n = sum(self.recent)
            if kept_n < self.min_yield * self.window:
                self.reason = (
                    f"{self.window - kept_n} of the last {self.window} instructions were duplicates or rejected "
                    f"(synthesis.min_yield = {self.min_yield:g}): these references and this teacher give no more"
                )

    @property
    def exhausted(self) -> bool:
        return self.reason is not None


# the part of the pipeline program each kind of task runs, and the stage its LM calls are accounted under (unless
# the part tags them itself)
TASK_PARTS = {"feedback": "collect", "unit": "synthesizer", "sample": "respond"}
TASK_STAGES = {"feedback": "feedback", "unit": "synthesize", "sample": "respond"}
# A program of the user's may call a predictor more than once (dspy.BestOfN, a loop): its tasks reserve at least
# what any program's did before methods stated their own counts.
UNKNOWN_PART_CALLS = {"feedback": 2, "unit": 1, "sample": 3}


def parts_of(program: dspy.Module) -> dict[str, dspy.Module | None]:
    """{task kind: the part of `program` that runs it} (None: the program has no such part)."""
    return {kind: getattr(program, attribute, None) for kind, attribute in TASK_PARTS.items()}


@dataclass(frozen=True)
class Unit:
    """One synthesis call: a reference, one of its features, and the pass number."""

    pass_no: int
    ref_index: int
    feature: str

    def id(self, ref: Reference) -> str:
        return f"p{self.pass_no}:{ref.id}:{self.feature}"


@dataclass
class Item:
    """An instruction waiting for (or getting) its response."""

    id: str
    unit: str
    ref_index: int
    feature: str
    instruction: str


def default_call_budget(syn: Any, n_refs: int) -> int | None:
    """The run's call cap: synthesis.max_calls when set, else max_calls_per_sample x size + 2 per reference
    (their feedback); None when both are off. A run that keeps failing stops here instead of paying on."""
    if syn.max_calls is not None:
        return syn.max_calls
    if not syn.max_calls_per_sample:
        return None
    return math.ceil(syn.max_calls_per_sample * syn.size) + 2 * n_refs


def unit_order(n_refs: int, features: tuple[str, ...], max_passes: int | None = None) -> Iterator[Unit]:
    """Units in the order a run uses them: every reference once per feature before any twice (without end when
    `max_passes` is None: the run decides when to stop)."""
    for pass_no in range(max_passes) if max_passes is not None else itertools.count():
        for feature in features:
            for ref_index in range(n_refs):
                yield Unit(pass_no, ref_index, feature)


def feedback_record(ref: Reference, pred: dspy.Prediction, usage: dict[str, Any] | None = None) -> ReferenceFeedback:
    """The feedback record of `ref` from what the `collect` part returned."""
    return ReferenceFeedback(
        reference_id=ref.id,
        subject_areas=pred.subject_areas,
        relevant_skills=pred.relevant_skills,
        response_feedback=pred.response_feedback,
        usage=usage or {},
    )


def worst_calls(method: Any, syn: Any, builtin: bool, parts: dict[str, Any]) -> dict[str, int]:
    """LM calls one task of each kind makes at most: `method`'s count for `syn` (the [synthesis] section), or the
    predictors of the part that runs it when a program of the user's (not `builtin`) has more, and for such a program
    no less than UNKNOWN_PART_CALLS."""
    declared = method.worst_calls(syn)
    floor = {} if builtin else UNKNOWN_PART_CALLS
    return {
        kind: max(
            declared.get(kind, 0),
            floor.get(kind, 0) if part is not None else 0,
            len(part.named_predictors()) if part is not None else 0,
        )
        for kind, part in parts.items()
    }
