"""A call the cost budget holds back (MustWait: the worst case of the calls in flight leaves it no room) waits at the
call boundary until one of them is given back, and then looks again: once per call that ends, not every 20 ms."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import dspy
import pytest

from refed_dspy.clients.calls import MustWait
from refed_dspy.clients.lm import bounded
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.providers.prices import Price

pytestmark = pytest.mark.filterwarnings("ignore:Implementing custom LMs through BaseLM.forward:DeprecationWarning")
PRICE = Price(1.0, 0.5, 2.0)  # a call of a few prompt tokens writing all of its 1,000 may cost about $0.002


def _reply() -> SimpleNamespace:
    message = SimpleNamespace(content="fine", tool_calls=None)
    return SimpleNamespace(
        choices=[SimpleNamespace(index=0, finish_reason="stop", message=message)],
        usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        model="my/model",
    )


class _Gated(dspy.BaseLM):
    """Answers once its gate (a threading.Event) opens: a call made in a thread."""

    def __init__(self, gate):
        super().__init__("my/model", max_tokens=1000)
        self.gate, self.entered = gate, threading.Event()

    def forward(self, prompt=None, messages=None, **kwargs):
        self.entered.set()
        self.gate.wait()
        return _reply()


class _GatedAsync(dspy.BaseLM):
    """Answers once its gate (an asyncio.Event) opens: a call awaited."""

    def __init__(self, gate):
        super().__init__("my/model", max_tokens=1000)
        self.gate, self.entered = gate, asyncio.Event()

    async def aforward(self, prompt=None, messages=None, **kwargs):
        self.entered.set()
        await self.gate.wait()
        return _reply()


class _Counting(CallBudget):
    """A cost budget that counts the times it held a call back."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.held, self.was_held = 0, threading.Event()

    def open_call(self, *args, **kwargs):
        try:
            return super().open_call(*args, **kwargs)
        except MustWait:
            self.held += 1
            self.was_held.set()
            raise


def test_a_call_held_back_by_the_budget_looks_again_when_a_call_ends_not_on_a_timer():
    """Two calls under a budget that fits the worst case of one: the second is held back for the 0.3 s the first is
    in flight, and asks the budget once more when the first ends (it used to ask every 20 ms: about 15 times)."""
    budget = _Counting(max_cost_usd=0.003)

    async def main() -> list:
        gate = asyncio.Event()
        inner = _GatedAsync(gate)
        lm = bounded(inner, "teacher", fresh=True).attach_budget(budget, "teacher", PRICE)
        first = asyncio.ensure_future(lm.acall("one"))
        await inner.entered.wait()  # the first call is in flight before the second asks
        second = asyncio.ensure_future(lm.acall("two"))
        assert await asyncio.to_thread(budget.was_held.wait, 10)
        await asyncio.sleep(0.3)  # the first call answers 0.3 s later
        gate.set()
        return [await first, await second]

    assert [r[0] for r in asyncio.run(main())] == ["fine", "fine"]
    assert budget.held == 1
    assert budget.total_calls == 2 and budget.reserved_calls == 0


def test_a_call_held_back_in_a_thread_looks_again_when_a_call_ends():
    """The same for calls made in threads (DSPy's evaluator, a module with only `forward`)."""
    budget = _Counting(max_cost_usd=0.003)
    gate = threading.Event()
    inner = _Gated(gate)
    lm = bounded(inner, "teacher", fresh=True).attach_budget(budget, "teacher", PRICE)
    answers: list = []
    first = threading.Thread(target=lambda: answers.append(lm("one")))
    first.start()
    assert inner.entered.wait(10)  # the first call is in flight before the second asks
    second = threading.Thread(target=lambda: answers.append(lm("two")))
    second.start()
    assert budget.was_held.wait(10)
    threading.Timer(0.3, gate.set).start()  # the first call answers 0.3 s later
    first.join(10)
    second.join(10)
    assert [a[0] for a in answers] == ["fine", "fine"]
    assert budget.held == 1
