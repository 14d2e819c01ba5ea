"""The write-ahead record of a run's provider batches: `<run dir>/batches/`.

- `<local id>.jsonl`: a batch's request lines, written (and fsynced) before anything is sent;
- `journal.jsonl`: what happened to each batch, each event appended before the step it enables:
  `plan` (its custom_ids and the most each can cost, `b`; before the upload), `file` (the uploaded file's id), `create` (the provider's
  batch id, right after the create call returns), `state` (last status seen: for `refed status`), `collected`
  (every result line is in results.jsonl);
- `results.jsonl`: one line per result, by custom_id, appended as downloaded (before the batch is collected).

A kill between two steps leaves a batch whose next step is known from its last event; the steps that may
have reached the provider without being journaled (an upload, a create) are found again at the provider
(by file name and by the batch's metadata) before anything is sent again. Nothing here talks to a provider.

The batches as `refed status` shows them (`read_batches`, `batch_counts`, `batch_lines`): their counts, and a table
(state, requests, age). Read-only: it reads the run dir's batch journal (a torn last line is skipped, not cut off)
and asks no provider anything.

What the provider billed (`answered_usage`, `open_requests`, `BatchLedger`): what it answered in a run's batches and
what it may still bill, by stage, against what the records hold.

A batch run's records carry the usage of the calls their work made; a call answered by a batch whose work a kill
cut off is in no record (the resumed run finds its answer in the cache and pays nothing for it again), and a request
in a batch still open at the provider may yet be answered and billed. The batch store holds every answer the provider
gave, and each request's bound (the most it can cost, written to the journal before its batch is sent), so what was
billed is read from it: by a summary (`answered_usage`, `open_requests`), and by the budget while the run goes on
(`BatchLedger`). Reading only: nothing here writes the store.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.clients.prompt_cache import count_text
from refed_dspy.engine.progress import rough_duration
from refed_dspy.errors import RunDirError
from refed_dspy.ledger.lines import batch_event, batch_result, read_lines
from refed_dspy.ledger.usage import BILLED_FIELDS, CACHE_WRITE, with_unrecorded, zero_usage
from refed_dspy.providers.prices import Price
from refed_dspy.providers.registry import batch_apis
from refed_dspy.store.jsonl import JsonlWriter, read_jsonl, write_jsonl_atomic
from refed_dspy.store.results import Result


@dataclass
class BatchEntry:
    """One local batch, as the journal tells it."""

    local_id: str
    api: str
    custom_ids: list[str]
    planned_at: float
    stage: str = ""
    file_id: str | None = None
    provider_id: str | None = None
    status: str = "planned"  # planned | the provider's last status | collected
    counts: dict[str, int] = field(default_factory=dict)
    collected: bool = False
    final: str | None = None  # the provider's final status, once collected
    bounds: list[float] | None = None  # the most each request can cost, in custom_ids' order (None: not written)

    @property
    def open(self) -> bool:
        return not self.collected


@dataclass
class StoredResult:
    """One request's outcome: an HTTP status and body (ok or error), or `lost` (expired, cancelled, failed:
    the request was not answered and may be sent again in a later batch)."""

    custom_id: str
    batch: str
    status: int
    body: Any = None
    lost: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "custom_id": self.custom_id,
            "batch": self.batch,
            "status": self.status,
            "body": self.body,
            "lost": self.lost,
        }


class BatchStore:
    """Reads and appends the batch record of one run dir (one writer: the run's lock holder)."""

    def __init__(self, run_dir: str | Path, name: str = "batches", readonly: bool = False):
        self.dir = Path(run_dir) / name
        self.journal_path = self.dir / "journal.jsonl"
        self.results_path = self.dir / "results.jsonl"
        self.batches: dict[str, BatchEntry] = {}
        self.results: dict[str, StoredResult] = {}  # the latest outcome per custom_id
        self.lost_count: dict[str, int] = {}  # times each custom_id came back unanswered
        self.open_index: dict[str, str] = {}  # custom_id -> local id, for the batches not yet collected
        self._journal: JsonlWriter | None = None
        self._results: JsonlWriter | None = None
        self.readonly = readonly  # a reader (refed status): a torn last line is skipped, not cut off
        self.load()

    # ---- reading ------------------------------------------------------------------------------
    def load(self) -> None:
        self.batches.clear()
        self.results.clear()
        self.lost_count.clear()
        self.open_index.clear()
        # write-ahead files: each line checked before it is believed (refed_dspy.ledger.lines)
        events, _ = read_lines(self.journal_path, batch_event, repair=not self.readonly)
        for ev in events:
            self._apply(ev)
        rows, _ = read_lines(self.results_path, batch_result, repair=not self.readonly)
        for row in rows:
            self._note_result(
                StoredResult(
                    row["custom_id"],
                    row.get("batch", ""),
                    int(row.get("status") or 0),
                    row.get("body"),
                    row.get("lost"),
                )
            )

    def _apply(self, ev: dict[str, Any]) -> None:
        kind, local = ev.get("e"), ev.get("batch")
        if kind == "plan":
            self.batches[local] = BatchEntry(
                local, ev["api"], list(ev["custom_ids"]), ev.get("t", 0.0), ev.get("stage", ""), bounds=ev.get("b")
            )
            self.open_index.update(dict.fromkeys(ev["custom_ids"], local))
            return
        entry = self.batches.get(local)
        if entry is None:
            return
        if kind == "file":
            entry.file_id = ev["file_id"]
        elif kind == "create":
            entry.provider_id = ev["id"]
            entry.status = ev.get("status") or "submitted"
        elif kind == "state":
            entry.status, entry.counts = ev["status"], ev.get("counts") or {}
        elif kind == "collected":
            entry.collected, entry.final, entry.status = True, ev.get("status"), ev.get("status") or entry.status
            for cid in entry.custom_ids:
                if self.open_index.get(cid) == local:
                    del self.open_index[cid]

    def _note_result(self, result: StoredResult) -> None:
        if result.lost:
            self.lost_count[result.custom_id] = self.lost_count.get(result.custom_id, 0) + 1
            if result.custom_id in self.results and not self.results[result.custom_id].lost:
                return  # an answer already in beats a later 'lost' for the same request
        self.results[result.custom_id] = result

    def requests_of(self, local_id: str) -> list[dict[str, Any]]:
        """The request lines written for a batch."""
        return list(read_jsonl(self.dir / f"{local_id}.jsonl"))

    def open_batches(self) -> list[BatchEntry]:
        return [b for b in self.batches.values() if b.open]

    def in_open_batch(self) -> dict[str, str]:
        """custom_id -> local id, for the requests of batches not yet collected (kept up to date, not rebuilt)."""
        return self.open_index

    # ---- writing ------------------------------------------------------------------------------
    def _event(self, ev: dict[str, Any]) -> None:
        if self._journal is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._journal = JsonlWriter(self.journal_path, fsync=True)
        ev = {**ev, "t": round(ev.get("t") or time.time(), 3)}
        self._journal.append(ev)
        self._apply(ev)

    def next_local_id(self) -> str:
        return f"b{len(self.batches) + 1:05d}"

    def plan(self, api: str, stage: str, lines: list[dict[str, Any]], bounds: list[float] | None = None) -> BatchEntry:
        """Write a new batch's request lines, then journal it, with the most each request can cost (`bounds`, in the
        lines' order: what the provider may bill for it once it is sent): from here on it is never lost nor sent
        twice, and never uncounted."""
        local = self.next_local_id()
        self.dir.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(self.dir / f"{local}.jsonl", lines, durable=True)
        event = {"e": "plan", "batch": local, "api": api, "stage": stage, "custom_ids": [x["custom_id"] for x in lines]}
        if bounds is not None:
            event["b"] = bounds
        self._event(event)
        return self.batches[local]

    def file_uploaded(self, local_id: str, file_id: str) -> None:
        self._event({"e": "file", "batch": local_id, "file_id": file_id})

    def created(self, local_id: str, provider_id: str, status: str | None = None) -> None:
        self._event({"e": "create", "batch": local_id, "id": provider_id, "status": status})

    def state(self, local_id: str, status: str, counts: dict[str, int]) -> None:
        entry = self.batches[local_id]
        if entry.status == status and entry.counts == counts:
            return
        self._event({"e": "state", "batch": local_id, "status": status, "counts": counts})

    def add_results(self, results: list[StoredResult]) -> None:
        """Append the results of a batch not yet collected (a result already stored for this batch is skipped, so
        a download repeated after a kill adds nothing twice)."""
        if self._results is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._results = JsonlWriter(self.results_path, fsync=False)
        for r in results:
            old = self.results.get(r.custom_id)
            if old is not None and old.batch == r.batch and bool(old.lost) == bool(r.lost):
                continue
            self._results.append(r.to_dict())
            self._note_result(r)
        if results:
            self._results.sync()

    def collected(self, local_id: str, status: str) -> None:
        self._event({"e": "collected", "batch": local_id, "status": status})

    def close(self) -> None:
        for w in (self._journal, self._results):
            if w is not None:
                w.close()
        self._journal = self._results = None


BATCH_DIRS = {"synthesis": "batches", "judging": "judge_batches"}


class OpenBatch(Result):
    """A batch not yet collected: at the provider, or planned and not yet created there."""

    id: str
    stage: str
    provider_id: str | None
    state: str = Field(description="planned, or the provider's last status seen")
    requests: int
    answered: int
    failed: int
    age_s: float


class BatchCounts(Result):
    """The batches of one stage of a run (synthesis or judging)."""

    batches: int
    open: int
    waiting_requests: int = Field(description="Requests in the open batches.")
    resent_requests: int = Field(description="Requests that came back unanswered and were sent again.")
    open_batches: list[OpenBatch]


def read_batches(run_dir: str | Path, name: str) -> BatchStore | None:
    """The batch record `name` of `run_dir`, read-only (None when the run has none)."""
    if not (Path(run_dir) / name).is_dir():
        return None
    return BatchStore(run_dir, name, readonly=True)


def moves_with_batches_closed(run_dir: str | Path, name: str, moves: list[str]) -> list[str]:
    """`moves` (the endpoints a resumed run or judging moved: config.schema.endpoint_diff), once it is sure no batch
    of `run_dir`'s record `name` is still open at the old endpoint: RunDirError when one is (its requests are paid
    and known only there; polled at the new endpoint they would be lost, or sent again)."""
    store = read_batches(run_dir, name) if moves else None
    if store is not None and store.open_batches():
        raise RunDirError(
            f"{run_dir}: the endpoint moved ({'; '.join(moves)}) while {len(store.open_batches())} batches sent to the "
            "old one are still open; run it once more at the old api_base to collect them, then move"
        )
    return moves


def batches_open_before_online(run_dir: str | Path, name: str, batch: bool, section: str) -> None:
    """RunDirError when a run (or judging) resumes online (`batch` False) while batches of `run_dir`'s record `name`
    are still open: the provider answers and bills their requests, which only that record knows and collects; sent
    online as well, they would be paid twice and pass the command's caps. `section`: the config section of the mode."""
    store = read_batches(run_dir, name) if not batch else None
    still = store.open_batches() if store is not None else []
    if still:
        requests = sum(len(b.custom_ids) for b in still)
        raise RunDirError(
            f"{run_dir}: {len(still)} batches ({requests} requests) of batch mode are not collected yet, and the "
            f'provider answers and bills them; resume with {section}.mode = "batch" to collect them, then go on online'
        )


def _done(counts: dict[str, int]) -> tuple[int, int]:
    """(answered, failed) from either provider's request counts."""
    if "succeeded" in counts:
        return counts.get("succeeded", 0) + counts.get("errored", 0), counts.get("errored", 0)
    return counts.get("completed", 0) + counts.get("failed", 0), counts.get("failed", 0)


def batch_counts(store: BatchStore, now: float) -> BatchCounts:
    """How many batches, which are still open (with the provider's last counts) and their requests, how many
    requests went out again."""
    open_ = store.open_batches()
    return BatchCounts(
        batches=len(store.batches),
        open=len(open_),
        waiting_requests=sum(len(b.custom_ids) for b in open_),
        resent_requests=sum(store.lost_count.values()),
        open_batches=[
            OpenBatch(
                id=b.local_id,
                stage=b.stage,
                provider_id=b.provider_id,
                state=b.status,
                requests=len(b.custom_ids),
                answered=_done(b.counts)[0],
                failed=_done(b.counts)[1],
                age_s=round(max(0.0, now - b.planned_at), 1),
            )
            for b in open_
        ],
    )


def batch_lines(counts: BatchCounts) -> list[str]:
    """What `refed status` prints of one stage's batches: a line of counts, then a table of the open ones."""
    out = [
        f"{counts.batches} batches, {counts.open} open ({counts.waiting_requests} requests waiting); "
        f"{counts.resent_requests} requests came back unanswered and were sent again"
    ]
    if counts.open_batches:
        out.append(
            f"  {'batch':7} {'stage':10} {'provider id':22} {'state':12} {'requests':>8} {'answered':>8} "
            f"{'failed':>6} {'age':>6}"
        )
    for b in counts.open_batches:
        out.append(
            f"  {b.id:7} {b.stage:10} {(b.provider_id or '(not created)'):22} {b.state:12} "
            f"{b.requests:>8} {b.answered:>8} {b.failed:>6} {rough_duration(b.age_s):>6}"
        )
    return out


def tokens_of(api: str | None, body: Any) -> tuple[int, int, int]:
    """(prompt, completion, cached) tokens of one answered request's body from the batch API called `api`, counted as
    DSPy counts an online reply of its format (`Wire.usage`); (0, 0, 0) for an API no provider has."""
    known = batch_apis().get(api or "")
    return known.wire.tokens(body) if known is not None else (0, 0, 0)


def written_of(api: str | None, body: Any) -> int:
    """Prompt tokens of one answered request's body from the batch API called `api` written to the provider's prompt
    cache (0: none reported)."""
    known = batch_apis().get(api or "")
    return known.wire.cache_written(body) if known is not None else 0


def reasoning_of(api: str | None, body: Any) -> int:
    """The hidden reasoning tokens of one answered request's body (inside its completion tokens; 0 unsaid)."""
    known = batch_apis().get(api or "")
    return known.wire.reasoning_tokens(body) if known is not None else 0


def _zero() -> dict[str, int]:
    return dict.fromkeys((*BILLED_FIELDS, CACHE_WRITE), 0)


def billed_of(store: BatchStore, result: StoredResult) -> tuple[str, dict[str, int]]:
    """(stage, what the provider bills for it: one call and its tokens) of one successful answer in `store`."""
    entry = store.batches.get(result.batch)
    # an answer whose batch the journal lost (a torn line): read as one of the first batch API (by rank)
    api, stage = (entry.api, entry.stage) if entry is not None else (next(iter(batch_apis()), None), "unknown")
    prompt, completion, cached = tokens_of(api, result.body)
    return stage, {
        "calls": 1,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        CACHE_WRITE: written_of(api, result.body),
        "reasoning_tokens": reasoning_of(api, result.body),
    }


def _add(bucket: dict[str, int], figures: dict[str, int], sign: int = 1) -> None:
    for key, n in figures.items():
        bucket[key] = bucket.get(key, 0) + sign * n


def answered_usage(store: BatchStore) -> dict[str, dict[str, int]]:
    """Stage -> the calls (successful answers) and tokens the provider gave in this store's batches."""
    out: dict[str, dict[str, int]] = {}
    for result in store.results.values():
        if not result.lost and result.status == 200:
            stage, figures = billed_of(store, result)
            _add(out.setdefault(stage, _zero()), figures)
    return out


def answered_costs(store: BatchStore, price: Price | None) -> list[float]:
    """What each successful answer in `store` cost at `price` ([] without a price)."""
    if price is None:
        return []
    out = []
    for result in store.results.values():
        if not result.lost and result.status == 200:
            _, billed = billed_of(store, result)
            out.append(
                price.cost(
                    billed["prompt_tokens"],
                    billed["completion_tokens"],
                    billed["cached_tokens"],
                    billed[CACHE_WRITE],
                    billed["reasoning_tokens"],
                )
            )
    return out


@dataclass(frozen=True)
class OpenRequest:
    """A request in a batch not yet collected, with no answer stored: the provider may answer and bill it."""

    custom_id: str
    stage: str
    bound: float | None  # the most it can cost, as its batch's plan wrote it (None: a plan written without bounds)


def open_requests(store: BatchStore) -> list[OpenRequest]:
    """The requests of the store's open batches that have no answer stored (each may still be billed)."""
    out = []
    for entry in store.open_batches():
        bounds = entry.bounds or [None] * len(entry.custom_ids)
        for cid, bound in zip(entry.custom_ids, bounds, strict=False):
            found = store.results.get(cid)
            if found is None or found.lost:
                out.append(OpenRequest(cid, entry.stage, bound))
    return out


def with_open(usage: dict[str, Any], requests: list[OpenRequest]) -> dict[str, Any]:
    """`usage` with the requests in open batches (`requests`) counted as calls in flight: paid at the most they can
    cost, their tokens unknown (`interrupted_calls`, `interrupted_cost_usd`), said apart as `in_open_batches`; a
    request whose bound is not known makes the cost unknown. `usage` itself is not changed."""
    if not requests:
        return usage
    out = {**usage, "by_stage": {name: dict(bucket) for name, bucket in (usage.get("by_stage") or {}).items()}}
    for req in requests:
        for bucket in (out, out["by_stage"].setdefault(req.stage, zero_usage())):
            for key in ("calls", "interrupted_calls", "in_open_batches"):
                bucket[key] = int(bucket.get(key) or 0) + 1
            bucket["interrupted_cost_usd"] = float(bucket.get("interrupted_cost_usd") or 0.0) + (req.bound or 0.0)
            if req.bound is None:
                bucket["cost_usd"] = None
    return out


def request_bound(
    price: Price | None, max_tokens: int, weigh: Callable[[int, int], int] = lambda counted, most: counted
) -> Callable[[dict[str, Any]], tuple[float, int]]:
    """How the most one batch request can cost is reckoned from its body (the JSON the provider is sent): every token
    of the body, as counted before sending and weighed by `weigh` (the count and the body's UTF-8 bytes -> the tokens
    the provider may count: CallBudget.weighed_prompt), priced as prompt (written to the provider's cache where that is
    dearer), and the output limit it asks for (`max_tokens` where it asks none) priced as output; with the count (what
    the provider's count of its prompt is weighed against when it answers). 0 for an LM without a price."""

    def bound(body: dict[str, Any]) -> tuple[float, int]:
        if price is None:
            return 0.0, 0
        asked = body.get("max_tokens") or body.get("max_completion_tokens") or max_tokens
        text = json.dumps(body, ensure_ascii=False)
        counted = count_text(text)
        return round(price.bound(weigh(counted, len(text.encode("utf-8"))), int(asked or 0)), 8), counted

    return bound


class BatchLedger:
    """What the run's batches paid, or may still bill, that no record holds and no piece of work of this invocation
    asked for: answers whose work a kill cut off (at their tokens' price, as a summary says them under
    `usage.unrecorded`) and requests of batches an earlier invocation left open (at their bound, until they are
    answered or asked for again). The budget charges it on top of what the records hold (CallBudget.apart), so that
    a run killed and resumed is stopped by what the provider bills, not by what its records hold.

    A request asked for by a piece of work of this invocation is that work's: its reservation covers it, and its
    record will hold it; it leaves this ledger (`claim`). An answer collected for a request nobody here asked for
    joins it (`collected`). `recorded` is what the records held when the run started, against which the answers of
    earlier invocations are weighed stage by stage (refed_dspy.ledger.usage.with_unrecorded)."""

    def __init__(self, store: BatchStore, recorded: dict[str, Any], price: Price | None, resubmits: int):
        self.store = store
        self.recorded = copy.deepcopy(recorded)
        self.price = price
        self.resubmits = resubmits
        self.unclaimed: dict[str, dict[str, int]] = {}  # stage -> answers no piece of work here asked for
        self.counted: set[str] = set()  # the custom_ids of those answers
        self.open = {req.custom_id: req for req in open_requests(store)}
        self.claimed: set[str] = set()  # the base ids asked for by this invocation's pieces of work
        for cid, result in store.results.items():
            self._answered(cid, result)
        self._figures: tuple[int, float, float] | None = None

    def _answered(self, cid: str, result: StoredResult) -> None:
        if cid in self.counted or result.lost or result.status != 200:
            return
        stage, figures = billed_of(self.store, result)
        _add(self.unclaimed.setdefault(stage, _zero()), figures)
        self.counted.add(cid)

    def claim(self, base: str) -> None:
        """A piece of work of this invocation asked for the request of custom_id family `base`: it is that work's."""
        if base in self.claimed:
            return
        self.claimed.add(base)
        for k in range(self.resubmits + 1):
            cid = f"{base}-{k}"
            self.open.pop(cid, None)
            if cid in self.counted:
                self.counted.discard(cid)
                stage, figures = billed_of(self.store, self.store.results[cid])
                _add(self.unclaimed[stage], figures, -1)
        self._figures = None

    def collected(self, results: list[StoredResult]) -> None:
        """Results of a batch are stored: those of requests nobody here asked for join the ledger as paid (answered) or
        leave it (unanswered: not billed)."""
        for result in results:
            if result.custom_id.rsplit("-", 1)[0] in self.claimed:
                continue
            self.open.pop(result.custom_id, None)
            self._answered(result.custom_id, result)
        self._figures = None

    def figures(self) -> tuple[int, float, float]:
        """(calls, their known cost, the most the open ones can cost): what the budget charges apart."""
        if self._figures is None:
            found = with_unrecorded(self.recorded, self.unclaimed, self.price).get("unrecorded") or {}
            bound = sum(req.bound or 0.0 for req in self.open.values())
            self._figures = (int(found.get("calls") or 0) + len(self.open), float(found.get("cost_usd") or 0.0), bound)
        return self._figures
