"""One body for a program's sync and async paths: its steps are a generator that yields each call it makes, and
`run_steps` / `arun_steps` make those calls (`predictor(**inputs)` or `await predictor.acall(**inputs)`), each tagged
with its stage, sending each prediction back. A list of calls is made at once: concurrently when awaited (every one
finishes before the first error is raised, so none outlives its caller), one after the other in the sync path; the
list of their predictions is sent back. The adapter drives its ask-parse-repair exchange the same way."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import dspy

from refed_dspy.clients.calls import stage
from refed_dspy.runtime.sync import gather_settled


@dataclass(frozen=True)
class Call:
    """One call a program's steps make: `predictor` on `inputs` (and keyword settings such as `signature` or
    `config`), its LM calls tagged `stage`."""

    predictor: dspy.Module
    stage: str
    inputs: dict[str, Any]


Steps = Generator[Call | list[Call], Any, Any]


def _make(call: Call) -> Any:
    with stage(call.stage):
        return call.predictor(**call.inputs)


async def _amake(call: Call) -> Any:
    with stage(call.stage):
        return await call.predictor.acall(**call.inputs)


def run_steps(steps: Steps) -> Any:
    """Make the calls `steps` yields, one after the other; what it returns."""
    reply: Any = None
    while True:
        try:
            asked = steps.send(reply)
        except StopIteration as done:
            return done.value
        reply = [_make(call) for call in asked] if isinstance(asked, list) else _make(asked)


async def arun_steps(steps: Steps) -> Any:
    """`run_steps`, awaiting each call's `acall` (a list of calls concurrently)."""
    reply: Any = None
    while True:
        try:
            asked = steps.send(reply)
        except StopIteration as done:
            return done.value
        reply = await gather_settled(*map(_amake, asked)) if isinstance(asked, list) else await _amake(asked)
