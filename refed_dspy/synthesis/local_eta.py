"""How long a run of this size takes here, said before a run on a local model the command started itself.

The tokens come from the run's own estimate (refed_dspy.synthesis.estimate: the real prompts walked, no LM called;
the prompt prefixes llama.cpp keeps between calls are not read again); the speed is this machine's, now: a few tokens
asked of the server with all its slots busy (`local_server.measure_speed`). Those requests are a check of the server
the command started, before the run: not the run's calls, and not in its ledger.
"""

from __future__ import annotations

import logging

from refed_dspy.clients.local_server import LocalServer, Speed, measure_speed
from refed_dspy.config import Config
from refed_dspy.engine.progress import rough_duration
from refed_dspy.errors import RefedError
from refed_dspy.store.records import Reference
from refed_dspy.synthesis.estimate import estimate

log = logging.getLogger(__name__)


def seconds_for(total: dict[str, float], speed: Speed) -> float:
    """Seconds to read the prompts (what is not cached) and write the completions of `total` (an estimate's total
    row) at `speed`."""
    read = max(0.0, total["prompt_tokens"] - total.get("cached_tokens", 0.0))
    return read / speed.prompt_per_s + total["completion_tokens"] / speed.completion_per_s


def eta_line(config: Config, server: LocalServer, references: list[Reference] | None = None) -> str | None:
    """The line that says how long this run takes here (None when the estimate or the speed cannot be had);
    `references`: the run's, when they are read already (else [seeds] is read)."""
    try:
        est = estimate(config, references, walk_refs=1)  # one reference walked: a rough figure, soon had
    except RefedError as err:  # the run will say it better
        log.debug("no time estimate: %s", err)
        return None
    speed = measure_speed(server.url, server.slots)
    if speed is None:
        return None
    total = est.total
    seconds = seconds_for(total, speed)
    return (
        f"local model: a run of {config.synthesis.size} samples takes about {rough_duration(seconds)} here "
        f"({total['calls']:.0f} LM calls, {total['completion_tokens']:,.0f} tokens to write at "
        f"{speed.completion_per_s:.1f}/s and {total['prompt_tokens'] - total['cached_tokens']:,.0f} to read at "
        f"{speed.prompt_per_s:.0f}/s, as fast as this machine is now)"
    )
