"""Benchmark contamination: does a text equal, or overlap in word n-grams with, an evaluation prompt?

Pure and deterministic (no file, no LM): `BenchmarkIndex` holds the prompts of one or more benchmarks and answers
`match(text)`. A text matches a prompt when

- both are the same after normalization (case, whitespace and punctuation ignored), or
- they share at least `share` of the word n-grams of the shorter of the two (n = `ngram`): a sample that rewrites
  a prompt with a few words changed, holds a whole prompt, or is a long stretch of one.

The index maps each n-gram's hash to the prompts holding it, so a text costs one dictionary look-up per n-gram
of its own (and the postings of the n-grams it shares), whatever the number of prompts. Words are runs of letters,
digits or underscores in any script (`str.casefold` first); a text of fewer than `ngram` words has no n-gram and
matches only exactly, as does text in a script written without spaces between words.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

NGRAM = 8  # the n-gram length open instruction-tuning recipes decontaminate with
SHARE = 0.5

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The words of `text`, case-folded, punctuation dropped."""
    return _WORD.findall(text.casefold())


def exact_key(text: str) -> str:
    """The text as compared for an exact match: its words, one space apart ('' for a text without words)."""
    return " ".join(words(text))


def ngram_hashes(ws: list[str], n: int) -> set[int]:
    """The hashes of the distinct word n-grams of `ws` (empty when it has fewer than `n` words). Hashes are of this
    process (Python salts string hashes): compare them only within it."""
    return {hash(tuple(ws[i : i + n])) for i in range(len(ws) - n + 1)}


@dataclass(frozen=True)
class Match:
    """The prompt a text matched: its benchmark, its text, how (`exact` after normalization, or `ngram` overlap),
    and the share of the shorter text's n-grams the two have in common (1.0 for an exact match)."""

    benchmark: str
    prompt: str
    how: Literal["exact", "ngram"]
    overlap: float


class BenchmarkIndex:
    """The prompts of some benchmarks, indexed for `match`.

    Args:
        benchmarks: benchmark name -> its prompts (a prompt given twice is indexed once).
        ngram: words per n-gram.
        share: the least share of the shorter text's n-grams two texts must have in common to match (0 < share <= 1).
    """

    def __init__(self, benchmarks: Mapping[str, Iterable[str]], ngram: int = NGRAM, share: float = SHARE):
        if ngram < 1:
            raise ValueError(f"ngram must be at least 1, got {ngram}")
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.ngram, self.share = ngram, share
        self._prompts: list[tuple[str, str]] = []  # (benchmark, prompt) by prompt id
        self._sizes = array("I")  # distinct n-grams of each prompt
        self._exact: dict[str, int] = {}
        self._postings: dict[int, array] = {}
        self.counts: dict[str, int] = {}  # distinct prompts per benchmark, in the order given
        for name, prompts in benchmarks.items():
            seen: set[str] = set()
            for prompt in prompts:
                key = exact_key(prompt)
                if not key or key in seen:
                    continue
                seen.add(key)
                self._add(name, prompt, key)
            self.counts[name] = len(seen)

    def _add(self, name: str, prompt: str, key: str) -> None:
        pid = len(self._prompts)
        self._prompts.append((name, prompt))
        self._exact.setdefault(key, pid)
        grams = ngram_hashes(key.split(" "), self.ngram)
        self._sizes.append(len(grams))
        for gram in grams:
            postings = self._postings.get(gram)
            if postings is None:
                postings = self._postings[gram] = array("I")
            postings.append(pid)

    def __len__(self) -> int:
        return len(self._prompts)

    def match(self, text: str) -> Match | None:
        """The prompt `text` matches (exactly first; else the prompt of the highest n-gram overlap, the first given on
        a tie), or None."""
        key = exact_key(text)
        if not key:
            return None
        pid = self._exact.get(key)
        if pid is not None:
            return Match(*self._prompts[pid], "exact", 1.0)
        grams = ngram_hashes(key.split(" "), self.ngram)
        if not grams:
            return None
        hits: Counter = Counter()
        for gram in grams:
            postings = self._postings.get(gram)
            if postings is not None:
                hits.update(postings)
        best, best_overlap = None, 0.0
        for pid, shared in hits.items():
            overlap = shared / min(len(grams), self._sizes[pid])
            if overlap > best_overlap or (overlap == best_overlap and best is not None and pid < best):
                best, best_overlap = pid, overlap
        if best is None or best_overlap < self.share - 1e-9:  # the slack: 7/10 must reach a share of 0.7
            return None
        return Match(*self._prompts[best], "ngram", round(best_overlap, 4))
