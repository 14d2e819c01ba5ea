"""The one boundary every LM call of a run passes: accounting, budget, and the checks on how a reply ended.

`CallBoundary` is mixed into an LM class. Instead of growing an in-memory history, it hands one compact
`CallInfo` per completed call (cache hits included) to the collector of the current asyncio task. It turns
a reply cut off by max_tokens, or stopped by a content filter, into an exception right away, so DSPy does
not pay for a JSONAdapter retry of a reply that cannot parse.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dspy.utils.exceptions import LMError, LMUnsupportedFeatureError

from refed_dspy.clients.calls import (
    CallInfo,
    OutputRefused,
    OutputTruncated,
    _calls,
    _finish_reason,
    _first_text,
    _stage,
    _started,
    _tag,
)
from refed_dspy.clients.pricing import Price


class CallBoundary:
    """Mixin for a dspy.BaseLM class: reports each call to the current collector and keeps no history.

    With a `budget` (a CallBudget) attached, every call is reserved first and recorded after, under
    `role` at `price`; the budget refuses a call that could break it. Copies share the budget.
    """

    budget: Any = None
    role: str = "lm"
    price: Price | None = None
    endpoint_spread: Any = None  # several endpoints: their EndpointSpread (calls and failures per endpoint)

    def attach_budget(self, budget: Any, role: str, price: Price | None) -> CallBoundary:
        """Guard this LM (and its copies) with `budget`; returns self."""
        self.budget, self.role, self.price = budget, role, price
        return self

    def __call__(self, *args: Any, **kwargs: Any):
        started = _started.set(time.monotonic())
        try:
            if self.budget is None:
                return super().__call__(*args, **kwargs)
            self.budget.reserve(self.price, int(self.kwargs.get("max_tokens") or 0))
            try:
                return super().__call__(*args, **kwargs)
            finally:
                self.budget.release()
        except LMError as err:
            self._note_failure(err)
            raise
        finally:
            _started.reset(started)

    async def acall(self, *args: Any, **kwargs: Any):
        started = _started.set(time.monotonic())
        try:
            if self.budget is None:
                return await super().acall(*args, **kwargs)
            self.budget.reserve(self.price, int(self.kwargs.get("max_tokens") or 0))
            try:
                return await super().acall(*args, **kwargs)
            finally:
                self.budget.release()
        except asyncio.CancelledError as err:
            calls = _calls.get()
            if calls is not None and not getattr(err, "unpaid", False):  # a call still waiting in a batch: not paid
                calls.append(CallInfo(stage=_stage.get(), model=self.model, interrupted=True))
            raise
        except LMError as err:
            self._note_failure(err)
            raise
        finally:
            _started.reset(started)

    def _note_failure(self, err: LMError) -> None:
        """A request that failed (no reply, no tokens) joins the calls collected, so failures reconcile with
        what the provider saw; one that never left the client (a setting it cannot send) does not."""
        calls = _calls.get()
        if calls is not None and not isinstance(err, LMUnsupportedFeatureError):
            started = _started.get()
            calls.append(
                CallInfo(
                    stage=_stage.get(),
                    model=self.model,
                    error=type(err).__name__,
                    seconds=round(time.monotonic() - started, 4) if started is not None else 0.0,
                )
            )

    def update_history(self, entry: dict[str, Any]) -> None:
        usage = entry.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        response = entry.get("response")
        if isinstance(response, tuple):
            response = response[0] if response else None
        finish = _finish_reason(response)
        started = _started.get()
        tag = _tag.get()
        info = CallInfo(
            stage=_stage.get(),
            model=self.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int((details or {}).get("cached_tokens") or 0),
            cache_hit=not usage,
            finish_reason=finish,
            seconds=round(time.monotonic() - started, 4) if started is not None else 0.0,
            repair=tag is not None and tag.repair,
        )
        if tag is not None:
            tag.info = info
        calls = _calls.get()
        if calls is not None:
            calls.append(info)
        if self.budget is not None:
            self.budget.record(
                self.role, self.price, info.prompt_tokens, info.completion_tokens, info.cached_tokens, info.cache_hit
            )
        if finish == "length":
            raise OutputTruncated(
                f"reply cut off at max_tokens ({info.completion_tokens} completion tokens)",
                _first_text(entry.get("outputs")),
            )
        if finish == "content_filter":
            raise OutputRefused("reply stopped by the provider's content filter", _first_text(entry.get("outputs")))
