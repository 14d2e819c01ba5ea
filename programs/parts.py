"""The parts of a pipeline program, how the runner calls them, and the check made before any call is paid.

A pipeline (ReferenceSynthesis, ReflectionTuning, or a user's own module) exposes its parts as attributes:
`collect` (reference -> feedback), `synthesizer` (reference instruction + feature -> new instructions) and
`respond` (one instruction -> its sample). The runner schedules each part on its own and calls it with the
keyword inputs below, so a part may be any DSPy module that takes them: one with `aforward` is awaited, one
with only `forward` runs in a worker thread.

Its steps (`run_steps`, `arun_steps`): one body for a program's sync and async paths. Its steps are a generator that
yields each call it makes, and `run_steps` / `arun_steps` make those calls (`predictor(**inputs)` or `await
predictor.acall(**inputs)`), each tagged with its stage, sending each prediction back. A list of calls is made at
once: concurrently when awaited (every one finishes before the first error is raised, so none outlives its caller),
one after the other in the sync path; the list of their predictions is sent back. The adapter drives its
ask-parse-repair exchange the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

import dspy

from refed_dspy.clients.calls import stage
from refed_dspy.engine.failures import gather_settled
from refed_dspy.engine.transport import has_aforward
from refed_dspy.errors import ConfigError

# The keyword inputs the runner passes to each part (values are placeholders for the signature check).
PART_INPUTS: dict[str, dict[str, Any]] = {
    "collect": {"reference": None},
    "synthesizer": {
        "reference_instruction": "",
        "feature_name": "",
        "feature_description": "",
        "n": 1,
        "rollout_id": None,
    },
    "respond": {"reference_instruction": "", "reference_response": "", "instruction": "", "feedback": None},
    "recycle": {"instruction": "", "response": ""},
}


class PartsOf(Protocol):
    """What `check_pipeline` needs of a method: its name, and the parts it runs with the keyword inputs each takes
    ({attribute: inputs}; PART_INPUTS holds those of the built-in parts)."""

    name: str
    parts: dict[str, dict[str, Any]]


def unfrozen(module: Any) -> Any:
    """`module`, or for a compiled one (`_compiled`, which DSPy sets on an optimizer's result) a copy that is not
    frozen: DSPy hides a frozen child's predictors from its parent, so a pipeline holding it would neither save
    nor hash its demos and instructions."""
    if not getattr(module, "_compiled", False):
        return module
    copy = module.deepcopy()
    copy._compiled = False
    return copy


def with_open_parts(program: Any, names: tuple[str, ...] = ("collect", "synthesizer", "respond")) -> Any:
    """`program` with every frozen part replaced by an unfrozen copy (on a copy of the program, when one is)."""
    frozen = [n for n in names if getattr(getattr(program, n, None), "_compiled", False)]
    if not frozen:
        return program
    program = program.deepcopy()  # its parts are copies too: open them in place
    for name in frozen:
        getattr(program, name)._compiled = False
    return program


def _takes(fn: Any, inputs: dict[str, Any]) -> str | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin or C callable: let the call decide
    try:
        sig.bind(**inputs)
    except TypeError as err:
        return str(err)
    return None


def check_pipeline(program: Any, method: PartsOf, what: str = "program") -> list[str]:
    """Refuse (ConfigError, one line) a program that cannot run `method`: a missing part, a part that is not
    a DSPy module, one with no forward/aforward, or one whose entry point does not take the runner's inputs.
    Returns the names of the parts that will run in worker threads (they have no `aforward`)."""
    if not isinstance(program, dspy.Module):
        raise ConfigError(
            f"{what}: a {type(program).__name__} is not a DSPy module (give a dspy.Module whose parts "
            f"are {', '.join(method.parts)})"
        )
    threaded = []
    for name, inputs in method.parts.items():
        part = getattr(program, name, None)
        if not isinstance(part, dspy.Module):
            found = "nothing" if part is None else f"a {type(part).__name__}"
            raise ConfigError(
                f"{what} ({type(program).__name__}): method '{method.name}' needs its part '{name}' "
                f"(a DSPy module), found {found}"
            )
        entry = getattr(part, "aforward", None) if has_aforward(part) else getattr(part, "forward", None)
        if not callable(entry):
            raise ConfigError(f"{what}: part '{name}' ({type(part).__name__}) has neither aforward nor forward")
        wrong = _takes(entry, inputs)
        if wrong:
            keys = ", ".join(k for k in inputs if k != "rollout_id")
            raise ConfigError(
                f"{what}: part '{name}' ({type(part).__name__}) does not take the runner's inputs ({keys}): {wrong}"
            )
        if not has_aforward(part):
            threaded.append(name)
    if not program.named_predictors():
        raise ConfigError(f"{what} ({type(program).__name__}) has no predictors: nothing in it calls an LM")
    return threaded


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
