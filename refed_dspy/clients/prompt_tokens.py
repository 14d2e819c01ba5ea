"""How many tokens a request's prompt holds, counted before it is sent, so that a cost budget reserves the call at
what it can really cost (a reference of 190,000 characters is not a prompt of 2,000 tokens).

Counted with OpenAI's o200k tokenizer (tiktoken, reading the copy LiteLLM ships: no download, and LiteLLM itself is
not imported); where that cannot be loaded, each UTF-8 byte counts as a token, which no byte-level tokenizer exceeds.
Other providers' tokenizers count differently: the ledger raises the count by the most a provider has counted over
ours (refed_dspy.ledger.budget.CallBudget.learn_prompt).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PER_MESSAGE = 4  # the tokens a chat format adds around each message (role, separators)


@functools.lru_cache(maxsize=1)
def _encoder() -> Any:
    """tiktoken's o200k_base (cl100k_base where it is missing), from LiteLLM's bundled copies; None when unavailable."""
    spec = importlib.util.find_spec("litellm")  # finds the package without running it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    bundled = next((Path(f) / "litellm_core_utils" / "tokenizers" for f in folders), None)
    if bundled is not None and bundled.is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
    try:
        import tiktoken
    except ImportError:
        return None
    for name in ("o200k_base", "cl100k_base"):
        try:
            return tiktoken.get_encoding(name)
        except Exception as err:  # noqa: BLE001 - not on disk (tiktoken would download it): the next, else bytes
            log.debug("tokenizer %s unavailable: %s", name, err)
    return None


def _texts(value: Any) -> list[str]:
    """The text a message's content (or a prompt) carries: a string, or the text parts of a list of parts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out: list[str] = []
        for part in value:
            if isinstance(part, dict):
                out += [str(v) for k, v in part.items() if k != "type" and isinstance(v, str)]
            else:
                out += _texts(part)
        return out
    return [] if value is None else [json.dumps(value, default=str)]


def count_text(text: str) -> int:
    """Tokens of `text` (UTF-8 bytes where no tokenizer is at hand: never fewer than a byte-level tokenizer's)."""
    enc = _encoder()
    if enc is None:
        return len(text.encode("utf-8"))
    return len(enc.encode(text, disallowed_special=()))


def count_prompt(prompt: Any = None, messages: Any = None) -> int:
    """Tokens of a request's prompt: its messages (each content's text, and a few tokens of format per message), or
    its plain `prompt`."""
    if not messages:
        return count_text("\n".join(_texts(prompt))) + PER_MESSAGE
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else message
        total += count_text("\n".join(_texts(content))) + PER_MESSAGE
    return total
