"""A count in words, its noun agreeing with it: "1 sample", "2 samples", "1 reply", "0 replies"."""

from __future__ import annotations


def counted(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` and `noun`, plural (`nouns`, by default the noun and an s) unless `n` is 1; thousands separated."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"
