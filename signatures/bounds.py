"""The output contracts our signatures share: bounded text, bounded items and judge scores.

Free text stays a plain `str` (DSPy then reads it verbatim) and carries its bounds in its field;
lists and numbers carry theirs in their type. Both reach the provider in the JSON schema (as
maxLength, minItems/maxItems, minimum/maximum) and are checked when a reply is parsed. The length
caps are generous: they stop runaway decoding, not a long but sound answer.
"""

from __future__ import annotations

from typing import Annotated, Any

import dspy
from annotated_types import Len
from pydantic import Field, StringConstraints

RESPONSE_CHARS = 24_000  # a full answer (about 6,000 tokens)
CRITIQUE_CHARS = 8_000  # feedback and critiques
INSTRUCTION_CHARS = 4_000  # one instruction
DESCRIPTION_CHARS = 3_000  # a described feature of an instruction
RATIONALE_CHARS = 2_000  # a judge's reasons
ITEM_CHARS = 2_000  # one item of a list in an analysis or a plan
MAX_ITEMS = 20

Score = Annotated[int, Field(ge=1, le=10)]
"""A judge score: an integer from 1 to 10."""


def bounded_item(max_chars: int) -> Any:
    """The type of one non-empty list item of at most `max_chars` characters (surrounding space stripped)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_chars)]


def exactly(n: int, item: Any) -> Any:
    """The type of a list of exactly `n` items of type `item`."""
    return Annotated[list[item], Len(n, n)]


def text_output(max_chars: int, desc: str | None = None) -> Any:
    """An output field of non-empty free text of at most `max_chars` characters."""
    kwargs: dict[str, Any] = {"min_length": 1, "max_length": max_chars}
    if desc is not None:
        kwargs["desc"] = desc
    return dspy.OutputField(**kwargs)
