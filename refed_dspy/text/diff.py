"""A word-level diff of two texts, for showing what the improvement step changed (pure)."""

from __future__ import annotations

import difflib
import re

_PIECE = re.compile(r"\s+|[^\s]+")


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """(op, text) pieces that rebuild both texts: op 'same' (in both), 'del' (only before), 'ins' (only after).

    Words and the whitespace between them are the units, so line breaks survive and a changed word is
    shown as one deletion and one insertion.
    """
    a, b = _PIECE.findall(before or ""), _PIECE.findall(after or "")
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("ins", "".join(b[j1:j2])))
    return out


def changed_share(before: str, after: str) -> float:
    """The share of words that the edit from `before` to `after` deleted or inserted (0: same, 1: all new)."""
    a, b = (before or "").split(), (after or "").split()
    if not a and not b:
        return 0.0
    return round(1.0 - difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio(), 4)
