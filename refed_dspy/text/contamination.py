"""Benchmark contamination: does a text equal, overlap in word n-grams with, or hold in order the words of, an
evaluation prompt, as the two render?

Pure and deterministic (no file, no LM): `BenchmarkIndex` holds the prompts of one or more benchmarks and answers
`match(text)`. Both sides are first normalized as they render (`fold`): compatibility forms folded (NFKC: full-width
letters, ligatures), format characters dropped (zero-width spaces and joiners, soft hyphens, tag characters),
combining marks dropped (an accent added to a letter), and each letter that Unicode's confusables data (UTS #39,
through the confusable-homoglyphs package) says looks like a Latin letter or a digit read as that one (Cyrillic "а",
Greek "ο"), then case folded. A text then matches a prompt when

- both are the same (their words, case, whitespace and punctuation ignored), or
- they share at least `share` of the word n-grams of the shorter of the two (n = `ngram`): a sample that rewrites
  a long prompt with a few words changed, holds a whole prompt, or is a long stretch of one; or
- the shorter of the two, of at least ORDER_WORDS words, appears in the other in order, in runs of two words or
  more, all but one word in ten of it, with at most one word in four inserted (`order`): a prompt padded with a
  filler word every few words, or one word changed in an 11-word prompt, which breaks every 8-gram it has. An
  unrelated text in the same register ("Explain how ...") shares a run or two, never nearly all its words in order.

The index maps each n-gram's hash to the prompts holding it, and each word trigram to the prompts holding it (the
candidates of the order check, verified word by word), so a text costs a few dictionary look-ups per word of its
own, whatever the number of prompts. Words are runs of letters, digits or underscores in any script; a text of fewer
than `ngram` words has no n-gram, and one in a script written without spaces between words matches only exactly.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

from confusable_homoglyphs.utils import load as load_confusables

NGRAM = 8  # the n-gram length open instruction-tuning recipes decontaminate with
SHARE = 0.5
ORDER_WORDS = 8  # the fewest words a text needs for the order check (fewer: a short phrase is common, not a copy)
RETRIEVE = 3  # the order check's candidates share word trigrams with the text

_WORD = re.compile(r"\w+")
_DROPPED = ("Mn", "Me", "Cf")  # combining marks, enclosing marks, format characters: nothing of their own shows


@functools.cache
def _confusables() -> tuple[dict[str, str], dict[int, str]]:
    """From Unicode's confusables data, single characters only: (each letter or digit outside ASCII that looks like an
    ASCII letter or digit -> that one, e.g. Cyrillic "а" -> "a"; the translate table that reads the ASCII letters and
    digits confusable with one another, case folded, as one: "i", "l" and "1" as "1", "o" and "0" as "0", so that
    Cyrillic "І", which Unicode reads as "l", matches the "I" it imitates). Built once."""
    data = load_confusables("confusables.json")
    look_alikes: dict[str, str] = {}
    groups: dict[str, set[str]] = {}
    for char, glyphs in data.items():
        if len(char) != 1 or not char.isalnum():
            continue
        for glyph in (g["c"] for g in glyphs):
            if len(glyph) == 1 and glyph.isascii() and glyph.isalnum():
                if not char.isascii():
                    look_alikes[char] = glyph  # the data names one ASCII look-alike at most per character
                else:  # two ASCII characters confusable with each other: "I" and "l", "l" and "1", "0" and "O"
                    group = groups.get(char.casefold(), {char.casefold()}) | groups.get(
                        glyph.casefold(), {glyph.casefold()}
                    )
                    for member in group:
                        groups[member] = group
    ascii_table = {ord(c): min(group) for c, group in groups.items() if c != min(group)}
    return look_alikes, ascii_table


class _Fold(dict):
    """The character table `fold` translates with, filled as characters are met (`str.translate` asks it)."""

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        dropped = unicodedata.category(char) in _DROPPED
        value = None if dropped else _confusables()[0].get(char, char).casefold()
        self[code] = value
        return value


_FOLD = _Fold()


def fold(text: str) -> str:
    """`text` as it renders, for comparison: NFKC-folded, format characters and combining marks dropped, look-alike
    letters read as the Latin letter or digit they imitate, case folded. Two texts that show the same read the same;
    the result is for matching, not for reading ("Hello World" -> "he110 w0r1d")."""
    ascii_table = _confusables()[1]
    if text.isascii():
        return text.casefold().translate(ascii_table)
    decomposed = unicodedata.normalize("NFKD", text)  # NFKC's folding, with the marks apart so they can go
    return unicodedata.normalize("NFC", decomposed.translate(_FOLD)).translate(ascii_table)


def words(text: str) -> list[str]:
    """The words of `text` as it renders (see `fold`), punctuation dropped."""
    return _WORD.findall(fold(text))


def exact_key(text: str) -> str:
    """The text as compared for an exact match: its words, one space apart ('' for a text without words)."""
    return " ".join(words(text))


def ngram_hashes(ws: list[str], n: int) -> set[int]:
    """The hashes of the distinct word n-grams of `ws` (empty when it has fewer than `n` words). Hashes are of this
    process (Python salts string hashes): compare them only within it."""
    return {hash(tuple(ws[i : i + n])) for i in range(len(ws) - n + 1)}


def in_order(short: list[str], long: list[str]) -> int | None:
    """How many words of `short` appear in `long` in order, in runs of two or more, when that is all but one word in
    ten of `short` with at most one word in four (plus one per word missing) inserted between the first run and the
    last; None otherwise. `short` has ORDER_WORDS words or more."""
    blocks = [b for b in SequenceMatcher(None, short, long, autojunk=False).get_matching_blocks() if b.size >= 2]
    if not blocks:
        return None
    matched = sum(b.size for b in blocks)
    missing = len(short) - matched
    inserted = (blocks[-1].b + blocks[-1].size - blocks[0].b) - matched
    if missing <= len(short) // 10 and inserted <= len(short) // 4 + missing:
        return matched
    return None


@dataclass(frozen=True)
class Match:
    """The prompt a text matched: its benchmark, its text, how (`exact` after normalization, `ngram` overlap, or
    `order`: its words in order), and the share the two have in common (1.0 for an exact match; of the shorter text's
    n-grams for `ngram`, of its words for `order`)."""

    benchmark: str
    prompt: str
    how: Literal["exact", "ngram", "order"]
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
        self._words: list[array] = []  # each prompt's words, as word ids
        self._vocab: dict[str, int] = {}
        self._exact: dict[str, int] = {}
        self._postings: dict[int, array] = {}  # n-gram hash -> prompt ids
        self._trigrams: dict[
            int, array
        ] = {}  # word trigram hash -> prompt ids (of prompts of ORDER_WORDS words or more)
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
        ws = key.split(" ")
        self._words.append(array("I", (self._vocab.setdefault(w, len(self._vocab)) for w in ws)))
        grams = ngram_hashes(ws, self.ngram)
        self._sizes.append(len(grams))
        _post(self._postings, grams, pid)
        if len(ws) >= ORDER_WORDS:
            _post(self._trigrams, ngram_hashes(ws, RETRIEVE), pid)

    def __len__(self) -> int:
        return len(self._prompts)

    def match(self, text: str) -> Match | None:
        """The prompt `text` matches (exactly first; else the prompt of the highest n-gram overlap, the first given on
        a tie; else the first prompt whose words it holds in order, or that it holds the words of), or None."""
        ws = words(text)
        if not ws:
            return None
        pid = self._exact.get(" ".join(ws))
        if pid is not None:
            return Match(*self._prompts[pid], "exact", 1.0)
        return self._overlap(ws) or self._in_order(ws)

    def _overlap(self, ws: list[str]) -> Match | None:
        grams = ngram_hashes(ws, self.ngram)
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

    def _in_order(self, ws: list[str]) -> Match | None:
        if len(ws) < ORDER_WORDS:
            return None
        grams = ngram_hashes(ws, RETRIEVE)
        hits: Counter = Counter()
        for gram in grams:
            postings = self._trigrams.get(gram)
            if postings is not None:
                hits.update(postings)
        ids = None
        # a match in order leaves at least half the shorter text's trigrams whole (runs of 3+ words, at most one word
        # in four inserted, one in ten missing): a prompt sharing fewer needs no look word by word
        floor = _least_shared(ORDER_WORDS)  # the fewest any candidate needs: most prompts hit once are passed by
        for pid in sorted(p for p, n in hits.items() if n >= floor):
            if hits[pid] < _least_shared(min(len(ws), len(self._words[pid]))):
                continue
            if ids is None:
                ids = [self._vocab.get(w, -1) for w in ws]
            theirs = list(self._words[pid])
            short, long = (theirs, ids) if len(theirs) <= len(ids) else (ids, theirs)
            matched = in_order(short, long)
            if matched is not None:
                return Match(*self._prompts[pid], "order", round(matched / len(short), 4))
        return None


def _least_shared(size: int) -> int:
    """The fewest word trigrams a text of `size` words shares with one that holds it in order (see `in_order`)."""
    return max(1, size // 2 - 2 - 2 * (size // 10))


def _post(index: dict[int, array], grams: set[int], pid: int) -> None:
    for gram in grams:
        postings = index.get(gram)
        if postings is None:
            postings = index[gram] = array("I")
        postings.append(pid)
