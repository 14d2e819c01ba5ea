"""The scorer: pairs in, their statistics out (refed_dspy.scoring.stats), two forward passes a pair at most.

Each pair (instruction, response) needs its conditional pass and its response's pass alone; a pass already made for
the same model, token limit and texts is read from the cache (refed_dspy.scoring.cache), and the same pass asked twice
is made once. What is left runs in batches on the backend (a model in this process, or a server), after one line
saying how much there is and about how long it will take (at the speed this model last had here), with a progress line
when asked. A pair's passes go in one batch or in batches that follow each other, and a pair's statistics are given
as soon as its passes are made (`Scorer.score_parts`), so `refed score` appends each row as its batch finishes.
Each batch's results are cached as they come, so a scoring stopped half way keeps its half. The time left is measured
on the batches made, the model's loading left out (refed_dspy.scoring.pace).

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
from typing import Any, Protocol, TypeVar

from refed_dspy.config.judging import ScoringConfig
from refed_dspy.engine.progress import Heartbeat
from refed_dspy.errors import ConfigError
from refed_dspy.scoring.cache import ScoreCache, pass_key
from refed_dspy.scoring.local import LocalEmbedder, LocalModel
from refed_dspy.scoring.pace import Pace, duration
from refed_dspy.scoring.stats import PairScore, PassResult, cosine, pair_score

POOLED = "the scorer's own last hidden states, mean-pooled"
CHARS_PER_TOKEN = 4  # for the estimate before the texts are tokenized
TEMPLATE_TOKENS = 8  # what a chat template adds to a pass, about
WINDOW = 4  # batches whose pairs are sorted by length together
# the length at which a pass's attention costs as much as the rest of it, per token: on a 2-core CPU, SmolLM2-135M
# makes a batch of 8 passes of 100 tokens in 1.2-1.5 s, of 550 tokens in 10-13 s (not 5.5 times as long but 8 to 9)
ATTENTION_TOKENS = 800
T = TypeVar("T")


class Backend(Protocol):
    """What makes the passes: a model in this process (LocalModel) or a server (ServerModel)."""

    label: str  # the model as tables and files name it
    identity: str  # what decides its figures (the cache's key): model, weights' type
    device: str
    pooled: bool  # whether its passes carry mean-pooled hidden states (for coherence)

    def load(self) -> None:
        """Make the backend ready to make passes (a model loaded); once, before the first batch is timed."""

    def length(self, passage: tuple[str, str | None], max_tokens: int) -> int:
        """The tokens of a pass ((response, instruction or None)) as it will be made, once loaded."""

    def run(
        self,
        passes: list[tuple[str, str | None]],
        max_tokens: int,
        batch_size: int,
        done: Callable[[int, int], None] = ...,
    ) -> list[PassResult]:
        """The results of `passes` ((response, instruction or None) each), in order; `done(passes, tokens)` after
        each batch."""


def estimate_line(label: str, device: str, pairs: int, passes: int, tokens: int, seconds: float | None) -> str:
    """The line printed before scoring starts: what is scored, with what, and about how long it takes (`seconds`, at
    the speed this model last had here; None when it has not run here yet)."""
    what = f"scoring {pairs:,} pairs with {label} on {device}: {passes:,} forward passes, about {tokens:,} tokens"
    if not passes:
        return f"scoring {pairs:,} pairs with {label}: every pass is in the cache"
    if seconds is not None:
        return f"{what}; about {duration(seconds)} at this model's last speed here, its loading apart"
    return f"{what}; its speed here is not known yet: the first batch will say"


def batch_work(lengths: Sequence[int]) -> float:
    """What a batch of passes of these `lengths` (tokens) costs the model, in tokens: padded to the longest, with
    attention's share growing with the length (`ATTENTION_TOKENS`)."""
    longest = max(lengths, default=0)
    return len(lengths) * (longest + longest * longest / ATTENTION_TOKENS)


