"""A request's prompt: how many tokens it holds, and how the request asks its provider to cache the part that repeats
across calls.

The adapter that formats a prompt knows which part of it repeats (refed_dspy.adapters.layout) and hands it to the
call it makes (`CallTag.stable`); the LM's HTTP transport (refed_dspy.clients.lm.PromptCacheTransport, which
build_lm puts under an LM whose provider caches on request) rewrites the request's body as its provider takes such a
request (`Provider.cache_request`: Anthropic's `cache_control` marks, OpenAI's `prompt_cache_key`). Below DSPy's own
cache, whose key is therefore the same with prompt caching on or off: a resumed run finds its answers either way.

The prompt's tokens are counted before it is sent (`count_prompt`), so that a cost budget reserves the call at
what it can really cost (a reference of 190,000 characters is not a prompt of 2,000 tokens).

Counted with OpenAI's o200k tokenizer (tiktoken, reading the copy LiteLLM ships: no download, and LiteLLM itself is
not imported); where that cannot be loaded, each UTF-8 byte counts as a token, which no byte-level tokenizer exceeds.
Other providers' tokenizers count differently: the ledger raises the count by the most a provider has counted over
ours (refed_dspy.ledger.budget.CallBudget.learn_prompt); a request of a model that is not OpenAI's o200k family
(`counts_as_we_do`) longer than any whose count a provider has said is weighed at its UTF-8 bytes (`Weighing`), online
and in batch.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dspy._vendor.lm15.transports import TransportRequest


@dataclasses.dataclass(slots=True)
class CacheAskingRequest(TransportRequest):
    """A request whose body asks the provider to cache its prompt; `asked` is its body before that: what it asks
    for (a batch's custom ids are made from it, so that a request sent with or without the cache's instructions is
    the same request, and a resumed run finds its answer either way)."""

    asked: bytes = b""


def asked_body(request: Any) -> bytes:
    """The body of `request` without what asks the provider to cache its prompt."""
    return getattr(request, "asked", None) or request.body


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


@functools.lru_cache(maxsize=64)
def counts_as_we_do(model: str) -> bool:
    """Whether `model`'s provider counts a prompt's tokens as `count_text` does: an OpenAI model tiktoken maps to
    o200k_base (gpt-4o, gpt-4.1, gpt-5, o-series), by the name after its provider prefix."""
    if getattr(_encoder(), "name", "") != "o200k_base":  # none at hand, or cl100k_base: it counts otherwise
        return False
    try:
        import tiktoken.model

        return tiktoken.model.encoding_name_for_model(model.rsplit("/", 1)[-1]) == "o200k_base"
    except (ImportError, KeyError):
        return False


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


def utf8_bytes(text: str) -> int:
    """The UTF-8 bytes of `text`: more than any byte-level tokenizer counts tokens in it."""
    return len(text.encode("utf-8"))


def count_text(text: str) -> int:
    """Tokens of `text` (UTF-8 bytes where no tokenizer is at hand: never fewer than a byte-level tokenizer's)."""
    enc = _encoder()
    if enc is None:
        return utf8_bytes(text)
    return len(enc.encode(text, disallowed_special=()))


def count_prompt(prompt: Any = None, messages: Any = None, count: Callable[[str], int] = count_text) -> int:
    """Tokens of a request's prompt: its messages (each content's text, and a few tokens of format per message), or
    its plain `prompt`; `count` counts a text (`utf8_bytes`: the most a provider can count in it)."""
    if not messages:
        return count("\n".join(_texts(prompt))) + PER_MESSAGE
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else message
        total += count("\n".join(_texts(content))) + PER_MESSAGE
    return total


MOST_RATIO = 8.0  # the most a provider's count of a prompt is taken to exceed ours by (a reply's usage is not proof)


@dataclasses.dataclass(frozen=True)
class Weighing:
    """How a call of one role is weighed before it is sent: its prompt counted here raised by the most a provider has
    counted over ours (`ratio`), and, when it is longer than any prompt whose count a provider has said (`heard_up_to`),
    at least the most a provider can count in it (its UTF-8 bytes, where its model does not count as we do:
    `counts_as_we_do`)."""

    ratio: float = 1.0
    heard_up_to: int = 0  # the longest prompt, as counted here, whose count a provider has said

    def tokens(self, counted: int, most: int | None) -> int:
        """The tokens a prompt counted here at `counted` (`most`: its UTF-8 bytes; None: its model counts as we do)
        is weighed at: a short seed's ratio does not vouch for a prompt of long references."""
        raised = int(counted * self.ratio) + 1
        return raised if most is None or counted <= self.heard_up_to else max(raised, most)

    def heard_of(self, counted: int, reported: int) -> Weighing:
        """This weighing once a provider has counted `reported` tokens of a prompt counted here at `counted` (raised
        by that ratio where it is more, at most 8)."""
        if counted <= 0 or reported <= 0:
            return self
        ratio = max(self.ratio, min(reported / counted, MOST_RATIO))
        return dataclasses.replace(self, ratio=ratio, heard_up_to=max(self.heard_up_to, counted))
