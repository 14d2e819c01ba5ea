"""When a model is deprecated, by LiteLLM's model table: its `deprecation_date` and, where the table names one, its
`successor_model`. A run of a model whose date has passed, or comes within NOTICE_DAYS, says so in one line as it
starts, naming the model to move to; nothing stops it (a provider may serve a model past its date, or retire it
before)."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from refed_dspy.providers.model_table import litellm_models, table_names

NOTICE_DAYS = 30  # a deprecation date this close is said


@dataclass(frozen=True)
class Deprecation:
    """A model's deprecation by LiteLLM's table: its date, and the model to move to (None: the table names none)."""

    date: dt.date
    successor: str | None


@functools.lru_cache(maxsize=1)
def _deprecation_table() -> dict[str, Deprecation]:
    """Of each model in LiteLLM's table that has a readable deprecation_date, its Deprecation."""
    out = {}
    for name, entry in litellm_models().items():
        when = entry.get("deprecation_date") if isinstance(entry, dict) else None
        try:
            date = dt.date.fromisoformat(str(when)) if when else None
        except ValueError:  # a date the table wrote some other way: no note rather than a wrong one
            date = None
        if date is not None:
            successor = entry.get("successor_model")
            out[name] = Deprecation(date, successor if isinstance(successor, str) and successor else None)
    return out


def deprecation(model: str) -> Deprecation | None:
    """`model`'s deprecation by LiteLLM's table, None when the table gives it no date."""
    table = _deprecation_table()
    return next((table[name] for name in table_names(model) if name in table), None)


def successor_name(model: str, successor: str) -> str:
    """The successor as the config would name it: with the model's provider prefix where the table's name has none
    (`openai/gpt-5-mini` -> `openai/gpt-5.6-terra`)."""
    if "/" in successor or "/" not in model:
        return successor
    return f"{model.rsplit('/', 1)[0]}/{successor}"


def deprecation_note(model: str, role: str = "teacher", today: dt.date | None = None) -> str | None:
    """One line when `model`'s deprecation date by LiteLLM's table has passed or comes within NOTICE_DAYS of `today`,
    naming its successor where the table has one; None otherwise."""
    gone = deprecation(model)
    today = today or dt.date.today()
    if gone is None or (gone.date - today).days > NOTICE_DAYS:
        return None
    days = (gone.date - today).days
    when = (
        f"passed its deprecation date, {gone.date}, {-days} days ago"
        if days < 0
        else f"reaches its deprecation date, {gone.date}, {'today' if days == 0 else f'in {days} days'}"
    )
    move = (
        f"; its successor is {successor_name(model, gone.successor)} (set {role}.model)"
        if gone.successor
        else f"; choose another {role}.model"
    )
    return f"note: {role} {model} {when}, by LiteLLM's model table{move}"
