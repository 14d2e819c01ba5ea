"""The scorer's passes on a server that returns prompt log-probabilities: vLLM's OpenAI-compatible completions API
(`echo` with `logprobs`, one token generated), so a large model scores without being loaded here.

A pass is the plain text "instruction\\n\\nresponse" (or the response alone): the server applies no chat template to
a completion. Each token's log-probability comes back with its offset in the text, which says whose token it is.
Texts are cut at `max_tokens` x 4 characters (the server tokenizes; about four characters a token). No key is sent:
the server is one of yours (a loopback or private address). No pooled states: coherence needs
[report] embedding_model.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from refed_dspy.errors import ConfigError
from refed_dspy.scoring.stats import PassResult

CHARS_PER_TOKEN = 4
SEPARATOR = "\n\n"
TIMEOUT_S = 300


class ServerModel:
    """A model on a vLLM (or any OpenAI-completions) server that echoes prompt log-probabilities."""

    pooled = False

    def __init__(self, model: str, api_base: str):
        self.model, self.url = model, api_base.rstrip("/") + "/completions"
        self.label = f"{model} at {api_base}"
        self.identity = f"server|{model}"
        self.device = api_base

    def run(
        self,
        passes: list[tuple[str, str | None]],
        max_tokens: int,
        batch_size: int,
        done: Callable[[int, int], None] = lambda passes, tokens: None,
    ) -> list[PassResult]:
        """The results of `passes` ((response, instruction or None) each), in order; `done(passes, tokens)` after
        each request (a batch of prompts)."""
        chars = max_tokens * CHARS_PER_TOKEN
        out: list[PassResult] = []
        for lo in range(0, len(passes), batch_size):
            batch = passes[lo : lo + batch_size]
            texts = [_layout(y[:chars], None if x is None else x[:chars]) for y, x in batch]
            choices = self._ask([text for text, _ in texts])
            for (y, x), (text, y_start), choice in zip(batch, texts, choices, strict=True):
                cut = len(y) > chars or (x is not None and len(x) > chars)
                out.append(_result(choice, len(text), y_start, x is not None, cut))
            done(len(batch), sum(len(t) // CHARS_PER_TOKEN for t, _ in texts))
        return out

    def _ask(self, prompts: list[str]) -> list[dict[str, Any]]:
        body = {"model": self.model, "prompt": prompts, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}
        request = urllib.request.Request(
            self.url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:  # noqa: S310 - the user's own server
                choices = json.loads(reply.read())["choices"]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
            raise ConfigError(f"[scoring] api_base {self.url} gave no prompt log-probabilities: {err}") from None
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts) or any(not (c.get("logprobs") or {}).get("text_offset") for c in choices):
            raise ConfigError(f"[scoring] api_base {self.url} does not echo prompt log-probabilities (vLLM does)")
        return choices


def _layout(response: str, instruction: str | None) -> tuple[str, int]:
    """(the pass's text, where the response starts in it)."""
    if instruction is None:
        return response, 0
    return instruction + SEPARATOR + response, len(instruction) + len(SEPARATOR)


def _result(choice: dict[str, Any], prompt_chars: int, y_start: int, conditional: bool, cut: bool) -> PassResult:
    """A pass's figures from the log-probabilities of the prompt's tokens (the generated token left out)."""
    logprobs = choice["logprobs"]
    x_lp: list[float] = []
    y_lp: list[float] = []
    for offset, lp in zip(logprobs["text_offset"], logprobs["token_logprobs"], strict=False):
        if offset >= prompt_chars or lp is None:  # the generated token; the first token, which nothing predicts
            continue
        (y_lp if offset >= y_start else x_lp).append(lp)
    y_nll = -sum(y_lp) / len(y_lp) if y_lp else math.nan
    x_nll = (-sum(x_lp) / len(x_lp) if x_lp else math.nan) if conditional else None
    return PassResult(y_nll, len(y_lp), x_nll, len(x_lp) if conditional else 0, cut, None)
