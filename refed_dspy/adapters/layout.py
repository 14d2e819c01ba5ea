"""Which part of a prompt repeats across calls, so that a provider can be asked to cache it.

A signature says which of its inputs repeat across the calls of a run in their type, `Annotated[str, Repeated()]`:
the reference example every instruction made from it is answered with, the feedback written for it. They are its
first inputs, so that the prompt DSPy's adapters lay out puts them right after the instructions and the demos, ahead
of what changes from call to call (the layout tests check each signature of ours). The repeated part of a prompt then
ends at three places at most (`stable_prompt`): after the system message (the signature's instructions), after the
last demo, and after the repeated inputs of the last user message. Pure functions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import dspy

from refed_dspy.providers.base import StablePrompt, content_text


@dataclass(frozen=True)
class Repeated:
    """Type metadata of an input field whose value repeats across the calls of a run (a reference's example or its
    feedback): the prompt shows it before the inputs that change, and that far the prompt is asked to be cached."""


def repeated_inputs(signature: type[dspy.Signature]) -> tuple[str, ...]:
    """The leading input fields of `signature` declared `Repeated`, in order (a repeated field after one that is not
    starts no cacheable part: what precedes it changes)."""
    out = []
    for name, field in signature.input_fields.items():
        if not any(isinstance(m, Repeated) for m in field.metadata):
            break
        out.append(name)
    return tuple(out)


def stable_prompt(signature: type[dspy.Signature], messages: list[dict[str, Any]]) -> StablePrompt | None:
    """Where the repeated part of a prompt that an adapter laid out for `signature` ends (the system message, the
    demos, the last message's repeated inputs), with a key naming that part; None when nothing of it repeats."""
    if not messages:
        return None
    ends: list[tuple[int, int | None]] = []
    if messages[0].get("role") == "system" and content_text(messages[0].get("content")):
        ends.append((0, None))
    main = len(messages) - 1
    if main >= 2 and messages[main - 1].get("role") == "assistant":
        ends.append((main - 1, None))  # the last demo's answer
    lead = repeated_inputs(signature)
    text = messages[main].get("content")
    if lead and main > 0 and isinstance(text, str):
        after = [n for n in signature.input_fields if n not in lead and f"[[ ## {n} ## ]]" in text]
        cut = text.find(f"[[ ## {after[0]} ## ]]") if after else len(text)
        if cut > 0:
            ends.append((main, cut if after else None))
    if not ends:
        return None
    texts = tuple(content_text(m.get("content")) for m in messages[: ends[-1][0] + 1])
    last, offset = ends[-1]
    repeated = "\x1e".join([*texts[:last], texts[last][:offset] if offset is not None else texts[last]])
    key = "refed-" + hashlib.sha256(repeated.encode("utf-8")).hexdigest()[:24]
    return StablePrompt(texts=texts, ends=tuple(ends), key=key)
