"""What a model takes when a config leaves its temperature and output limit unset, and whether it reasons.

Most models take the usual settings: a teacher at temperature 1 (distinct samples from one prompt), a judge at 0, and
4,096 output tokens. A reasoning model thinks before it answers: its hidden reasoning tokens are billed as output, it
may take a `reasoning_effort`, and some providers hold it to settings of their own (OpenAI's reasoning models take only
temperature 1 and, through DSPy, an output limit of at least 16,000 tokens). A provider whose models differ says so in
its own file (`Provider.sampling`); what LiteLLM's model table says of a model (whether it reasons, which efforts it
takes, its own output limit) is read here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from refed_dspy.providers.litellm_table import litellm_models, model_entry

TEACHER_TEMPERATURE = 1.0
JUDGE_TEMPERATURE = 0.0
MAX_TOKENS = 4096
EFFORTS = ("minimal", "low", "medium", "high")  # the reasoning_effort values a config may name
# what this module reads of a model in LiteLLM's table
_READ = ("supports_reasoning", "reasoning_effort_levels", "supports_minimal_reasoning_effort", "max_output_tokens")


@functools.lru_cache(maxsize=1)
def _sampling_table() -> dict[str, dict[str, Any]]:
    """Of each model in LiteLLM's table, the fields this module reads (about 1 MiB kept, of the table's 5)."""
    return {name: {k: e[k] for k in _READ if k in e} for name, e in litellm_models().items() if isinstance(e, dict)}


@dataclass(frozen=True)
class Sampling:
    """The settings a model takes where a config is silent, and what it allows.

    Attributes:
        temperature: a teacher's temperature.
        judge_temperature: a judge's (it scores: the same answer to the same question).
        max_tokens: the output limit (completion tokens, hidden reasoning included).
        reasoning: the model reasons before it answers (hidden reasoning tokens, billed as output).
        efforts: the reasoning_effort values it takes: None when LiteLLM's table does not know the model (any is
            sent), () for a model that takes none.
        fixed_temperature: the only temperature it takes (None: any).
        least_max_tokens: the least output limit its client takes (None: any).
        own_limit: its own largest output, by LiteLLM's table (None: unknown).
        kind: what it is, where its settings are not the usual ones ('an OpenAI reasoning model'; '' for the usual).
    """

    temperature: float = TEACHER_TEMPERATURE
    judge_temperature: float = JUDGE_TEMPERATURE
    max_tokens: int = MAX_TOKENS
    reasoning: bool = False
    efforts: tuple[str, ...] | None = None
    fixed_temperature: float | None = None
    least_max_tokens: int | None = None
    own_limit: int | None = None
    kind: str = ""

    def temperature_for(self, role: str) -> float:
        """The temperature of a `role` (teacher, judge, ...) whose section sets none."""
        return self.judge_temperature if role == "judge" else self.temperature


def table_efforts(model: str) -> tuple[str, ...] | None:
    """The reasoning_effort values LiteLLM's table says `model` takes: None when the table does not know the model, ()
    when it says the model does not reason; of those it lists (or, listing none, all but `minimal` where it says the
    model lacks that one), the ones a config may name."""
    entry = model_entry(model, _sampling_table())
    if entry is None:
        return None
    if not entry.get("supports_reasoning"):
        return ()
    levels = entry.get("reasoning_effort_levels")
    if isinstance(levels, list) and levels:
        return tuple(e for e in EFFORTS if e in levels)
    if entry.get("supports_minimal_reasoning_effort") is False:
        return tuple(e for e in EFFORTS if e != "minimal")
    return EFFORTS


def table_limit(model: str) -> int | None:
    """The model's own largest output in LiteLLM's table (None: not known)."""
    entry = model_entry(model, _sampling_table()) or {}
    limit = entry.get("max_output_tokens")
    return int(limit) if isinstance(limit, int | float) and limit > 0 else None


def usual_sampling(model: str) -> Sampling:
    """The usual settings, with what LiteLLM's table says of `model`: whether it reasons and which efforts it takes."""
    efforts = table_efforts(model)
    return Sampling(reasoning=bool(efforts), efforts=efforts, own_limit=table_limit(model))


def held_reasoning(model: str, least_max_tokens: int, kind: str) -> Sampling:
    """The settings of a reasoning model whose provider takes only temperature 1 and whose client sends it an output
    limit of at least `least_max_tokens` (`kind`: what it is, for the line a run starts with)."""
    efforts = table_efforts(model)
    return Sampling(
        temperature=1.0,
        judge_temperature=1.0,
        max_tokens=least_max_tokens,
        reasoning=True,
        efforts=EFFORTS if efforts is None else efforts,
        fixed_temperature=1.0,
        least_max_tokens=least_max_tokens,
        own_limit=table_limit(model),
        kind=kind,
    )
