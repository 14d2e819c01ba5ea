"""The LMs a user's teleprompter holds (MIPROv2's prompt_model and task_model, GEPA's reflection_lm, the `lm` of a
`teacher_settings` dict, ...), behind the call boundary for the length of one optimize call.

Inside the block the teleprompter holds copies of its LMs behind the boundary, attached to the optimization's budget
(the teacher handed to optimize is replaced by the teacher the run uses); afterwards it holds its own LMs again,
whatever happened. The user's LM objects themselves are never changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dspy

from refed_dspy.clients.boundary import bounded
from refed_dspy.clients.pricing import resolve_price
from refed_dspy.errors import ConfigError

ROLE = "optimizer"  # the role the teleprompter's own LMs are counted under (the teacher's calls stay the teacher's)


def held_lms(tp: Any) -> list[tuple[str, Any, Any]]:
    """(attribute, dict key or None, LM) for each dspy.BaseLM the teleprompter holds as an attribute or as a value
    of a dict attribute."""
    found: list[tuple[str, Any, Any]] = []
    for name, value in (getattr(tp, "__dict__", None) or {}).items():
        if isinstance(value, dspy.BaseLM):
            found.append((name, None, value))
        elif isinstance(value, dict):
            found += [(name, key, lm) for key, lm in value.items() if isinstance(lm, dspy.BaseLM)]
    return found


def check_prices(tp: Any, given_teacher: Any, max_cost_usd: float | None) -> None:
    """A cost budget needs a price for every LM that will spend it: ConfigError naming the first without one."""
    if max_cost_usd is None:
        return
    for name, key, lm in held_lms(tp):
        if lm is given_teacher:
            continue
        if resolve_price(str(getattr(lm, "model", "")), None, None, None) is None:
            where = f"{name}[{key!r}]" if key is not None else name
            raise ConfigError(
                f"optimize.max_cost_usd needs a price for the LM '{getattr(lm, 'model', '?')}' your teleprompter holds "
                f"({type(tp).__name__}.{where}), which is not in the price table: give it a priced model, or leave "
                "optimize.max_cost_usd unset"
            )


@contextlib.contextmanager
def bounded_teleprompter(tp: Any, given_teacher: Any, teacher: Any, budget: Any) -> Iterator[None]:
    """Within the block, `tp` holds bounded copies of its LMs on `budget` (`teacher` for `given_teacher`)."""
    found = held_lms(tp)
    originals = {name: getattr(tp, name) for name, _, _ in found}
    twins: dict[int, Any] = {id(given_teacher): teacher} if given_teacher is not None else {}

    def twin_of(lm: Any) -> Any:
        if id(lm) not in twins:
            twin = bounded(lm, ROLE, fresh=True)
            twin.attach_budget(budget, ROLE, resolve_price(str(lm.model), None, None, None))
            twins[id(lm)] = twin
        return twins[id(lm)]

    try:
        for name, value in originals.items():
            if isinstance(value, dict):
                setattr(tp, name, {k: twin_of(v) if isinstance(v, dspy.BaseLM) else v for k, v in value.items()})
            else:
                setattr(tp, name, twin_of(value))
        yield
    finally:
        for name, value in originals.items():
            setattr(tp, name, value)
