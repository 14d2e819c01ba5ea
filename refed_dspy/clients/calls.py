"""The accounting of LM calls: one `CallInfo` per completed call, handed to the collector of the current asyncio
task or thread (`collect_calls`), tagged with the stage it was made in (`stage`) and, for an adapter's call, its
`CallTag`; and the errors a reply that cannot be used turns into."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from refed_dspy.providers.base import StablePrompt
from refed_dspy.providers.registry import provider_for


class LMOutputError(Exception):
    """The provider ended a reply in a way that makes it unusable; `raw` is the text it did return."""

    def __init__(self, message: str, raw: str | None = None):
        super().__init__(message)
        self.raw = raw


class OutputTruncated(LMOutputError):
    """The provider stopped the reply at max_tokens (finish_reason 'length')."""


class OutputRefused(LMOutputError):
    """The provider refused or filtered the reply (finish_reason 'content_filter')."""


class BudgetExceeded(Exception):
    """An LM call was refused because it could take the run past its call or cost budget (refed_dspy.ledger.tickets);
    whatever client carried the request, the call boundary raises it as it is."""


class HeldShort(BudgetExceeded):
    """A call of a piece of work made out of sight of the budget (on a Ray worker) whose counted prompt could cost more
    than its piece was held at: refused before it is sent, the piece started again held at `bound` a call at least."""

    def __init__(self, message: str, bound: float):
        super().__init__(message)
        self.bound = bound

    def __reduce__(self) -> tuple:  # raised on a worker, read by the driver
        return HeldShort, (str(self), self.bound)


class MustWait(Exception):
    """An LM call cannot start yet: with the calls in flight, the budget could be overshot by more than one call
    (refed_dspy.ledger.tickets). It can when one of them ends: the call boundary waits and opens it again."""


class ReplyFormatError(LMOutputError):
    """The endpoint answered, but not in the format the LM's client reads: no text and no token usage (an
    `anthropic/` model at a server that answers in the OpenAI format reads so)."""


@dataclass
class CallInfo:
    """One completed LM call, as the accounting sees it."""

    stage: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, read from the provider's prompt cache
    reasoning_tokens: int = 0  # of the completion tokens, those a reasoning model spent thinking (billed as output)
    cache_hit: bool = False
    finish_reason: str | None = None
    seconds: float = 0.0  # from the request to the parsed-out reply (a cache hit: the cache read)
    repair: bool = False  # a repair call: the same ask again, with the last reply's error shown
    parse_error: bool = False  # the reply broke its format or contract (the adapter says so after parsing)
    error: str | None = None  # the request failed (429, 5xx, reset): no reply, no tokens
    retry_after: float | None = None  # a failed request: the wait its provider asked for before it is sent again
    interrupted: bool = False  # in flight when its work was cancelled, or given up at the client's timeout: perhaps
    # answered and billed, never read
    lost_with: str | None = None  # an interrupted call that was in flight on a Ray worker when it was lost: which one
    # ("its Ray worker on node X (pid P)"); not cut off by a stop or a timeout
    tokens_unknown: bool = False  # answered, but the LM reported no token usage (nor that it replayed a cached reply)
    cost_usd: float | None = None  # priced by its own LM (another model than the run's role): not at the role's price
    cost_bound_usd: float | None = None  # an interrupted call: the most it can have cost (what the ledger reserves
    # for one call), kept against the cost budget since its real cost is unknown
    log_id: int | None = None  # its line in the write-ahead log of the run's calls (refed_dspy.ledger.call_log)
    service_tier: str | None = None  # the service tier that served it, as its reply says ("unstated": a tier was asked
    # for and the reply named none); None: no tier asked for and none named (priced at its LM's price)
    tier_unavailable: bool = False  # a failed request the provider answered "no capacity on the tier asked for" (flex)
    fallback: bool = False  # sent on the default tier after `flex_fallback` such answers to the same request
    cache_write_tokens: int = 0  # of prompt_tokens, written to the provider's prompt cache (Anthropic: at 1.25x)

    def cost_at(self, price: Any) -> float:
        """What its tokens cost at `price` (a refed_dspy.providers.prices.Price)."""
        return price.cost(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TaskCalls(list):
    """The CallInfo of one piece of work's calls, as they end, and `most`: the calls it was reserved for (its worst
    case, repairs included; 0: not known). Where a task's calls are made out of sight (a Ray worker) and the task ends
    without its result, a request may have gone out whose start never reached us: the task is charged up to `most`.
    `held`: what such a task was held at under a cost budget, which its worker keeps its calls within (HeldShort)."""

    def __init__(self, most: int = 0):
        super().__init__()
        self.most = most
        self.held: float | None = None

    def unseen(self, reported: int, open_calls: int) -> int:
        """The calls to count as paid for a task lost from sight having reported `reported` calls ended and
        `open_calls` under way: those under way, and every other call its reservation allowed."""
        return max(open_calls, self.most - reported)


@dataclass
class CallTag:
    """What an adapter knows about the call it is about to make (a repair; the repeated part of its prompt, which the
    LM's transport asks the provider to cache: None, none known), and the CallInfo the LM made of it."""

    repair: bool = False
    stable: StablePrompt | None = None
    info: CallInfo | None = None


@dataclass(frozen=True)
class Work:
    """The piece of work the LM calls made in a block are for: the list its calls are collected into (None: none)
    and the ledger they are opened on (the engine's TaskLedger of one task; None: none, or the LM's own budget)."""

    calls: list[CallInfo] | None = None
    ledger: Any = None


_NO_WORK = Work()  # frozen: the default shared by every context
_work: contextvars.ContextVar[Work] = contextvars.ContextVar("refed_work", default=_NO_WORK)
_stage: contextvars.ContextVar[str] = contextvars.ContextVar("refed_stage", default="unknown")


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Tag the LM calls made inside this block with a stage name (feedback, synthesize, ...)."""
    token = _stage.set(name)
    try:
        yield
    finally:
        _stage.reset(token)


def current_stage() -> str:
    """The stage name the LM calls made here are tagged with (see `stage`)."""
    return _stage.get()


def current_work() -> Work:
    """The work the LM calls made here are for (see `collect_calls` and `opened_on`)."""
    return _work.get()


@contextlib.contextmanager
def _working(work: Work) -> Iterator[None]:
    token = _work.set(work)
    try:
        yield
    finally:
        _work.reset(token)


@contextlib.contextmanager
def collect_calls(into: list[CallInfo] | None = None) -> Iterator[list[CallInfo]]:
    """Collect the CallInfo of every LM call made in this block (in this task/context), into `into` when given
    (the owner of a piece of work keeps that list, so what a cancelled piece of work paid is not lost)."""
    calls = into if into is not None else []
    with _working(replace(_work.get(), calls=calls)):
        yield calls


@contextlib.contextmanager
def opened_on(ledger: Any) -> Iterator[None]:
    """The requests of LMs with no budget of their own made in this block, and in asyncio tasks created in it (they
    copy its context), are opened on `ledger` at the call boundary (the engine's TaskLedger of one task): each written
    to the run's log before it is sent, and reserved beyond its task's reservation when its prompt needs it."""
    with _working(replace(_work.get(), ledger=ledger)):
        yield


def _first_text(outputs: Any) -> str | None:
    first = outputs[0] if isinstance(outputs, list) and outputs else None
    if isinstance(first, dict):
        first = first.get("text")
    return first if isinstance(first, str) else None


_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "total_tokens")


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _replayed(response: Any) -> bool:
    """The reply was handed back from DSPy's cache: DSPy reports no usage for it (nothing was paid), but the reply
    itself is marked `cache_hit` or still carries the tokens it was billed for when first answered. A reply that
    carries no tokens at all came from an LM that does not report usage: it was paid, its tokens are unknown."""
    if response is None:
        return False
    if _field(response, "cache_hit") is True:
        return True
    usage = _field(response, "usage")
    return bool(usage) and any(isinstance(v, int | float) and v > 0 for v in (_field(usage, f) for f in _TOKEN_FIELDS))


def _finish_reason(response: Any) -> str | None:
    if response is None:
        return None
    reason = getattr(response, "finish_reason", None)
    if reason is not None:
        return str(reason)
    choices = getattr(response, "choices", None) or (response.get("choices") if isinstance(response, dict) else None)
    if choices:
        first = choices[0]
        return first.get("finish_reason") if isinstance(first, dict) else getattr(first, "finish_reason", None)
    return None


def served_tier(response: Any) -> str | None:
    """The service tier a reply says served it (OpenAI's `service_tier`, on the reply or in the provider's body as the
    client kept it); None when it names none."""
    if response is None:
        return None
    tier = _field(response, "service_tier")
    if not isinstance(tier, str):
        tier = _field(_field(response, "provider_data"), "service_tier")
    return tier if isinstance(tier, str) and tier else None


@dataclass
class Reply:
    """What one history entry of a DSPy LM says of its call: the call as the accounting sees it (its stage and time
    left to the caller), its first text, and whether the usage or a replay from the cache was reported."""

    info: CallInfo
    text: str | None
    reported_usage: bool
    understood: bool  # it carries text, usage or a cache replay: the client reads the endpoint's format


def _written(usage: dict[str, Any]) -> int:
    """Prompt tokens a reply's usage says were written to the provider's prompt cache: DSPy's own client reports them
    in `prompt_tokens_details.cache_creation_tokens`, LiteLLM as Anthropic does (`cache_creation_input_tokens`)."""
    details = usage.get("prompt_tokens_details") or {}
    found = details.get("cache_creation_tokens") if isinstance(details, dict) else None
    return int(found or usage.get("cache_creation_input_tokens") or 0)


def _native_usage(response: Any, model: str) -> tuple[int, int, int, int] | None:
    """(prompt, completion, read, written) tokens of a reply of DSPy's own client (an lm15 Response, whose counters are
    the provider's own): the prompt includes the tokens read from and written to the provider's cache, and the
    completion the hidden reasoning tokens, for every provider (Anthropic's input tokens leave the first out, Gemini's
    and xAI's output tokens the second: DSPy adds them only where it picked the client itself, not on engines of
    refed's). None for a reply of another kind."""
    raw = getattr(response, "usage", None)
    if raw is None or not hasattr(raw, "cache_write_tokens") or not isinstance(raw.input_tokens, int):
        return None
    read, written = int(raw.cache_read_tokens or 0), int(raw.cache_write_tokens or 0)
    serving = provider_for(model)
    apart = serving.wire is not None and serving.wire.cache_apart
    output = int(raw.output_tokens or 0) + (int(raw.reasoning_tokens or 0) if serving.thoughts_apart else 0)
    return raw.input_tokens + (read + written if apart else 0), output, read, written


def read_reply(entry: dict[str, Any], stage_name: str, model: str, seconds: float, repair: bool) -> Reply:
    """The Reply of `entry` (what DSPy hands BaseLM.update_history: usage, response, outputs)."""
    usage = entry.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    thought = usage.get("completion_tokens_details") or {}
    response = entry.get("response")
    if isinstance(response, tuple):
        response = response[0] if response else None
    cache_hit = not usage and _replayed(response)
    text = _first_text(entry.get("outputs"))
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    read, written = int((details or {}).get("cached_tokens") or 0), _written(usage)
    native = _native_usage(response, model) if usage else None
    if native is not None:
        prompt, completion, read, written = native
    info = CallInfo(
        stage=stage_name,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=read,
        cache_write_tokens=written,
        reasoning_tokens=int(_field(thought, "reasoning_tokens") or 0),
        cache_hit=cache_hit,
        tokens_unknown=not usage and not cache_hit,
        finish_reason=_finish_reason(response),
        seconds=seconds,
        repair=repair,
        service_tier=served_tier(response) if usage else None,
    )
    return Reply(info, text, bool(usage) or cache_hit, bool(usage or cache_hit or text))


def finish_error(info: CallInfo, text: str | None) -> LMOutputError | None:
    """The error a reply that ended unusably is: cut off at max_tokens, or stopped by a content filter."""
    if info.finish_reason == "length":
        return OutputTruncated(f"reply cut off at max_tokens ({info.completion_tokens} completion tokens)", text)
    if info.finish_reason == "content_filter":
        return OutputRefused("reply stopped by the provider's content filter", text)
    return None
