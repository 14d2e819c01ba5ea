"""The batch broker: a stage's LM calls go to a provider's batch API instead of one HTTP call each.

A stage's work runs exactly as online (same DSPy modules, adapter, messages and cache key); only the LM's
HTTP layer differs. `BrokerHTTP` is an lm15 transport: the request lm15 built for the online endpoint is
handed to the `BatchBroker`, which gives it a `custom_id` (a hash of the piece of work, its attempt and the request
itself, with how many times that same request was asked before in the task: the same request after a restart gets the
same id, whichever earlier calls of its task the resumed run finds in its cache), collects the
requests of every stage that waits, submits them as batches (write-ahead: `BatchStore`), polls, downloads,
and answers each waiting call with its own result, matched by custom_id. lm15 then parses that body as it
would an online reply. Dependent stages flow as waves: a task whose call is answered goes on to its next
call, which joins the next batch.

A request the provider did not answer (its batch expired, was cancelled or failed) is sent again under the
next custom_id of its family (`<id>-1`, `<id>-2`: no custom_id is ever sent twice) up to `max_resubmits`
times; its finished siblings are kept. An answer that is an error (a 500 inside the batch) is returned as
that error: the engine retries it like an online failure, as a new attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from refed_dspy.clients.calls import current_stage
from refed_dspy.clients.lm import build_lm
from refed_dspy.clients.prompt_cache import asked_body
from refed_dspy.config.synthesis import BatchConfig
from refed_dspy.launch.batch.api import BatchAPIError, BatchView, _Client, client_for_spec
from refed_dspy.launch.batch.store import BatchEntry, BatchStore, StoredResult, billed_of
from refed_dspy.providers.keys import check_key
from refed_dspy.providers.registry import provider_for
from refed_dspy.runtime.stops import checkpoint

log = logging.getLogger(__name__)


class BatchWaitCancelled(asyncio.CancelledError):
    """A call waiting for its batch was cancelled (detach, Ctrl-C): nothing was paid for it in this process;
    its answer, if the provider gives one, is stored and read by the run that resumes."""

    unpaid = True


@dataclass
class CallSlot:
    """Which piece of work (and which attempt of it) the LM calls of the current task belong to, and how many times
    each request was asked in it (by its hash). Never an ordinal of calls: a call a resumed run's cache answers does
    not reach the transport, and must not change the identity of the calls after it."""

    key: str
    attempt: int
    hold: Callable[[float, bool], None] = lambda bound, sent: None  # a request's bound held (TaskAccounts.hold)
    asked: dict[str, int] = field(default_factory=dict)

    def occurrence(self, request_hash: str) -> int:
        """How many times this request was asked before in this task (0 the first time), counting this one."""
        n = self.asked.get(request_hash, 0)
        self.asked[request_hash] = n + 1
        return n


_slot: contextvars.ContextVar[CallSlot | None] = contextvars.ContextVar("refed_batch_slot", default=None)


async def in_slot(coro, key: str, attempt: int, hold: Callable[[float, bool], None] = lambda bound, sent: None):
    """Run `coro` (a task's work) with its calls numbered under `key` and `attempt`, each request held at its bound
    by `hold` before it joins a batch (or as it is asked again while an earlier invocation's batch holds it)."""
    _slot.set(CallSlot(key, attempt, hold))
    return await coro


_MAX_API_FAILURES = 10  # batch API errors in a row (every poll_s) before the run stops, resumably


def untiered(raw: bytes) -> bytes:
    """A request's body as a batch sends it: without the service tier its LM names (a batch request asks for none, its
    price is the batch's), so that it is known by what is sent."""
    if b'"service_tier"' not in raw:
        return raw
    body = json.loads(raw)
    body.pop("service_tier", None)
    return json.dumps(body).encode()


def request_hash(url: str, body: bytes) -> str:
    """What a request asks: its endpoint's last path parts (not the host or the key) and its body."""
    h = hashlib.sha256(url.split("?")[0].rsplit("/", 2)[-1].encode())
    h.update(b"\x1f")
    h.update(body)
    return h.hexdigest()


def base_id(key: str, attempt: int, request: str, occurrence: int) -> str:
    """The custom_id family of one call: the same piece of work, attempt, request (its `request_hash`) and occurrence
    of that request in the work give the same id."""
    h = hashlib.sha256("\x1f".join((key, str(attempt), request, str(occurrence))).encode())
    return "r" + h.hexdigest()[:40]


def family(base: str, k: int) -> str:
    return f"{base}-{k}"


class _Reply:
    reason = "OK"
    http_version = "HTTP/1.1"

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body
        self.headers = [("content-type", "application/json")]

    async def read(self) -> bytes:
        return self.body


class _Exchange:
    def __init__(self, broker: BatchBroker, request: Any):
        self.broker = broker
        self.request = request

    async def __aenter__(self) -> _Reply:
        status, body = await self.broker.ask(self.request)
        return _Reply(status, body)

    async def __aexit__(self, *exc: Any) -> bool:
        return False


class BrokerHTTP:
    """An lm15 async transport that hands each request to the broker and returns its batch result."""

    def __init__(self, broker: BatchBroker):
        self.broker = broker

    def stream(self, request: Any) -> _Exchange:
        return _Exchange(self.broker, request)

    async def aclose(self) -> None:
        return None


class BatchBroker:
    """Collects calls into provider batches, submits, polls and answers them (see the module docstring)."""

    def __init__(self, store: BatchStore, client: _Client, settings: BatchConfig, detach: bool = False):
        self.store = store
        self.client = client
        self.settings = settings  # how batches are made and watched: the config's [batch]
        self.detach = detach  # submit and return, without waiting for the batches
        self.pending: dict[str, tuple[str, dict[str, Any], int]] = {}  # custom_id -> (stage, line, bytes)
        self.waiting: dict[str, asyncio.Future] = {}  # base id -> the call waiting for it
        self.last_new = time.monotonic()
        self.last_poll: dict[str, float] = {}
        self.tasks_running: Callable[[], int] = lambda: 0
        self.on_wake: Callable[[], None] = lambda: None
        self.detached = False
        self.submitted_calls = 0
        self.answered_calls = 0
        self.error: BatchAPIError | None = None
        self._task: asyncio.Task | None = None
        self._recovered = False
        self._fresh: set[str] = set()  # batches planned here and not yet sent: nothing of them can be at the provider
        self.bound_of: Callable[[dict[str, Any]], tuple[float, int]] = lambda body: (0.0, 0)  # request_bound
        self.bounds: dict[str, float] = {}  # custom_id -> its bound, until its batch's plan writes it
        self.counted: dict[str, int] = {}  # a request asked (its base) -> its body's tokens as counted here
        # told (counted, the provider's count of its prompt) of each answer to a request asked here: set by its stage
        self.heard: Callable[[int, int], None] = lambda counted, reported: None
        self.ledger: Any = None  # what the budget charges apart (usage.BatchLedger)

    # ---- the transport's side ------------------------------------------------------------------
    async def ask(self, request: Any) -> tuple[int, bytes]:
        """The result of one LM call: its stored answer, or the answer of the batch it joins."""
        slot = _slot.get()
        if slot is None:
            raise RuntimeError("a batch-mode LM call outside the engine's work")
        asked = request_hash(request.url, untiered(asked_body(request)))  # with the prompt cache or without
        base = base_id(slot.key, slot.attempt, asked, slot.occurrence(asked))
        if self.ledger is not None:
            self.ledger.claim(base)  # this work's now: its reservation covers it, its record will hold it
        answered = self._answer_of(base)
        if answered is not None:
            return answered
        fut = asyncio.get_running_loop().create_future()
        self.waiting[base] = fut
        in_open = self.store.in_open_batch()
        sent = any(
            family(base, k) in in_open or family(base, k) in self.pending
            for k in range(self.settings.max_resubmits + 1)
        )
        body = json.loads(untiered(request.body))
        bound, self.counted[base] = self.bound_of(body)
        try:  # BudgetExceeded: its task's reservation and the budget's room cannot cover it (one not sent yet)
            slot.hold(bound, sent)
        except BaseException:
            self.waiting.pop(base, None)
            self.counted.pop(base, None)
            raise
        if not sent:
            cid = self._next(base)
            if cid is None:
                self.waiting.pop(base, None)
                return gave_up(self.settings.max_resubmits + 1)
            stage = current_stage()
            self.bounds[cid] = bound
            self.pending[cid] = (
                stage if stage != "unknown" else slot.key.split(":", 1)[0],
                self.client.line(cid, body),
                len(request.body),
            )
            self.last_new = time.monotonic()
        try:
            return await fut
        except asyncio.CancelledError:
            self.waiting.pop(base, None)
            self.counted.pop(base, None)
            raise BatchWaitCancelled() from None

    def _next(self, base: str) -> str | None:
        """The next custom_id of a family whose last request was not answered; None when resubmits are used up."""
        for k in range(self.settings.max_resubmits + 1):
            cid = family(base, k)
            if cid not in self.store.results and cid not in self.store.in_open_batch():
                return cid
        return None

    def _answer_of(self, base: str) -> tuple[int, bytes] | None:
        for k in range(self.settings.max_resubmits + 1):
            r = self.store.results.get(family(base, k))
            if r is not None and not r.lost:
                self.answered_calls += 1
                return r.status, json.dumps(r.body).encode()
        return None

    # ---- the loop ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.store.close()
        await self.client.aclose()

    async def _run(self) -> None:
        tick = max(0.01, min(self.settings.poll_s, self.settings.linger_s) / 4)
        failures = 0  # batch API errors in a row (an unreachable or failing provider)
        while True:
            try:
                if not self._recovered:
                    await self._recover()
                    self._recovered = True
                if self._due():
                    await self._submit()
                await self._send_unsent()
                await self._poll()
                failures = 0
                if (
                    self.detach
                    and not self.pending
                    and self.waiting
                    and len(self.waiting) >= self.tasks_running()
                    and self._recovered
                ):
                    self.detached = True
                    self.on_wake()
                    return
            except BatchAPIError as err:
                failures += 1
                if not err.retryable or failures >= _MAX_API_FAILURES:
                    self.error = (
                        err
                        if not err.retryable
                        else BatchAPIError(f"{err} ({failures} times in a row; the batches sent so far are kept)")
                    )
                    self.on_wake()
                    return
                log.warning("%s (trying again in %.0f s)", err, self.settings.poll_s)
                await asyncio.sleep(self.settings.poll_s)
            except Exception as err:  # noqa: BLE001 - a provider answer we cannot read: stop the run, resumably
                self.error = BatchAPIError(
                    f"{self.client.api} batch API answered something unreadable: {type(err).__name__}: {err}"
                )
                self.on_wake()
                return
            await asyncio.sleep(tick)

    def _due(self) -> bool:
        if not self.pending:
            return False
        if len(self.pending) >= self._max_requests():
            return True
        everyone_waits = len(self.waiting) >= self.tasks_running()
        return everyone_waits or time.monotonic() - self.last_new >= self.settings.linger_s

    def _max_requests(self) -> int:
        return min(self.settings.max_requests or self.client.max_requests, self.client.max_requests)

    async def _submit(self) -> None:
        max_bytes = min(self.settings.max_bytes or self.client.max_bytes, self.client.max_bytes)
        for chunk in chunked(self.pending, self._max_requests(), max_bytes):
            bounds = [self.bounds.pop(cid, 0.0) for cid, _, _ in chunk]
            entry = self.store.plan(self.client.api, chunk[0][1], [line for _, _, line in chunk], bounds)
            self._fresh.add(entry.local_id)
            for cid, _, _ in chunk:
                self.pending.pop(cid, None)
            self.submitted_calls += len(chunk)
            await self._send(entry)

    async def _send_unsent(self) -> None:
        """Planned batches whose upload or create failed (a provider error, a timeout): send them again, looking at
        the provider first for what the failed attempt may have made."""
        for entry in self.store.open_batches():
            if entry.provider_id is None:
                await self._send(entry)

    def _tag(self, entry: BatchEntry) -> str:
        return f"{entry.local_id}-{entry.custom_ids[0][1:13]}"

    async def _send(self, entry: BatchEntry) -> None:
        """Upload and create a planned batch, finding at the provider first what a killed run may have sent."""
        checkpoint("before_upload", entry.stage)
        tag = self._tag(entry)
        attempted = entry.local_id not in self._fresh  # by a killed run, or by a call here that failed
        self._fresh.discard(entry.local_id)
        if attempted:  # the provider may have created it without our noting the id
            known = {b.provider_id for b in self.store.batches.values() if b.provider_id}
            found = await self.client.find_batch(tag, entry.planned_at, len(entry.custom_ids), known)
            if found is not None:
                self.store.created(entry.local_id, found.id, found.status)
                return
        lines = self.store.requests_of(entry.local_id)
        file_id = entry.file_id
        if self.client.uploads and file_id is None:
            name = f"refed-{tag}.jsonl"
            file_id = await self.client.find_file(name) if attempted else None
            if file_id is None:
                content = b"".join((json.dumps(x, ensure_ascii=False) + "\n").encode() for x in lines)
                file_id = await self.client.upload(name, content)
                checkpoint("after_upload", entry.stage)
            self.store.file_uploaded(entry.local_id, file_id)
        view = await self.client.create(tag, file_id, lines)
        checkpoint("after_create", entry.stage)
        self.store.created(entry.local_id, view.id, view.status)
        self.last_poll[entry.local_id] = time.monotonic()

    async def _recover(self) -> None:
        """Batches a killed run left open: send what was planned but not created, poll the rest at once."""
        for entry in self.store.open_batches():
            if entry.provider_id is None:
                await self._send(entry)
            self.last_poll[entry.local_id] = 0.0

    async def _poll(self) -> None:
        now = time.monotonic()
        for entry in self.store.open_batches():
            if entry.provider_id is None or now - self.last_poll.get(entry.local_id, 0.0) < self.settings.poll_s:
                continue
            self.last_poll[entry.local_id] = now
            view = await self.client.status(entry.provider_id)
            self.store.state(entry.local_id, view.status, view.counts)
            checkpoint("while_polling", entry.stage)
            if view.final is not None:
                await self._collect(entry, view)

    async def _collect(self, entry: BatchEntry, view: BatchView) -> None:
        results = await self.client.results(view, entry.local_id, entry.custom_ids)
        half = len(results) // 2
        self.store.add_results(results[:half])
        checkpoint("while_writing_results", entry.stage)
        self.store.add_results(results[half:])
        self.store.collected(entry.local_id, view.final or view.status)
        if self.ledger is not None:
            self.ledger.collected(results)
        lines = None
        for r in results:
            if r.lost and lines is None:  # a lost request goes out again: its line, read once per batch
                lines = {x["custom_id"]: x for x in self.store.requests_of(entry.local_id)}
            self._deliver(r, entry.stage, lines)

    def _deliver(self, r: StoredResult, stage: str, lines: dict[str, dict[str, Any]] | None) -> None:
        base = r.custom_id.rsplit("-", 1)[0]
        fut = self.waiting.get(base)
        if fut is None or fut.done():
            return
        if not r.lost:
            self.waiting.pop(base)
            self.answered_calls += 1
            counted = self.counted.pop(base, 0)
            if counted and r.status == 200:  # the provider's count of a prompt counted here: later ones weighed by it
                self.heard(counted, billed_of(self.store, r)[1]["prompt_tokens"])
            fut.set_result((r.status, json.dumps(r.body).encode()))
            return
        nxt = self._next(base)
        if nxt is None:
            self.waiting.pop(base)
            fut.set_result(gave_up(self.settings.max_resubmits + 1))
            return
        line = (lines or {})[r.custom_id]
        body = line.get("body") if "body" in line else line.get("params")
        self.bounds[nxt] = self.bound_of(body)[0]
        self.pending[nxt] = (stage, self.client.line(nxt, body), len(json.dumps(body)))
        self.last_new = time.monotonic()


def gave_up(times: int) -> tuple[int, bytes]:
    """The answer a call gets when its request went unanswered `times` times (a 503 the engine retries as work)."""
    return 503, json.dumps(
        {
            "error": {
                "message": f"the batch request went unanswered {times} times (expired, cancelled or failed batches)",
                "type": "batch_unanswered",
            }
        }
    ).encode()


async def settle_earlier(broker: BatchBroker) -> None:
    """Collect the batches earlier invocations left open before this one reserves new work against the budget (each
    of their requests may be billed, and is charged at its bound until it is collected): what was planned and not
    sent is sent, the rest polled until the provider has finished them (in detach mode, polled once: what is still
    open stays charged at its bound). A provider error leaves them to the broker's loop, which tries again."""
    earlier = [entry.local_id for entry in broker.store.open_batches()]
    if not earlier:
        return
    tick = max(0.01, broker.settings.poll_s / 4)
    try:
        await broker._recover()
        broker._recovered = True
        while True:
            await broker._poll()
            if broker.detach or not any(broker.store.batches[b].open for b in earlier):
                return
            await asyncio.sleep(tick)
    except BatchAPIError as err:
        log.warning("%s (the batches an earlier invocation left open are collected as the run goes on)", err)


def batch_lm(
    spec: Any, role: str, run_dir: Any, settings: BatchConfig, detach: bool = False, store_name: str = "batches"
):
    """The LM of `role` in batch mode and the broker its calls go through (its store in `run_dir/store_name`).

    `spec` is an LMSpec, `settings` the config's [batch] section. ConfigError for a provider without a batch API.
    """

    client = client_for_spec(spec, check_key(spec, role), role)
    # a provider whose online requests a transport cannot carry has its batch bodies built another way (never sent
    # online; they hold no key: the key goes to the batch client alone)
    body = provider_for(spec.model).batch_body(spec.model)
    body_spec = spec.model_copy(update=body) if body else spec
    broker = BatchBroker(
        BatchStore(run_dir, store_name),
        client,
        settings,
        detach,
    )
    return build_lm(body_spec, role, num_retries=0, wrap=lambda _http: BrokerHTTP(broker)), broker


def batch_figures(broker: BatchBroker, usage: dict[str, Any], price_factor: float) -> dict[str, Any]:
    """What a summary says about batch mode: the batches, the calls, and what the batch price saved."""
    out = dict(broker_figures(broker))
    cost = usage.get("cost_usd")
    out["price_factor"] = price_factor
    if cost is not None and 0 < price_factor < 1:
        out["online_cost_usd"] = round(cost / price_factor, 6)
        out["saved_usd"] = round(cost / price_factor - cost, 6)
    return out


def broker_figures(broker: BatchBroker) -> dict[str, Any]:
    """A broker's batch figures for a summary: batches (open), requests, answers, resubmissions."""
    entries = list(broker.store.batches.values())
    return {
        "batches": len(entries),
        "open": sum(1 for b in entries if b.open),
        "requests": sum(len(b.custom_ids) for b in entries),
        "answered": sum(1 for r in broker.store.results.values() if not r.lost),
        "submitted_calls_this_invocation": broker.submitted_calls,
        "answered_calls_this_invocation": broker.answered_calls,
        "resubmitted": sum(broker.store.lost_count.values()),
    }


def chunked(
    pending: dict[str, tuple[str, dict[str, Any], int]], max_requests: int, max_bytes: int
) -> list[list[tuple[str, str, dict[str, Any]]]]:
    """`pending` requests (custom_id -> (stage, line, bytes)) in batches within a provider's request and byte
    limits, one stage per batch, in stage order."""
    chunks, cur, size, stage = [], [], 0, None
    for cid, (st, line, nbytes) in sorted(pending.items(), key=lambda kv: kv[1][0]):
        if cur and (len(cur) >= max_requests or size + nbytes > max_bytes or st != stage):
            chunks.append(cur)
            cur, size = [], 0
        cur.append((cid, st, line))
        size += nbytes + 200
        stage = st
    if cur:
        chunks.append(cur)
    return chunks
