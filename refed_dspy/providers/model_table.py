"""LiteLLM's model table, read as data: the file LiteLLM ships with every model's prices, limits and capabilities.

It is read without importing LiteLLM (that import alone takes seconds, for a table read in milliseconds); where the
file is not found, from `litellm.model_cost` (offline: LITELLM_LOCAL_MODEL_COST_MAP). `model_entry` finds a model
under the names it may have there (`table_names`): its provider prefix and a date suffix are ignored where the table
has no entry under the full name. Prices (prices.py) and a model's sampling defaults (sampling.py) are read from it;
each keeps only what it reads (the whole table is about 5 MiB in memory, and is not kept).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAP_FILE = "model_prices_and_context_window_backup.json"
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def litellm_models() -> dict[str, Any]:
    """LiteLLM's model table, {model name: entry}, as it ships with the LiteLLM installed: read anew at each call
    (about 20 ms), for a reader to keep what it needs of it."""
    spec = importlib.util.find_spec("litellm")  # finds the package without running it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((Path(f) / MAP_FILE for f in folders if (Path(f) / MAP_FILE).is_file()), None)
    if path is not None:
        return json.loads(path.read_text(encoding="utf-8"))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import litellm

    return dict(litellm.model_cost)


def table_names(model: str) -> list[str]:
    """The names a model may have in the table: as given, without its provider prefix, its last part (a router's
    `openrouter/openai/gpt-4o-mini`), and each without a date suffix."""
    bare = model.split("/", 1)[1] if "/" in model else model
    last = model.rsplit("/", 1)[-1]
    names = [model, bare, last, _DATED.sub("", model), _DATED.sub("", bare), _DATED.sub("", last)]
    return list(dict.fromkeys(n for n in names if n))


def model_entry(model: str, table: Mapping[str, Any]) -> dict[str, Any] | None:
    """`table`'s entry for `model` (a reader's copy of the model table, keyed as it is: the first of the model's names
    it holds), None when it does not know the model."""
    for name in table_names(model):
        entry = table.get(name)
        if isinstance(entry, dict):
            return entry
    return None
