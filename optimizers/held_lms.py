"""The LMs an optimization's objects hold, found before any call: so that each is claimed for its role on the run's
ledger (refed_dspy.clients.lm_routing) and, under a cost budget, refused before the first call when it has no price.

Where they are found: a teleprompter's attributes (MIPROv2's prompt_model and task_model, GEPA's reflection_lm, SIMBA's
prompt_model, the `lm` of a `teacher_settings` dict, an LM of an object it holds, such as GEPA's instruction proposer)
are the role `optimizer`; the judge of a metric of ours (`make_metric`), wherever it is held, is the role `judge`; an
LM a user's metric holds (an attribute, a closure variable, a global it names) is the role `metric`; an LM pinned to a
predictor of the program is the role `teacher`. An LM called that none of these holds is still caught when it is called
(role `metric` inside a metric, else `other`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import dspy

from refed_dspy.clients.keys import check_lm_key
from refed_dspy.clients.lm import price_of_lm
from refed_dspy.config.prices import PriceBook
from refed_dspy.errors import ConfigError
from refed_dspy.optimizers.metrics import CountingMetric, JudgeMetric

_METRIC_ATTRS = ("metric", "metric_fn")  # where DSPy's teleprompters keep their metric


@dataclass(frozen=True)
class HeldLM:
    """One LM an object holds: where (for a message), the role its calls are counted under, the LM."""

    where: str
    role: str
    lm: Any


def metric_lms(metric: Any, where: str = "metric") -> list[HeldLM]:
    """The LMs a metric holds: the judge of a metric of ours; an LM a user's metric holds as an attribute, a closure
    variable or a global it names (one level deep: an LM it builds while it runs is caught when it is called)."""
    if metric is None:
        return []
    if isinstance(metric, JudgeMetric):
        return [HeldLM(f"{where}.lm", "judge", metric.lm)] if isinstance(metric.lm, dspy.BaseLM) else []
    if isinstance(metric, CountingMetric):
        return metric_lms(metric.metric, where)
    found: list[HeldLM] = []
    named: dict[str, Any] = {}
    func = getattr(metric, "__func__", metric)
    if inspect.isfunction(func):
        try:
            closure = inspect.getclosurevars(func)
            named = {**closure.globals, **closure.nonlocals}
        except (TypeError, ValueError):
            named = {}
        if inspect.ismethod(metric):
            named.update(vars(metric.__self__) if hasattr(metric.__self__, "__dict__") else {})
    elif hasattr(metric, "__dict__"):
        named = dict(vars(metric))
    for name, value in named.items():
        if isinstance(value, dspy.BaseLM):
            found.append(HeldLM(f"{where}: {name}", "metric", value))
        elif isinstance(value, (JudgeMetric, CountingMetric)):
            found += metric_lms(value, f"{where}: {name}")
        elif isinstance(value, dspy.Module):
            found += program_lms(value, f"{where}: {name}", role="metric")
    return found


def program_lms(program: Any, where: str = "program", role: str = "teacher") -> list[HeldLM]:
    """The LMs pinned to the predictors of a program (`predictor.lm`)."""
    if not isinstance(program, dspy.Module):
        return []
    return [
        HeldLM(f"{where}.{name}.lm", role, p.lm)
        for name, p in program.named_predictors()
        if isinstance(getattr(p, "lm", None), dspy.BaseLM)
    ]


def teleprompter_lms(tp: Any) -> list[HeldLM]:
    """The LMs a teleprompter holds: as attributes, values of dict attributes and attributes of an object it holds
    (the role `optimizer`), and in its metric (see metric_lms)."""
    found: list[HeldLM] = []
    name = type(tp).__name__
    for attr, value in (getattr(tp, "__dict__", None) or {}).items():
        where = f"{name}.{attr}"
        if isinstance(value, dspy.BaseLM):
            found.append(HeldLM(where, "optimizer", value))
        elif attr in _METRIC_ATTRS:
            found += metric_lms(value, where)
        elif isinstance(value, dict):
            found += [HeldLM(f"{where}[{k!r}]", "optimizer", v) for k, v in value.items() if isinstance(v, dspy.BaseLM)]
        elif hasattr(value, "__dict__") and not isinstance(value, (type, dspy.Module)) and not callable(value):
            for inner, lm in vars(value).items():
                if isinstance(lm, dspy.BaseLM):
                    found.append(HeldLM(f"{where}.{inner}", "optimizer", lm))
    return found


def check_held(held: list[HeldLM], prices: PriceBook, budget_field: str | None) -> None:
    """Before any call: each held LM's key goes only to its provider's hosts (KeyProviderError); a cost budget needs
    a price for every LM that will spend it (ConfigError naming the first without one)."""
    for one in held:
        check_lm_key(one.lm, one.where)
    if budget_field is None:
        return
    for one in held:
        model = str(getattr(one.lm, "model", "?"))
        if price_of_lm(one.lm, prices) is None:
            raise ConfigError(
                f"{budget_field} needs a price for the LM '{model}' ({one.where}, counted as {one.role}), which is "
                f'not in the price table: price it in the config ([prices."{model}"] input_usd_per_mtok and '
                f"output_usd_per_mtok), give it a priced model, or leave {budget_field} unset"
            )
