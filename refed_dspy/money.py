"""How an amount of money is written wherever refed prints one."""

from __future__ import annotations


def usd(cost: float | None, unknown: str = "cost unknown") -> str:
    """`$0.0123`, or `unknown` when the cost is not known (no price for the model, or an LM that reports no usage)."""
    return unknown if cost is None else f"${cost:.4f}"


def usd_up_to(cost: float | None, bound: float | None, unknown: str = "cost unknown") -> str:
    """`$0.0487`, or `$0.0487 (up to $0.0514)` when calls of unknown tokens (cut off, in flight when a process was
    killed, in a batch still open) may have cost up to `bound` more: what they were paid for is not known, only its
    most."""
    if cost is None or not bound:
        return usd(cost, unknown)
    return f"{usd(cost)} (up to {usd(cost + bound)})"
