"""What providers charge: token prices and cost arithmetic. Prices are USD per 1M tokens: LiteLLM's price map by
default (hundreds of models, read offline), the config's prices over it (`resolve_price`): a role's own section for
the model it names, and the `[prices]` table for any model (refed_dspy.config.prices: an LM handed in from Python, a
teleprompter's or a metric's own LM).

An LM is priced by its own model, never by a role's section that names another one.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens: uncached input, cached input (read from the provider's prompt cache), output, and prompt
    tokens written to the provider's prompt cache (`cache_write`; None: at the input price, as OpenAI's automatic
    cache writes them; Anthropic charges 1.25x its input price)."""

    input: float
    cached_input: float
    output: float
    cache_write: float | None = None

    @property
    def written(self) -> float:
        """USD per 1M prompt tokens written to the provider's cache."""
        return self.input if self.cache_write is None else self.cache_write

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, written_tokens: int = 0
    ) -> float:
        """Cost of one call. `prompt_tokens` includes the tokens read from the provider's cache (`cached_tokens`) and
        those written to it (`written_tokens`), as refed counts them for every provider."""
        cached = min(cached_tokens, prompt_tokens)
        written = min(written_tokens, prompt_tokens - cached)
        return (
            (prompt_tokens - cached - written) * self.input
            + cached * self.cached_input
            + written * self.written
            + completion_tokens * self.output
        ) / 1e6

    def bound(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The most one call of `prompt_tokens` and `completion_tokens` can cost: every prompt token at the dearer of
        the input and cache-write prices (a call whose prompt the provider writes to its cache pays more than one
        that reads nothing)."""
        return (prompt_tokens * max(self.input, self.written) + completion_tokens * self.output) / 1e6

    def scaled(self, factor: float) -> Price:
        """This price times `factor` (a batch API's discount)."""
        write = None if self.cache_write is None else self.cache_write * factor
        return Price(self.input * factor, self.cached_input * factor, self.output * factor, write)


_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


_MAP_FILE = "model_prices_and_context_window_backup.json"


@functools.lru_cache(maxsize=1)
def _price_map() -> dict[str, tuple[float | None, float | None, float | None, float | None]]:
    """LiteLLM's price map: {model: (input, cached input, output, cache write) USD per token}. Read from the copy LiteLLM ships,
    without importing LiteLLM (that import alone takes 2.5 s and 127 MiB, for a table this reads in 20 ms); where
    the file is not found, from litellm.model_cost (offline: LITELLM_LOCAL_MODEL_COST_MAP)."""
    spec = importlib.util.find_spec("litellm")  # finds the package without running it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((Path(f) / _MAP_FILE for f in folders if (Path(f) / _MAP_FILE).is_file()), None)
    if path is not None:
        table = json.loads(path.read_text(encoding="utf-8"))
    else:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
        import litellm

        table = litellm.model_cost
    return {
        name: (
            e.get("input_cost_per_token"),
            e.get("cache_read_input_token_cost"),
            e.get("output_cost_per_token"),
            e.get("cache_creation_input_token_cost"),
        )
        for name, e in table.items()
        if isinstance(e, dict)
    }


def _names(model: str) -> list[str]:
    """The names a model may have in the price map: as given, without its provider prefix, its last part (a router's
    `openrouter/openai/gpt-4o-mini`), and each without a date suffix."""
    bare = model.split("/", 1)[1] if "/" in model else model
    last = model.rsplit("/", 1)[-1]
    names = [model, bare, last, _DATED.sub("", model), _DATED.sub("", bare), _DATED.sub("", last)]
    return list(dict.fromkeys(n for n in names if n))


def default_price(model: str) -> Price | None:
    """The list price of `model` in LiteLLM's price map (provider prefix and date suffix ignored when the map has no
    entry under the full name), or None when the map does not know it (or prices it at nothing)."""
    table = _price_map()
    for name in _names(model):
        inp, cached, out, write = table.get(name, (None, None, None, None))
        if not inp and not out:
            continue
        per_m = [round(float(v or 0) * 1e6, 6) for v in (inp, cached if cached is not None else inp, out)]
        return Price(*per_m, cache_write=round(float(write) * 1e6, 6) if write is not None else None)
    return None


def close_priced_names(model: str, n: int = 1) -> list[str]:
    """Names in LiteLLM's price map close to `model` (a typo's likely meaning), with `model`'s provider prefix where it
    had one and the map's name has none; [] when none is close."""
    import difflib

    prefix, bare = model.split("/", 1) if "/" in model else ("", model)
    table = _price_map()
    plain = [name for name in table if "/" not in name]  # the map's own names of a provider's models
    found = [f"{prefix}/{name}" if prefix else name for name in difflib.get_close_matches(bare, plain, n, 0.85)]
    found = found or difflib.get_close_matches(model, [name for name in table if "/" in name], n=n, cutoff=0.85)
    return [name for name in found if name != model]


def resolve_price(
    model: str,
    input_usd: float | None,
    cached_usd: float | None,
    output_usd: float | None,
    write_usd: float | None = None,
) -> Price | None:
    """Config prices where given, else LiteLLM's price map; None when input or output price is unknown. A config that
    sets the input price but no cache-write price keeps the map's ratio of the two (Anthropic: 1.25x), so that a
    write is never priced below what the provider charges for it."""
    base = default_price(model)
    inp = input_usd if input_usd is not None else (base.input if base else None)
    out = output_usd if output_usd is not None else (base.output if base else None)
    if inp is None or out is None:
        return None
    cached = cached_usd if cached_usd is not None else (base.cached_input if base and input_usd is None else inp)
    write = write_usd
    if write is None and base is not None and base.cache_write is not None:
        write = base.cache_write if input_usd is None or not base.input else base.cache_write / base.input * inp
    return Price(inp, cached, out, write)
