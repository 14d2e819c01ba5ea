"""How an amount of money is written wherever refed prints one."""

from __future__ import annotations


def usd(cost: float | None, unknown: str = "cost unknown") -> str:
    """`$0.0123`, or `unknown` when the cost is not known (no price for the model, or an LM that reports no usage)."""
    return unknown if cost is None else f"${cost:.4f}"
