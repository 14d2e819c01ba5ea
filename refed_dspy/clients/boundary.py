"""The one boundary every LM call of a run passes: accounting, budget, and the checks on how a reply ended.

`CallBoundary` is mixed into an LM class. Instead of growing an in-memory history, it hands one compact
`CallInfo` per completed call (cache hits included) to the collector of the current asyncio task. It turns
a reply cut off by max_tokens, or stopped by a content filter, into an exception right away, so DSPy does
not pay for a JSONAdapter retry of a reply that cannot parse.

A request on a service tier that has no capacity now (OpenAI's flex: 429 "resource unavailable", not billed) is sent
again here, after a backoff, whoever retries the rest: the engine's LMs too, since it is no failure of the work (it is
counted as a failed request, `tier_unavailable`). After `flex_fallback` such answers it goes on the default tier, and
after `TIER_WAITS` of them without a fallback it fails (the engine then retries its work, never counting it toward its
consecutive-failure abort). When it is sent again is refed_dspy.clients.tries's to say; the ledger each request
is opened on, refed_dspy.clients.boundary's.

How a request at the boundary meets the ledger it is counted on (`open_on`, `settle`, `release`): which ledger
(the LM's own budget, else the engine's work that makes it), its prompt counted under a cost budget, the request opened
on it (refed_dspy.ledger.tickets), settled once when it is over, and given back. The boundary keeps what is opened in
its context; these act on it. A request the budget holds back (MustWait) waits for one in flight to be given back
(`_Ends`), never polling: each `release` wakes every request that waits, in any thread or event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import dspy
from dspy.clients.base_lm import LM_CLASS_STATE_KEY
from dspy.utils.exceptions import LMError, LMUnsupportedFeatureError

from refed_dspy.clients.calls import (
    BudgetExceeded,
    CallInfo,
    CallTag,
    MustWait,
    ReplyFormatError,
    _stage,
    current_work,
    finish_error,
    read_reply,
)
from refed_dspy.clients.destination import check_begins, check_ends, refusal_in, told_of
from refed_dspy.clients.flights import LATE, aanswer_of, answer_of
from refed_dspy.clients.prompt_cache import count_prompt, counts_as_we_do, utf8_bytes
from refed_dspy.clients.tries import (
    DEFAULT_TIER,
    TIER_WAITS,
    Tries,
    again,
    causes,
    gave_up_waiting,
    retry_after_s,
    tier_asked,
)
from refed_dspy.config.lm import BILLED_IN_BODY, SEVERAL_COMPLETIONS, TIMEOUT_S, billed_in_body, several_completions
from refed_dspy.errors import ConfigError, KeyProviderError
from refed_dspy.providers.base import StablePrompt
from refed_dspy.providers.prices import UNSTATED, Price
from refed_dspy.providers.registry import provider_for
from refed_dspy.providers.sampling import table_limit
from refed_dspy.runtime.stops import checkpoint

log = logging.getLogger(__name__)
_OPTIMIZER_PACKAGES = ("dspy.propose", "dspy.teleprompt")  # where DSPy's optimizers keep the modules they call


@dataclass
class CallUnderWay:
    """One request under way here, from `_begin` to `_end`: its LM (a call it makes to itself inside is the same
    call), when it began, the service tier it asks for (None: none named) and whether it falls back from flex, the
    tag the adapter that makes it handed it (its repair flag and cacheable prompt part; it is given the CallInfo), its
    replies that reached update_history (none: the LM answered without handing DSPy its reply, through its own
    __call__ or with dspy.settings.disable_history), and what its ledger opened for it ([ledger, ticket]), settled
    once when it is over."""

    lm: Any
    started: float
    tier: str | None
    fallback: bool
    tag: CallTag | None = None
    reported: list[CallInfo] = field(default_factory=list)
    opened: list | None = None


_request: contextvars.ContextVar[CallUnderWay | None] = contextvars.ContextVar("refed_request", default=None)
# TIER_WAITS (and DEFAULT_TIER) are refed_dspy.clients.tries's; the boundary hands `again` the one named here
# what finds the caller's ledger scope, asked before a call of a bounded LM is counted anywhere: its route (set by
# refed_dspy.clients.lm_routing, which sends an LM on no ledger of the run, such as a copy a teleprompter made of an LM
# a user built with build_lm, to a twin on the run's ledger) and its requests in flight
_scope_of: Callable[[], Any] | None = None


class CallBoundary:
    """Mixin for a dspy.BaseLM class: reports each call to the current collector and keeps no history.

    With a `budget` (a CallBudget) attached, every call is reserved first and recorded after, under
    `role` at `price`; the budget refuses a call that could break it. Copies share the budget.
    """

    budget: Any = None
    role: str = "lm"
    price: Price | None = None
    endpoint_spread: Any = None  # several endpoints: their EndpointSpread (calls and failures per endpoint)
    default_stage: str = "unknown"  # the stage of a call made where no stage is set (a teleprompter's own: propose)
    preferred_endpoint: int | None = None  # several endpoints: the one to send to while it is healthy (None: any)
    keeps_history: bool = False  # also keep DSPy's history of its calls (a user's LM the run routes here does)
    own_price: bool = False  # each call carries its cost at `price` (an LM of another model than its run's role)
    flex_fallback: int | None = None  # on the flex tier: after this many "no capacity" answers, the default tier
    # DSPy's retries of a failed request, made here instead (see take_retries): each request is counted and reserved
    retries: int = 0
    # an LM on engines of its own: what they were told to reach its endpoint (api_base, timeout; never the key)
    client_reach: dict[str, Any] | None = None

    def take_retries(self, engine_retries: bool = False) -> CallBoundary:
        """Take over DSPy's retries of a failed request (`num_retries`), which it makes inside one call where no
        request of them is seen: the boundary retries instead, counting and reserving each (an LM with a `__call__`
        or `acall` of its own makes no DSPy retries: nothing to take). `engine_retries`: the engine retries the work
        itself, so neither does. Returns self."""
        base = lm_class_of(self)
        dspy_calls = base.__call__ is dspy.BaseLM.__call__ and base.acall is dspy.BaseLM.acall  # DSPy retries there
        dspy_retries = getattr(self, "num_retries", None)
        if dspy_calls and isinstance(dspy_retries, int) and not isinstance(dspy_retries, bool):
            self.retries = 0 if engine_retries else self.retries + dspy_retries
            self.num_retries = 0
        elif engine_retries:
            self.retries = 0
        return self

    def attach_budget(self, budget: Any, role: str, price: Price | None) -> CallBoundary:
        """Guard this LM (and its copies) with `budget`; returns self."""
        self.budget, self.role, self.price = budget, role, price
        return self

    def __call__(self, *args: Any, refed_tag: CallTag | None = None, **kwargs: Any):
        """The call, counted and checked here. `refed_tag`: what the adapter making it knows of it (a repair), which
        then holds its CallInfo."""
        if _under_way(self):  # the LM calling itself (its own acall through __call__): one call, counted once
            return super().__call__(*args, **kwargs)
        scope = _caller_scope()
        if scope is not None and (other := scope.route(self)) is not None:  # counted on a twin of it, which makes them
            return other(*args, refed_tag=refed_tag, **kwargs)
        flights, key = _flight(scope, self, args, kwargs, waits_blocking=True)
        while key is not None and (ahead := flights.board(key)) is not None:  # an identical request is in flight
            outputs = answer_of(ahead, _wait_s(self, kwargs))
            if outputs is LATE:
                key = None  # it is slow: this one is sent as if alone
            elif outputs is not None:
                return self._answered_in_flight(kwargs, outputs, refed_tag)
        if key is None:
            return self._tried(*args, refed_tag=refed_tag, **kwargs)
        outputs = None
        try:
            outputs = self._tried(*args, refed_tag=refed_tag, **kwargs)
            return outputs
        finally:
            flights.land(key, outputs)

    def _tried(self, *args: Any, refed_tag: CallTag | None = None, **kwargs: Any):
        """The call, sent again as refed_dspy.clients.tries says while it fails."""
        tries = Tries(kwargs)
        while True:
            try:
                return self._call_once(*args, refed_fallback=tries.fallback, refed_tag=refed_tag, **tries.kwargs)
            except LMError as err:
                _raise_refusal(err)
                delay = again(err, tries, self.retries, self.flex_fallback, TIER_WAITS)
                if delay is None:
                    raise
                time.sleep(delay)

    async def acall(self, *args: Any, refed_tag: CallTag | None = None, **kwargs: Any):
        """`__call__`, awaited."""
        if _under_way(self):
            return await super().acall(*args, **kwargs)
        scope = _caller_scope()
        if scope is not None and (other := scope.route(self)) is not None:
            return await other.acall(*args, refed_tag=refed_tag, **kwargs)
        flights, key = _flight(scope, self, args, kwargs)
        while key is not None and (ahead := flights.board(key)) is not None:
            outputs = await aanswer_of(ahead, _wait_s(self, kwargs))
            if outputs is LATE:
                key = None
            elif outputs is not None:
                return self._answered_in_flight(kwargs, outputs, refed_tag)
        if key is None:
            return await self._atried(*args, refed_tag=refed_tag, **kwargs)
        outputs = None
        try:
            outputs = await self._atried(*args, refed_tag=refed_tag, **kwargs)
            return outputs
        finally:
            flights.land(key, outputs)

    async def _atried(self, *args: Any, refed_tag: CallTag | None = None, **kwargs: Any):
        tries = Tries(kwargs)
        while True:
            try:
                return await self._acall_once(*args, refed_fallback=tries.fallback, refed_tag=refed_tag, **tries.kwargs)
            except LMError as err:
                _raise_refusal(err)
                delay = again(err, tries, self.retries, self.flex_fallback, TIER_WAITS)
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    def _call_once(self, *args: Any, refed_fallback: bool = False, refed_tag: CallTag | None = None, **kwargs: Any):
        request, begun = _begin(self, kwargs, refed_fallback, refed_tag)
        try:
            ledger, prompt = ledger_of(self, args, kwargs)
            while ledger is not None:  # held back while the calls in flight could overshoot the budget
                seen = _ends.count
                try:
                    request.opened = open_on(self, ledger, prompt, self._stage_now(), request.tier)
                    break
                except MustWait:
                    _ends.wait(seen, HELD_S)  # until a call in flight is given back
            return self._paid(self._unreported_check(super().__call__(*args, **kwargs)))
        except LMError as err:
            self._note_failure(err)
            raise
        except (KeyboardInterrupt, SystemExit):  # a stop cut the call off in flight: it reached the provider, paid
            if request.opened is not None and not request.reported:
                self._record(CallInfo(stage=self._stage_now(), model=self.model, interrupted=True), reported=False)
            raise
        finally:
            _end(begun)

    async def _acall_once(
        self, *args: Any, refed_fallback: bool = False, refed_tag: CallTag | None = None, **kwargs: Any
    ):
        request, begun = _begin(self, kwargs, refed_fallback, refed_tag)
        try:
            ledger, prompt = ledger_of(self, args, kwargs)
            while ledger is not None:  # held back while the calls in flight could overshoot the budget
                seen = _ends.count
                try:
                    request.opened = open_on(self, ledger, prompt, self._stage_now(), request.tier)
                    break
                except MustWait:
                    try:
                        await _ends.wait_async(seen, HELD_S)  # until a call in flight is given back
                    except asyncio.CancelledError as err:
                        err.unpaid = True  # cancelled before it was sent: nothing was paid
                        raise
            return self._paid(self._unreported_check(await super().acall(*args, **kwargs)))
        except asyncio.CancelledError as err:
            if not getattr(err, "unpaid", False):  # a call still waiting in a batch: not paid
                self._record(CallInfo(stage=self._stage_now(), model=self.model, interrupted=True), reported=False)
            raise
        except LMError as err:
            self._note_failure(err)
            raise
        finally:
            _end(begun)

    def _answered_in_flight(self, kwargs: dict[str, Any], outputs: Any, tag: CallTag | None) -> Any:
        """The answer of an identical request that was in flight: a copy of its outputs, counted here as a cache hit
        (nothing paid; no history entry, no line in the run's call log). Not asked of the cache: an LM may store
        nothing there (its cache off, its own forward), and a miss would be paid."""
        _, begun = _begin(self, kwargs, False, tag)
        try:
            self._record(CallInfo(stage=self._stage_now(), model=self.model, cache_hit=True))
        finally:
            _end(begun)
        return copy.deepcopy(outputs)

    def _stage_now(self) -> str:
        """The stage a call made now is tagged with: the one set where it is made; else `propose` when a module of
        DSPy's optimizers makes it (MIPROv2's proposer, SIMBA's rules), whichever LM it calls; else this LM's default."""
        current = _stage.get()
        if current != "unknown":
            return current
        for module in reversed(dspy.settings.get("caller_modules") or ()):
            signature = getattr(module, "signature", None)  # a Predict of theirs: its signature is defined there
            if any(getattr(x, "__module__", "").startswith(_OPTIMIZER_PACKAGES) for x in (type(module), signature)):
                return "propose"
        return self.default_stage

    def _unreported_check(self, outputs: Any) -> Any:
        """An LM that answered without handing DSPy its reply (its own `__call__`, or history turned off): the call
        is counted, with no tokens (they are unknown), and said once per LM."""
        request = _request.get()
        if request is not None and request.reported:
            return outputs
        self._record(CallInfo(stage=self._stage_now(), model=self.model, seconds=_elapsed(), tokens_unknown=True))
        self._say_once(
            "unreported",
            "answers without reporting its replies to DSPy (BaseLM.update_history): its calls are counted, their "
            "tokens, cost and finish reasons are not",
        )
        return outputs

    @staticmethod
    def _paid(outputs: Any) -> Any:
        """The call is over and returns `outputs`; one the provider answered (not the cache) has its answer in the
        cache and its request settled: the `answer_paid` checkpoint (refed_dspy.runtime.stops)."""
        request = _request.get()
        answered = request.reported if request is not None else None
        if answered and not all(info.cache_hit for info in answered):
            checkpoint("answer_paid", answered[-1].stage)
        return outputs

    def notes(self) -> set[str]:
        """What this LM has learnt of its endpoint and warned of, once: a shallow copy made after this is first asked
        shares them (a Ray worker's LM of each task)."""
        return self.__dict__.setdefault("_refed_notes", set())

    def _say_once(self, what: str, text: str) -> None:
        """Warn once per LM about a kind of thing it does not report."""
        said = self.notes()
        if what not in said:
            said.add(what)
            log.warning("warning: %s: the LM '%s' %s", self.role, self.model, text)

    def _record(self, info: CallInfo, reported: bool = True) -> None:
        """One call that was paid (or replayed from the cache): to the current collector, the call's tag and the
        attached ledger. `reported`: its reply reached the boundary (not so for a call cut off in flight)."""
        request = _request.get()
        settle(request.opened if request is not None else None, info, self.price)
        if reported and request is not None:
            request.reported.append(info)
        tag = request.tag if request is not None else None
        if reported and tag is not None:
            tag.info = info
        calls = current_work().calls
        if calls is not None:
            calls.append(info)
        if self.budget is not None:
            self.budget.record([info], self.price, self.role)

    def _note_failure(self, err: LMError) -> None:
        """A request that failed (no reply, no tokens) joins the calls collected, so failures reconcile with
        what the provider saw; one that never left the client (a setting it cannot send, a refusal: `unsent`) does
        not. One the client gave up on at its timeout reached the provider, which may have answered and billed it: it
        is counted as paid, as a call cut off in flight is (its tokens unknown): refed_dspy.clients.tries."""
        if gave_up_waiting(err):
            self._record(CallInfo(stage=self._stage_now(), model=self.model, interrupted=True), reported=False)
            return
        failed = CallInfo(
            stage=self._stage_now(),
            model=self.model,
            error=type(err).__name__,
            seconds=_elapsed(),
            retry_after=retry_after_s(err),
        )
        request = _request.get()
        asked = request.tier if request is not None else None
        tiers = provider_for(str(self.model)).tiers
        if asked not in (None, DEFAULT_TIER) and tiers is not None and tiers.unavailable(err):
            err.tier_unavailable = True  # read by tries.again, and by the engine's classify: no failure of the work
            failed.tier_unavailable = True
        settle(request.opened if request is not None else None, failed, self.price)
        calls = current_work().calls
        if calls is not None and not isinstance(err, LMUnsupportedFeatureError) and unsent(err) is None:
            calls.append(failed)

    def update_history(self, entry: dict[str, Any]) -> None:
        request = _request.get()
        tag = request.tag if request is not None else None
        reply = read_reply(entry, self._stage_now(), str(self.model), _elapsed(), tag is not None and tag.repair)
        info = reply.info
        if reply.understood:
            self.notes().add("understood")
        elif "understood" not in self.notes():
            # the first replies carry neither text nor usage: the endpoint speaks another format than the client's
            self._record(CallInfo(stage=info.stage, model=self.model, seconds=info.seconds, tokens_unknown=True))
            raise ReplyFormatError("the endpoint's reply carries no text and no token usage")
        if not reply.reported_usage:
            self._say_once(
                "usage",
                "reports no token usage with its replies: its calls are counted, their tokens and cost are not "
                "(a cost budget cannot be kept with it)",
            )
        asked, fallback = (request.tier, request.fallback) if request is not None else (None, False)
        if not info.cache_hit and not info.tokens_unknown:
            info.fallback = fallback
            if info.service_tier is None and asked is not None:  # asked for a tier, told of none: never priced lower
                info.service_tier = asked if asked == DEFAULT_TIER else UNSTATED  # the dearer of it and the default
        if self.own_price and self.price is not None and not info.tokens_unknown and not info.cache_hit:
            info.cost_usd = info.cost_at(self.price.at(info.service_tier))  # at the tier that served it
        self._record(info)
        if self.keeps_history:
            super().update_history(entry)
        unusable = finish_error(info, reply.text)
        if unusable is not None:
            raise unusable

    def __reduce_ex__(self, protocol: Any) -> tuple:
        """Copied or pickled as the LM's own class behind the boundary: the boundary class is made at run time, so a
        pickle names the LM's class and the copy is put behind the boundary again where it is loaded."""
        state = self.__getstate__() if hasattr(self, "__getstate__") else self.__dict__
        return (_behind_boundary, (lm_class_of(self),), state)

    def dump_state(self) -> dict[str, Any]:
        """The state of the LM behind the boundary: a saved program loads it as that LM's own class. An LM on engines
        of its own (`client_reach`) is saved as the same LM on DSPy's client: its endpoint and timeout, no key."""
        if self.client_reach is not None and not isinstance(getattr(self, "engine", None), str):
            plain = copy.copy(self)
            plain._engine_spec, plain._async_engine_spec = "auto", None
            plain.kwargs = told_of(self)
            plain.client_reach = None
            return plain.dump_state()
        state = super().dump_state()
        if isinstance(state, dict) and isinstance(state.get("num_retries"), int):
            state["num_retries"] += self.retries  # the retries the boundary makes for DSPy
        base = lm_class_of(self)
        if isinstance(state, dict) and LM_CLASS_STATE_KEY in state:
            state[LM_CLASS_STATE_KEY] = f"{base.__module__}.{base.__qualname__}"
        return state


def scopes_from(finder: Callable[[], Any] | None) -> None:
    """Ask `finder` for the caller's ledger scope (None: outside every one) before each call of a bounded LM is
    counted: its `route(lm)` is the LM to call instead (None: this one) and its `flights` the run's requests in flight.
    refed_dspy.clients.lm_routing installs it as it is imported."""
    global _scope_of
    _scope_of = finder


def _caller_scope() -> Any:
    return _scope_of() if _scope_of is not None else None


def _begin(
    lm: Any, kwargs: dict[str, Any], fallback: bool, tag: CallTag | None
) -> tuple[CallUnderWay, contextvars.Token]:
    """The request of `lm` about to be made here, under way in this context until `_end` is given the token; while it
    is, the HTTP clients a model DSPy serves through LiteLLM sends with check where it takes the keys it carries."""
    refuse_several_completions(lm, kwargs)
    request = CallUnderWay(lm, time.monotonic(), tier_asked(kwargs, getattr(lm, "kwargs", None)), fallback, tag)
    check_begins()
    return request, _request.set(request)


def refuse_several_completions(lm: Any, kwargs: dict[str, Any]) -> None:
    """A call that asks for several completions (`n` above 1, in its own arguments or its LM's), or whose `extra_body`
    (which the client merges into the request) sets what the call costs (BILLED_IN_BODY: several completions, an
    output limit, a service tier), is refused before it is sent (ConfigError): DSPy sends each completion as a request
    of its own, a provider answers one request with all of them, and a call is reserved at its LM's limits and recorded
    as one reply."""
    for where, given in (("the call's arguments", kwargs), ("its LM's arguments", getattr(lm, "kwargs", None))):
        given = given or {}
        for key in SEVERAL_COMPLETIONS:
            if given.get(key, 1) not in (1, None):
                raise ConfigError(several_completions(f"{key}={given[key]}", where))
        body = given.get("extra_body")
        for key in BILLED_IN_BODY if isinstance(body, dict) else ():
            if key in SEVERAL_COMPLETIONS and body.get(key, 1) not in (1, None):
                raise ConfigError(several_completions(f"{key}={body[key]}", f"extra_body in {where}"))
            if key not in SEVERAL_COMPLETIONS and body.get(key) is not None:
                raise ConfigError(billed_in_body(key, where))


def _end(begun: contextvars.Token) -> None:
    """The request begun as `begun` is over: what it opened on its ledger is given back, and the one under way before
    it is under way again."""
    request = _request.get()
    try:
        release(request.opened if request is not None else None)
    finally:
        try:
            _request.reset(begun)
        finally:
            check_ends()


def stable_under_way() -> StablePrompt | None:
    """The repeated part of the prompt of the request under way here, as the adapter that makes it said (None: none
    known): what the LM's transport asks the provider to cache."""
    request = _request.get()
    tag = request.tag if request is not None else None
    return tag.stable if tag is not None else None


def endpoint_asked() -> int | None:
    """The endpoint the LM of the request under way here is to send to while it is healthy (its
    `preferred_endpoint`: a Ray worker's LM for one task, as the driver chose); None: the spread's own choice."""
    request = _request.get()
    return getattr(request.lm, "preferred_endpoint", None) if request is not None else None


def _under_way(lm: Any) -> bool:
    """Whether a request of `lm` is under way here (a call it makes to itself inside it is the same call)."""
    request = _request.get()
    return request is not None and request.lm is lm


def _flight(
    scope: Any, lm: Any, args: tuple, kwargs: dict[str, Any], waits_blocking: bool = False
) -> tuple[Any, str | None]:
    """The flights of the caller's run (its ledger scope's: refed_dspy.clients.flights) and the request's key there,
    the cache's key of what it sends; (None, None) outside every run, for a request that cannot be keyed, or where a
    blocking wait would stall the event loop running in this thread."""
    flights = getattr(scope, "flights", None)
    if flights is None or (waits_blocking and _loop_running()):
        return None, None
    request = {**(getattr(lm, "kwargs", None) or {}), **kwargs, "positional": list(args)}
    request.pop("cache", None)
    model_type = getattr(lm, "model_type", None)
    request.update(model=str(getattr(lm, "model", "")), lm_class=lm_class_of(lm).__qualname__, model_type=model_type)
    try:
        return flights, dspy.cache.cache_key(request, ["api_key", "api_base", "base_url"])
    except Exception:  # noqa: BLE001 - a request the cache cannot key is sent as it is
        return None, None


def _wait_s(lm: Any, kwargs: dict[str, Any]) -> float:
    """How long a request waits for an identical one in flight: as long as it would wait for its own answer."""
    timeout = kwargs.get("timeout", told_of(lm).get("timeout"))
    return float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else TIMEOUT_S


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _raise_refusal(err: LMError) -> None:
    """A request refused before it was sent, whatever the client wrapped the refusal in, raised as it is and never
    retried (`unsent`)."""
    refused = unsent(err)
    if refused is not None:
        raise refused from None


def unsent(err: LMError) -> KeyProviderError | BudgetExceeded | None:
    """What refused `err`'s request before a byte of it was sent, as the transport raised it: the HTTP layer (a key
    bound for a host it must not reach: the config's mistake), or the budget (a batch line whose bound it cannot
    hold); None for a request that was sent."""
    refused = refusal_in(err)
    if refused is not None:
        return refused
    return next((one for one in causes(err) if isinstance(one, BudgetExceeded)), None)


def _elapsed() -> float:
    request = _request.get()
    return round(time.monotonic() - request.started, 4) if request is not None else 0.0


def lm_class_of(lm: Any) -> type:
    """The LM class behind the boundary (dspy.LM for the LMs build_lm makes; the user's class for theirs)."""
    for cls in type(lm).__mro__:
        if issubclass(cls, dspy.BaseLM) and not issubclass(cls, CallBoundary):
            return cls
    return type(lm)


_classes: dict[type, type] = {}
_classes_lock = threading.Lock()


def boundary_class(cls: type) -> type:
    """`cls` with the call boundary in front of it: one subclass per LM class."""
    with _classes_lock:
        sub = _classes.get(cls)
        if sub is None:
            sub = type(f"Bounded{cls.__name__}", (CallBoundary, cls), {"__module__": __name__})
            _classes[cls] = sub
        return sub


def _behind_boundary(cls: type) -> Any:
    """An empty instance of `cls` behind the boundary (its state is set after): how a bounded LM is rebuilt."""
    return boundary_class(cls).__new__(boundary_class(cls))


def ledger_of(lm: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[Any, Prompt | None]:
    """The ledger the request of `lm` about to be sent is opened on: the LM's own budget (one call reserved), else the
    ledger of the engine's work that makes it (None: none); and under a cost budget its prompt, counted, so that it
    is reserved at what it will really cost (and its UTF-8 bytes, where its model's provider counts otherwise than
    refed: what it is weighed at until a provider says its count)."""
    budget = lm.budget
    ledger = budget if budget is not None else current_work().ledger
    if ledger is None:
        return None, None
    if budget is not None and lm.price is None and budget.max_cost_usd is not None:
        budget.refuse(
            f"the {lm.role} LM '{lm.model}' has no price, so the cost budget of ${budget.max_cost_usd:g} cannot "
            f'be kept (price it in the config: [prices."{lm.model}"] input_usd_per_mtok, output_usd_per_mtok)'
        )
    if not ledger.counts_prompts:
        return ledger, None
    text, messages = args[0] if args else kwargs.get("prompt"), kwargs.get("messages")
    most = None if counts_as_we_do(str(lm.model)) else count_prompt(text, messages, utf8_bytes)
    return ledger, Prompt(count_prompt(text, messages), most)


class Prompt(NamedTuple):
    """A request's prompt as counted before it is sent: its tokens, and its UTF-8 bytes (None: its model's provider
    counts as refed does)."""

    tokens: int
    most: int | None


def open_on(lm: Any, ledger: Any, prompt: Prompt | None, stage: str, tier: str | None) -> list:
    """Open the request of `lm` at `stage` on `ledger` (BudgetExceeded when it could break the budget, MustWait while
    the calls in flight could) at the service tier it asks for (`tier`; where it names none and its provider serves
    such a request on no dearer tier than the default, the default's): written to the run's log before it is sent.
    Returns [ledger, ticket], the ledger given back to even if another is attached."""
    tokens, most = prompt or (None, None)
    tiers = provider_for(str(lm.model)).tiers
    tier = tier or (None if tiers is not None and tiers.unasked else DEFAULT_TIER)
    ticket = ledger.open_call(lm.role, str(lm.model), stage, lm.price, max_tokens_of(lm), tokens, tier=tier, most=most)
    return [ledger, ticket]


def release(opened: list | None) -> None:
    """Give back what the request opened as `opened` ([ledger, ticket]; None: nothing opened) reserved; the requests
    held back meanwhile look again."""
    if opened is not None:
        opened[0].release_call(opened[1])
        _ends.note()


# the longest a request held back waits before it looks again, should room be made elsewhere than by a request's end
HELD_S = 1.0


class _Ends:
    """The requests given back so far (`count`), and the requests waiting for the next: threads on a condition,
    coroutines on a future of their own loop."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def note(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits there any more
                loop.call_soon_threadsafe(_set, future)

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.count != seen, timeout)

    async def wait_async(self, seen: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            if self.count != seen:
                return
            self._futures.append((loop, future))
        try:
            with contextlib.suppress(asyncio.TimeoutError):  # not the builtin TimeoutError before Python 3.11
                await asyncio.wait_for(future, timeout)
        finally:
            with self._cond, contextlib.suppress(ValueError):
                self._futures.remove((loop, future))


def _set(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


_ends = _Ends()


def settle(opened: list | None, info: CallInfo, price: Any) -> None:
    """The request opened as `opened` is over (`info`): its ticket's bound given to a call cut off, its log line
    settled at `price`. Once per request."""
    if opened is None or opened[1].settled:
        return
    ledger, ticket = opened
    ticket.settled = True
    info.log_id = ticket.log_id
    if info.interrupted and info.cost_bound_usd is None and ticket.cost:
        info.cost_bound_usd = ticket.cost
    ledger.settle(ticket, info, price)


def max_tokens_of(lm: Any) -> int:
    """The LM's output limit (DSPy keeps a reasoning model's as max_completion_tokens); where it sends none, the
    model's own largest output by LiteLLM's table (what a reply may run to); 0 when that is unknown too."""
    kwargs = getattr(lm, "kwargs", None) or {}
    sent = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens")
    return int(sent) if sent else (table_limit(str(getattr(lm, "model", ""))) or 0)
