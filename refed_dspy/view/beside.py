"""A sample beside its reference, for the sample page: the sample's instruction and final response next to the
reference's, each part's closeness to it, and the stretches copied word for word marked on both sides (pure)."""

from __future__ import annotations

from typing import Any

from refed_dspy.store.records import final_response
from refed_dspy.text.closeness import closeness, copied_spans

PARTS = (("instruction", "Instruction"), ("response", "Final response"))


def pieces(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """`text` cut into (piece, copied) at `spans` (sorted, not overlapping); the pieces joined are `text`."""
    out, at = [], 0
    for start, end in spans:
        if start > at:
            out.append((text[at:start], False))
        out.append((text[start:end], True))
        at = end
    if at < len(text):
        out.append((text[at:], False))
    return out


def beside(sample: dict[str, Any], reference: tuple[str, str], threshold: float, measured: bool) -> dict[str, Any]:
    """What the page shows of `sample` beside `reference` (instruction, response): per part its title, both texts in
    pieces (copied runs marked) and, when `measured` (not a method that rewrites its reference), its closeness and
    whether it reaches `threshold`."""
    mine = {"instruction": sample.get("instruction") or "", "response": final_response(sample)}
    theirs = dict(zip(("instruction", "response"), reference, strict=True))
    parts = []
    for name, title in PARTS:
        a, b = mine[name], theirs[name]
        close = closeness(a, b) if measured else None
        parts.append(
            {
                "name": name,
                "title": title,
                "mine": pieces(a, copied_spans(a, b)),
                "theirs": pieces(b, copied_spans(b, a)),
                "closeness": close,
                "is_copy": close is not None and close.value >= threshold,
            }
        )
    return {"measured": measured, "threshold": threshold, "parts": parts}