def pass_tokens(passage: tuple[str, str | None], limit: int) -> int:
    """A pass's tokens, estimated from its texts' characters before they are tokenized (each cut at `limit`), with
    the few a chat template adds."""
    response, instruction = passage
    texts = min(len(response) // CHARS_PER_TOKEN, limit) + min(len(instruction or "") // CHARS_PER_TOKEN, limit)
    return texts + TEMPLATE_TOKENS


class Scorer:
    """Pairs' statistics from a backend, through a cache (see the module docstring).

    Args:
        backend: what makes the passes.
        settings: [scoring]: the token limit and the batch size.
        cache: where passes are kept.
        embedder: a callable from texts to vectors for coherence (a sentence-embedding model); None: the backend's
            pooled states, when it gives them, else no coherence.
        embedder_label: what the embedder is called in tables.
        clock: seconds, monotonic, for the time left (a test's own clock).
    """

    def __init__(
        self,
        backend: Backend,
        settings: ScoringConfig,
        cache: ScoreCache,
        embedder: Callable[[list[str]], Sequence[Sequence[float]]] | None = None,
        embedder_label: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.backend, self.settings, self.cache = backend, settings, cache
        self.embedder = embedder
        self.label = backend.label
        self.coherence_from = embedder_label if embedder is not None else (POOLED if backend.pooled else None)
        self.clock = clock

    def describe(self) -> dict[str, Any]:
        """The scoring model, the token limit and where coherence comes from, as files and tables name them.

        Returns:
            model, max_tokens and coherence_from (None when there is no coherence) by name.
        """
        return {"model": self.label, "max_tokens": self.settings.max_tokens, "coherence_from": self.coherence_from}

    def score(self, pairs: Sequence[tuple[str, str]], show_progress: bool = False) -> list[PairScore]:
        """The statistics of each (instruction, response) of `pairs`, in order.

        Args:
            pairs: (instruction, response) pairs.
            show_progress: print the estimate and a progress line on stderr.

        Returns:
            One PairScore per pair, in the order of `pairs`.
        """
        out: list[PairScore | None] = [None] * len(pairs)
        for i, (score,) in self.score_parts([[pair] for pair in pairs], show_progress):
            out[i] = score
        return out  # type: ignore[return-value] - every part is given once

    def score_parts(
        self, parts: Sequence[Sequence[tuple[str, str]]], show_progress: bool = False
    ) -> Iterator[tuple[int, list[PairScore]]]:
        """Each part of `parts` (pairs kept together: a row of `refed score`, a final response and its draft) as (its
        index, its pairs' statistics), once its passes are made: first the parts the cache holds whole, then the
        others as the batches that finish them are made, so a caller that keeps each part as it comes loses at most
        the batch in progress to a stop.

        Args:
            parts: groups of (instruction, response) pairs, each group given back together.
            show_progress: print the estimate and a progress line on stderr.

        Yields:
            (the part's index in `parts`, one PairScore per pair of the part, in its order), each part once.
        """
        limit, identity = self.settings.max_tokens, self.backend.identity
        keyed = [
            [(pass_key(identity, limit, "given", x, y), pass_key(identity, limit, "alone", y)) for x, y in part]
            for part in parts
        ]
        results = self.cache.get(sorted({k for part in keyed for pair in part for k in pair}))
        todo: dict[str, tuple[str, str | None]] = {}
        groups: list[list[str]] = []  # the passes each part adds to `todo`, kept together
        for part, keys in zip(parts, keyed, strict=True):
            group = []
            for (x, y), (kg, ka) in zip(part, keys, strict=True):
                for key, passage in ((kg, (y, x)), (ka, (y, None))):
                    if key not in results and key not in todo:
                        todo[key] = passage
                        group.append(key)
            if group:
                groups.append(group)
        needs: dict[str, list[int]] = {}
        missing = [0] * len(parts)
        for i, keys in enumerate(keyed):
            for key in {k for pair in keys for k in pair} - results.keys():
                needs.setdefault(key, []).append(i)
                missing[i] += 1
        ready = [i for i, n in enumerate(missing) if not n]
        asked = (sum(len(part) for part in parts), sum(kg in todo or ka in todo for keys in keyed for kg, ka in keys))
        for made in self._make(todo, groups, asked, results, show_progress):
            for key in made:
                for i in needs.get(key, ()):
                    missing[i] -= 1
                    if not missing[i]:
                        ready.append(i)
            yield from self._finished(sorted(ready), parts, keyed, results)
            ready = []

    def _finished(
        self,
        ready: list[int],
        parts: Sequence[Sequence[tuple[str, str]]],
        keyed: list[list[tuple[str, str]]],
        results: dict[str, PassResult],
    ) -> Iterator[tuple[int, list[PairScore]]]:
        """The statistics of the parts `ready` (their passes made), part by part."""
        pairs = [pair for i in ready for pair in parts[i]]
        keys = [pair for i in ready for pair in keyed[i]]
        given, alone = [results[kg] for kg, _ in keys], [results[ka] for _, ka in keys]
        scores = iter(
            pair_score(g, a, c) for g, a, c in zip(given, alone, self._coherence(pairs, given, alone), strict=True)
        )
        for i in ready:
            yield i, [next(scores) for _ in parts[i]]

    def _batches(self, todo: dict[str, tuple[str, str | None]], groups: list[list[str]]) -> list[list[str]]:
        """The passes to make, batch by batch: in the parts' order, a part's passes together (`groups`), the parts of
        a window of about `WINDOW` batches sorted by length (like lengths together: little padding). So a part's
        passes are made in one batch or in batches that follow each other, and parts are ready as the batches go."""
        size, limit = self.settings.batch_size, self.settings.max_tokens
        ordered: list[str] = []
        for window in _chunks(groups, max(1, size * WINDOW // 2)):
            window = sorted(window, key=lambda group: max(pass_tokens(todo[k], limit) for k in group))
            ordered += [k for group in window for k in group]
        return _chunks(ordered, size)

    def _make(
        self,
        todo: dict[str, tuple[str, str | None]],
        groups: list[list[str]],
        asked: tuple[int, int],
        results: dict[str, PassResult],
        show: bool,
    ) -> Iterator[list[str]]:
        """Make the passes of `todo` into `results` (and the cache), yielding the keys of each batch as it is made
        (first none: what the cache held is ready before anything is made). `asked`: the pairs asked, and those of
        them with a pass to make."""
        limit = self.settings.max_tokens
        batches = self._batches(todo, groups)
        guessed = [batch_work([pass_tokens(todo[k], limit) for k in b]) for b in batches]  # from characters
        speed_key = f"{self.backend.identity}|{self.backend.device}"
        known = self.cache.speed(speed_key)  # work guessed from characters a second, loading apart
        if show:
            tokens = sum(pass_tokens(p, limit) for p in todo.values())
            seconds = sum(guessed) / known if known else None
            line = estimate_line(self.label, self.backend.device, asked[0], len(todo), tokens, seconds)
            print(line, file=sys.stderr, flush=True)
        yield []
        if not todo:
            return
        made = [0]  # passes made so far
        pace: Pace | None = None

        def status() -> str:
            said = pace.status() if pace is not None else "loading the model"
            return f"{made[0]}/{len(todo)} passes, {said or 'the first batch under way'}"

        beat = Heartbeat("score", status).start() if show else None
        try:
            loading = self.clock()
            self.backend.load()
            work = [batch_work([self.backend.length(todo[k], limit) for k in b]) for b in batches]  # tokenized
            loaded = self.clock() - loading
            pace = Pace(sum(work), asked[1], self.clock)
            pace.start()
            for batch, cost in zip(batches, work, strict=True):
                fresh = dict(zip(batch, self.backend.run([todo[k] for k in batch], limit, len(batch)), strict=True))
                self.cache.put(fresh)  # kept as they come: a stop loses the batch in progress at most
                results.update(fresh)
                pace.add(cost)
                made[0] += len(batch)
                if beat is not None and pace.batches == 1 and len(batches) > 1:
                    beat.say(f"{beat.label}: first batch made{_loaded(loaded)}: {pace.status()}")
                elif beat is not None:
                    beat.draw()
                yield batch
        finally:
            if beat is not None:
                beat.stop()
        if rate := pace.rate():
            self.cache.note_speed(speed_key, rate * sum(guessed) / sum(work))

    def _coherence(
        self, pairs: Sequence[tuple[str, str]], given: list[PassResult], alone: list[PassResult]
    ) -> list[float | None]:
        if self.embedder is None:
            return [cosine(g.pooled, a.pooled) for g, a in zip(given, alone, strict=True)]
        texts = sorted({t for pair in pairs for t in pair})
        vectors = dict(zip(texts, self.embedder(texts), strict=True))
        return [cosine(vectors[x], vectors[y]) for x, y in pairs]


def _loaded(seconds: float) -> str:
    """What the model's loading took, said apart from the batches' time ('' when it took no time to speak of)."""
    return f" (the model's loading, {seconds:.0f} s, left out of the rate)" if seconds >= 1 else ""


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@functools.lru_cache(maxsize=4)
def _backend(model: str, api_base: str | None, device: str | None, dtype: str) -> Backend:
    """One backend per model and place in a process: the report, the filter and `refed score` share a loaded model."""
    if api_base:
        return ServerModel(model, api_base)
    return LocalModel(model, device, dtype)


def open_scorer(settings: ScoringConfig, embedding_model: str | None = None) -> Scorer:
    """The scorer [scoring] describes (its model loaded once per process), with coherence from `embedding_model` when
    that is a local sentence-embedding model folder ([report] embedding_model), else from the scorer's own states.
    ConfigError, in one line, when the scorer extra is not installed or the model cannot be loaded.

    Args:
        settings: the [scoring] section: the model (or server), device, dtype, token limit, batch size and cache.
        embedding_model: [report] embedding_model; used for coherence only when it names a local folder.

    Returns:
        The scorer, its passes cached in the [scoring] cache.

    Raises:
        ConfigError: the scorer extra is not installed, or the embedding model or the cache cannot be opened.
    """
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

    def load(self) -> None:
        """Nothing to load: the server holds the model."""

    def length(self, passage: tuple[str, str | None], max_tokens: int) -> int:
        """A pass's tokens, estimated from its characters (the server tokenizes)."""
        return pass_tokens(passage, max_tokens)

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
