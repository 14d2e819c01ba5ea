"""How long a run takes online, on the flex tier and in batch, as `refed estimate` says it (pure arithmetic).

Online, the run keeps `synthesis.concurrency` calls in flight, so its wall time is its calls' time over that many
lanes: each call waits for its first token (`FIRST_TOKEN_S`) and writes its completion at `TOKENS_PER_S`, unless a
pilot measured the calls' seconds. Rate limits are not modelled: a run that meets one takes longer. The flex tier
answers the same calls more slowly (`FLEX_SLOWER`; OpenAI promises no figure), and now and then not at all (a wait).

In batch, each stage of the chain (feedback, then instructions, then responses, then improvements) waits for the
batches of the stage before it: the wall time is the number of stages times a batch's turnaround, typically
`BATCH_ROUND_S` and at most `BATCH_ROUND_MAX_S` (the providers' 24-hour window) each; times the waves of work, when
more pieces of work than `batch.max_in_flight` wait at once.
"""

from __future__ import annotations

from typing import Any

TOKENS_PER_S = 60.0  # a hosted model's output speed, one call (assumed where no pilot measured it)
FIRST_TOKEN_S = 0.8  # the wait before a call's first token (assumed likewise)
FLEX_SLOWER = 2.0  # flex calls take about this many times as long as default-tier ones (assumed)
BATCH_ROUND_S = 3600.0  # a batch's typical turnaround (assumed)
BATCH_ROUND_MAX_S = 24 * 3600.0  # the longest a provider's batch may take: its completion window


def call_seconds(calls: float, completion_tokens: float) -> float:
    """The assumed seconds of one default-tier call of a row of `calls` calls writing `completion_tokens` in all."""
    per_call = completion_tokens / calls if calls else 0.0
    return FIRST_TOKEN_S + per_call / TOKENS_PER_S


def wall_times(
    total: dict[str, Any],
    stages: int,
    concurrency: int,
    waves: int = 1,
    seconds_per_call: float | None = None,
    measured_on: str = "",
) -> dict[str, Any]:
    """Expected wall seconds of a run whose calls and tokens are `total` (an estimate's total row), in a chain of
    `stages` stages, online (default tier) and flex at `concurrency` calls in flight, and in batch (typical and at
    most, `waves` times over). `seconds_per_call`: what one call took on a pilot on tier `measured_on` (None:
    assumed)."""
    calls = float(total.get("calls") or 0.0)
    per_call = seconds_per_call
    if per_call is not None and measured_on == "flex":
        per_call /= FLEX_SLOWER  # the pilot ran on flex: its default-tier calls are that much faster
    if per_call is None:
        per_call = call_seconds(calls, float(total.get("completion_tokens") or 0.0))
    lanes = max(1, concurrency)
    online = calls * per_call / lanes + stages * per_call  # the last calls of each stage wait for those before
    return {
        "online_s": round(online, 1),
        "flex_s": round(online * FLEX_SLOWER, 1),
        "batch_s": round(stages * waves * BATCH_ROUND_S, 1),
        "batch_max_s": round(stages * waves * BATCH_ROUND_MAX_S, 1),
        "stages": stages,
        "waves": waves,
        "seconds_per_call": round(per_call, 3),
        "basis": f"measured on the pilot ({measured_on} tier)" if seconds_per_call is not None else "assumed",
    }
