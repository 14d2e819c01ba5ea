"""The scorer: pairs in, their statistics out (refed_dspy.scoring.stats), two forward passes a pair at most.

Each pair (instruction, response) needs its conditional pass and its response's pass alone; a pass already made for
the same model, token limit and texts is read from the cache (refed_dspy.scoring.cache), and the same pass asked twice
is made once. What is left runs in batches on the backend (a model in this process, or a server), after one line
saying how much there is and about how long it will take (at the speed this model last had here), with a progress bar
when asked. Each batch's results are cached as they come, so a scoring stopped half way keeps its half.

On a server (`ServerModel`): the passes of a server that returns prompt log-probabilities: vLLM's OpenAI-compatible
completions API (`echo` with `logprobs`, one token generated), so a large model scores without being loaded here.

A pass is the plain text "instruction\n\nresponse" (or the response alone): the server applies no chat template to
a completion. Each token's log-probability comes back with its offset in the text, which says whose token it is.
Texts are cut at `max_tokens` x 4 characters (the server tokenizes; about four characters a token). No key is sent:
the server is one of yours (a loopback or private address). No pooled states: coherence needs
[report] embedding_model.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from refed_dspy.config.judging import ScoringConfig
from refed_dspy.errors import ConfigError
from refed_dspy.scoring.cache import ScoreCache, pass_key
from refed_dspy.scoring.local import LocalEmbedder, LocalModel
from refed_dspy.scoring.stats import PairScore, PassResult, cosine, pair_score

POOLED = "the scorer's own last hidden states, mean-pooled"
CHARS_PER_TOKEN = 4  # for the estimate before the texts are tokenized


class Backend(Protocol):
    """What makes the passes: a model in this process (LocalModel) or a server (ServerModel)."""

    label: str  # the model as tables and files name it
    identity: str  # what decides its figures (the cache's key): model, weights' type
    device: str
    pooled: bool  # whether its passes carry mean-pooled hidden states (for coherence)

    def run(
        self, passes: list[tuple[str, str | None]], max_tokens: int, batch_size: int, done: Callable[[int, int], None]
    ) -> list[PassResult]:
        """The results of `passes` ((response, instruction or None) each), in order; `done(passes, tokens)` after
        each batch."""


def estimate_line(label: str, device: str, pairs: int, passes: int, tokens: int, speed: float | None) -> str:
    """The line printed before scoring starts: what is scored, with what, and about how long it takes."""
    what = f"scoring {pairs:,} pairs with {label} on {device}: {passes:,} forward passes, about {tokens:,} tokens"
    if not passes:
        return f"scoring {pairs:,} pairs with {label}: every pass is in the cache"
    if speed:
        return f"{what}; about {_duration(tokens / speed)} at {speed:,.0f} tokens/s, this model's last speed here"
    return f"{what}; its speed here is not known yet: the first batch will say"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class Scorer:
    """Pairs' statistics from a backend, through a cache (see the module docstring).

    Args:
        backend: what makes the passes.
        settings: [scoring]: the token limit and the batch size.
        cache: where passes are kept.
        embedder: a callable from texts to vectors for coherence (a sentence-embedding model); None: the backend's
            pooled states, when it gives them, else no coherence.
        embedder_label: what the embedder is called in tables.
    """

    def __init__(
        self,
        backend: Backend,
        settings: ScoringConfig,
        cache: ScoreCache,
        embedder: Callable[[list[str]], Sequence[Sequence[float]]] | None = None,
        embedder_label: str | None = None,
    ):
        self.backend, self.settings, self.cache = backend, settings, cache
        self.embedder = embedder
        self.label = backend.label
        self.coherence_from = embedder_label if embedder is not None else (POOLED if backend.pooled else None)

    def describe(self) -> dict[str, Any]:
        """The scoring model, the token limit and where coherence comes from, as files and tables name them."""
        return {"model": self.label, "max_tokens": self.settings.max_tokens, "coherence_from": self.coherence_from}

    def score(self, pairs: Sequence[tuple[str, str]], show_progress: bool = False) -> list[PairScore]:
        """The statistics of each (instruction, response) of `pairs`, in order."""
        limit = self.settings.max_tokens
        given = [pass_key(self.backend.identity, limit, "given", x, y) for x, y in pairs]
        alone = [pass_key(self.backend.identity, limit, "alone", y) for _, y in pairs]
        results = self.cache.get(sorted(set(given) | set(alone)))
        todo: dict[str, tuple[str, str | None]] = {}
        for (x, y), kg, ka in zip(pairs, given, alone, strict=True):
            if kg not in results:
                todo[kg] = (y, x)
            if ka not in results:
                todo[ka] = (y, None)
        self._make(todo, len(pairs), results, show_progress)
        coherence = self._coherence(pairs, [results[k] for k in given], [results[k] for k in alone])
        return [pair_score(results[kg], results[ka], c) for kg, ka, c in zip(given, alone, coherence, strict=True)]

    def _make(
        self, todo: dict[str, tuple[str, str | None]], pairs: int, results: dict[str, PassResult], show: bool
    ) -> None:
        limit = self.settings.max_tokens
        tokens = sum(
            min(len(y) // CHARS_PER_TOKEN, limit) + min(len(x or "") // CHARS_PER_TOKEN, limit)
            for y, x in todo.values()
        )
        speed_key = f"{self.backend.identity}|{self.backend.device}"
        known = self.cache.speed(speed_key)
        if show:
            line = estimate_line(self.label, self.backend.device, pairs, len(todo), tokens, known)
            print(line, file=sys.stderr, flush=True)
        if not todo:
            return
        keys = list(todo)
        bar = tqdm(total=len(keys), unit="pass", disable=not show, file=sys.stderr, leave=False)
        made = [0]

        def done(passes: int, made_now: int) -> None:
            first = not made[0]
            made[0] += made_now
            bar.update(passes)
            if first and show and not known and bar.n < len(keys):  # the speed, now that one batch is made
                rate = made[0] / max(time.perf_counter() - start, 1e-9)
                left = max(tokens - made[0], 0) / rate
                bar.write(f"  {rate:,.0f} tokens/s on the first batch: about {_duration(left)} left", file=sys.stderr)

        start = time.perf_counter()
        try:
            for chunk in _chunks(keys, self.settings.batch_size * 4):  # cached as they come
                got = self.backend.run([todo[k] for k in chunk], limit, self.settings.batch_size, done)
                fresh = dict(zip(chunk, got, strict=True))
                self.cache.put(fresh)
                results.update(fresh)
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
        if made[0] and elapsed > 0:
            self.cache.note_speed(speed_key, made[0] / elapsed)

    def _coherence(
        self, pairs: Sequence[tuple[str, str]], given: list[PassResult], alone: list[PassResult]
    ) -> list[float | None]:
        if self.embedder is None:
            return [cosine(g.pooled, a.pooled) for g, a in zip(given, alone, strict=True)]
        texts = sorted({t for pair in pairs for t in pair})
        vectors = dict(zip(texts, self.embedder(texts), strict=True))
        return [cosine(vectors[x], vectors[y]) for x, y in pairs]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@functools.lru_cache(maxsize=4)
def _backend(model: str, api_base: str | None, device: str | None, dtype: str) -> Backend:
    """One backend per model and place in a process: the report, the filter and `refed score` share a loaded model."""
    if api_base:
        return ServerModel(model, api_base)
    return LocalModel(model, device, dtype)


def open_scorer(settings: ScoringConfig, embedding_model: str | None = None) -> Scorer:
    """The scorer [scoring] describes (its model loaded once per process), with coherence from `embedding_model` when
    that is a local sentence-embedding model folder ([report] embedding_model), else from the scorer's own states.
    ConfigError, in one line, when the scorer extra is not installed or the model cannot be loaded."""
    backend = _backend(settings.model, settings.api_base, settings.device, settings.dtype)
    embedder, label = None, None
    if embedding_model and Path(embedding_model).expanduser().is_dir():
        embedder = LocalEmbedder(embedding_model, settings.device, ScoreCache(settings.cache))
        label = f"{embedder.label} (sentence embeddings)"
    return Scorer(backend, settings, ScoreCache(settings.cache), embedder, label)


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
