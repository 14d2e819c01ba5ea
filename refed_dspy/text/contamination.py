"""Benchmark contamination: does a text equal, overlap in word n-grams with, hold in order the words of, or hold in
pairs of words in any order the words of, an evaluation prompt, as a reader sees the two?

Pure and deterministic (no file, no LM): `BenchmarkIndex` holds the prompts of one or more benchmarks and answers
`match(text)`. Both sides are first read as a reader sees them (`fold`, one pass):

- rendered as a browser shows them (`render`): HTML comments, tags and declarations dropped (a block's tag, p or
  br, ends a word; an inline one, span or b, does not: a comment inside a word, or a bold tag around part of it,
  leaves one word), character references decoded (`&#101;`, `&eacute;`, `&amp;`, `&nbsp;`), and `@ $ ! |` between two letters
  read as the letter they stand for (`expl@in`);
- compatibility forms folded (NFKC: full-width letters, ligatures, and every space separator, the non-breaking one
  included, made a space), format characters dropped (zero-width spaces and joiners, soft hyphens, tag characters),
  combining marks dropped (an accent added to a letter), and each letter that Unicode's confusables data (UTS #39,
  through the confusable-homoglyphs package) says looks like a Latin letter or a digit read as that one (Cyrillic
  "а", Greek "ο");
- words joined by case changes set apart when a run of letters has three parts or more (`WriteAPoemAbout`; two, as
  in `JavaScript` or `iPhone`, are a name, kept whole so that it reads as its lower-case spelling does), and an
  underscore read as a space (`write_a_poem`);
- case folded, and the ASCII letters and digits that stand for one another read as one: Unicode's "l", "i" and "1",
  "o" and "0", and leetspeak's digits for letters ("3" "e", "4" "a", "5" "s", "7" "t", "8" "b", "9" "g", "2" "z"), in
  numbers too, so that `3xpl41n` reads as `explain` while two different numbers still differ ("6" stays a digit: it
  would be read as "b" or "g", which "8" and "9" stand for).

A text then matches a prompt when

- both are the same (their words, case, whitespace and punctuation ignored), or
- they share at least `share` of the word n-grams of the shorter of the two (n = `ngram`): a sample that rewrites
  a long prompt with a few words changed, holds a whole prompt, or is a long stretch of one; or
- the shorter of the two, of at least ORDER_WORDS words, appears in the other in order, in runs of two words or
  more, all but one word in ten of it, with at most one word in four inserted (`order`): a prompt padded with a
  filler word every few words, or one word changed in an 11-word prompt, which breaks every 8-gram it has; or
- the shorter of the two, of at least ORDER_WORDS words, has all its words but one in ten in pairs of two words
  running that the other holds running too, each of the other's pairs taken once, in any order, the other at most
  LONGER times as long (`pairs`): a prompt with its halves swapped or its sentences reordered, or with a filler word
  after every third word or every other one (one word in four, or in three, inserted: more than the order check
  allows).
  It spares no more words than the order check does: two or three words changed (synonyms, or another topic in the
  same sentence) leave as many words unpaired, and a text that changes the topic of a templated prompt ("Write a
  short piece about how jazz ..." -> "... how hip hop ...") is another question.

An unrelated text in the same register ("Explain how ...") shares a run or two, never nearly all its words in order
or in pairs (the tests hold 200 such instructions beside 20 benchmark prompts, and 1,000 beside 200).

The index maps each n-gram's hash to the prompts holding it, and each word trigram and word pair to the prompts
holding it (the candidates of the order and pair checks, verified word by word), so a text costs a few dictionary
look-ups per word of its own, whatever the number of prompts: the pair check looks up only the rarest of the text's
pairs, as many as a prompt it matches must hold one of. Words are runs of letters or digits in any script; a text of
fewer than `ngram` words has no n-gram, and one in a script written without spaces between words matches only exactly.
"""

from __future__ import annotations

import functools
import html
import math
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import chain, pairwise
from typing import Literal

from confusable_homoglyphs.utils import load as load_confusables

NGRAM = 8  # the n-gram length open instruction-tuning recipes decontaminate with
SHARE = 0.5
ORDER_WORDS = 8  # the fewest words a text needs for the order and pair checks (fewer: a short phrase is common)
RETRIEVE = 3  # the order check's candidates share word trigrams with the text
LONGER = 1.5  # the pair check compares texts at most this many times as long as each other
SPARE = 10  # the order and pair checks spare one word in this many of the shorter text (none of fewer)

_WORD = re.compile(r"\w+")  # `fold` has made underscores spaces: letters and digits
_DROPPED = ("Mn", "Me", "Cf")  # combining marks, enclosing marks, format characters: nothing of their own shows
# what a browser shows of markup: a comment (an unclosed one hides the rest), a tag, a declaration or processing
# instruction: nothing of their own; a tag of a block (a paragraph, a line break, a cell) ends the word before it
_MARKUP = re.compile(r"<!--.*?(?:-->|\Z)|<(?:/?([A-Za-z][A-Za-z0-9:-]*)(?:[\s/][^<>]*)?|[!?][^<>]*)>", re.S)
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hr",
    "html", "li", "main", "nav", "ol", "option", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot",
    "th", "thead", "title", "tr", "ul",
})  # fmt: skip
# between two letters, a symbol is a letter ("expl@in"); each pattern starts with its character set, so that the
# regex engine skips to the candidates (a look-behind first would be tried at every character)
_SYMBOL = re.compile(r"[@$!|](?<=[^\W\d_][@$!|])(?=[^\W\d_])")
_SYMBOLS = str.maketrans("@$!|", "asil")
_LEET = {"2": "z", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"}  # beyond Unicode's 0/o and 1/l/i
_CAMEL = re.compile(r"[A-Z](?:(?<=[a-z0-9][A-Z])|(?=[A-Z][a-z]))")  # a case change inside a word
_TOKEN = re.compile(r"[A-Za-z0-9]+")
_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_DIGITS = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")


@functools.cache
def _confusables() -> tuple[dict[str, str], dict[int, str]]:
    """From Unicode's confusables data, single characters only: (each letter or digit outside ASCII that looks like an
    ASCII letter or digit -> that one, e.g. Cyrillic "а" -> "a"; the translate table that reads the ASCII letters and
    digits confusable with one another, case folded, as one: "i", "l" and "1" as "1", "o" and "0" as "0", so that
    Cyrillic "І", which Unicode reads as "l", matches the "I" it imitates; and the digits leetspeak writes for
    letters, which Unicode does not call confusable, as those letters: "3" and "e", "4" and "a", ...). Built once."""
    data = load_confusables("confusables.json")
    look_alikes: dict[str, str] = {}
    pairs = list(_LEET.items())
    for char, glyphs in data.items():
        if len(char) != 1 or not char.isalnum():
            continue
        for glyph in (g["c"] for g in glyphs):
            if len(glyph) == 1 and glyph.isascii() and glyph.isalnum():
                if not char.isascii():
                    look_alikes[char] = glyph  # the data names one ASCII look-alike at most per character
                else:  # two ASCII characters confusable with each other: "I" and "l", "l" and "1", "0" and "O"
                    pairs.append((char, glyph))
    groups: dict[str, set[str]] = {}
    for char, glyph in pairs:
        group = groups.get(char.casefold(), {char.casefold()}) | groups.get(glyph.casefold(), {glyph.casefold()})
        for member in group:
            groups[member] = group
    ascii_table = {ord(c): min(group) for c, group in groups.items() if c != min(group)}
    ascii_table[ord("_")] = " "  # an underscore joins words without showing a space (write_a_poem): it is one
    return look_alikes, ascii_table


class _Fold(dict):
    """The character table `fold` translates with, filled as characters are met (`str.translate` asks it)."""

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        dropped = unicodedata.category(char) in _DROPPED
        value = None if dropped else _confusables()[0].get(char, char)
        self[code] = value
        return value


_FOLD = _Fold()


def render(text: str) -> str:
    """What a reader sees of `text` in a browser: HTML comments, tags and declarations dropped (a tag of a block, such
    as p or br, ends the word before it; an inline one, such as span, does not), character references
    decoded (`&#101;`, `&eacute;`, `&nbsp;`), and `@ $ ! |` between two letters read as the letter they stand for
    (`expl@in`)."""
    if "<" in text:
        text = _MARKUP.sub(_markup, text)
    if "&" in text:
        text = html.unescape(text)
    return _SYMBOL.sub(lambda m: m[0].translate(_SYMBOLS), text)


def _markup(found: re.Match) -> str:
    return " " if (found[1] or "").lower() in _BLOCKS else ""


def unjoin(text: str) -> str:
    """`text` with the words of a run of letters joined by case changes set apart, when there are three or more
    (`WriteAPoemAbout` -> `Write A Poem About`, digits apart from letters within it); two parts are a name
    (`JavaScript`, `iPhone`), kept whole so that it reads as its lower-case spelling does."""
    if not _CAMEL.search(text):
        return text
    return _TOKEN.sub(_unjoin, text)


def _unjoin(found: re.Match) -> str:
    token = found[0]
    parts = _HUMP.split(token)
    if len(parts) < 3:
        return token
    return _DIGITS.sub(" ", " ".join(parts))


def fold(text: str) -> str:
    """`text` as a reader sees it, for comparison: rendered (`render`: markup dropped, character references decoded),
    NFKC-folded, format characters and combining marks dropped, look-alike letters read as the Latin letter or digit
    they imitate, words joined by case changes set apart (`unjoin`), case folded, and the ASCII letters and digits
    that stand for one another read as one (Unicode's "l", "i", "1" and "o", "0"; leetspeak's "e", "3", "a", "4", ...).
    Two texts that show the same read the same; the result is for matching, not for reading ("Hello World" ->
    "h3110 w0r1d")."""
    ascii_table = _confusables()[1]
    text = render(text)
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)  # NFKC's folding, with the marks apart so they can go
        text = unicodedata.normalize("NFC", decomposed.translate(_FOLD))
    return unjoin(text).casefold().translate(ascii_table)


def words(text: str) -> list[str]:
    """The words of `text` as it renders (see `fold`): runs of letters and digits; punctuation, spaces of any kind and
    underscores apart them (`write_a_poem`)."""
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
    if missing <= len(short) // SPARE and inserted <= len(short) // 4 + missing:
        return matched
    return None


def in_pairs(short: list[str], long: list[str]) -> int | None:
    """How many words of `short` lie in a pair of words running in it that `long` holds running too (each pair of
    `long` taken once, in any order), when that is all but one word in SPARE of `short` and `long` is at most LONGER
    times as long; None otherwise. `short` has ORDER_WORDS words or more."""
    if len(long) > len(short) * LONGER:
        return None
    held = Counter(pairwise(long))
    paired = [False] * len(short)
    for i, pair in enumerate(pairwise(short)):
        if held[pair] > 0:
            held[pair] -= 1
            paired[i] = paired[i + 1] = True
    matched = sum(paired)
    return matched if len(short) - matched <= len(short) // SPARE else None


@dataclass(frozen=True)
class Match:
    """The prompt a text matched: its benchmark, its text, how (`exact` after normalization, `ngram` overlap, `order`:
    its words in order, or `pairs`: its words in pairs of words the other holds, in any order), and the share the two
    have in common (1.0 for an exact match; of the shorter text's n-grams for `ngram`, of its words for `order` and
    `pairs`)."""

    benchmark: str
    prompt: str
    how: Literal["exact", "ngram", "order", "pairs"]
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
        # word trigram and word pair hash -> prompt ids (of prompts of ORDER_WORDS words or more)
        self._trigrams: dict[int, array] = {}
        self._pairs: dict[int, array] = {}
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
            _post(self._pairs, ngram_hashes(ws, 2), pid)

    def __len__(self) -> int:
        return len(self._prompts)

    def match(self, text: str) -> Match | None:
        """The prompt `text` matches (exactly first; else the prompt of the highest n-gram overlap, the first given on
        a tie; else the first prompt whose words it holds in order, or that it holds the words of; else the first
        that it holds in pairs of words, or that holds its own), or None."""
        ws = words(text)
        if not ws:
            return None
        pid = self._exact.get(" ".join(ws))
        if pid is not None:
            return Match(*self._prompts[pid], "exact", 1.0)
        return self._overlap(ws) or self._in_order(ws) or self._in_pairs(ws)

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

    def _in_pairs(self, ws: list[str]) -> Match | None:
        if len(ws) < ORDER_WORDS:
            return None
        # a prompt the text holds in pairs, or that holds it, shares at least `least` of the text's pairs (counted as
        # often as the text has them; see _least_pairs): so it holds one of the text's len - least + 1 rarest pairs,
        # and only those are looked up (a common pair's prompts are many)
        fewest, most = math.ceil(len(ws) / LONGER), len(ws) * LONGER  # the prompt sizes the text can match
        least = _least_pairs(max(ORDER_WORDS, fewest))
        held = [found for found in map(self._pairs.get, map(hash, pairwise(ws))) if found is not None]
        rarest = len(held) - least + 1  # the pairs no prompt holds are the rarest; then those of the fewest prompts
        if rarest <= 0:
            return None
        held.sort(key=len)
        hits = Counter(chain.from_iterable(held[:rarest]))
        ids = None
        for pid in sorted(p for p in hits if fewest <= len(self._words[p]) <= most):
            theirs = list(self._words[pid])
            # the pairs it shares beyond `least` - 1 are among those looked up: fewer, no need to look word by word
            if hits[pid] < _least_pairs(min(len(ws), len(theirs))) - least + 1:
                continue
            if ids is None:
                ids = [self._vocab.get(w, -1) for w in ws]
            matched = in_pairs(theirs, ids) if len(theirs) <= len(ids) else in_pairs(ids, theirs)
            if matched is not None:
                return Match(*self._prompts[pid], "pairs", round(matched / min(len(ws), len(theirs)), 4))
        return None


def _least_pairs(size: int) -> int:
    """The fewest word pairs a text of `size` words shares with one that holds it in pairs, or that it holds (see
    `in_pairs`): each pair found covers two words at most."""
    return (size - size // SPARE + 1) // 2


def _least_shared(size: int) -> int:
    """The fewest word trigrams a text of `size` words shares with one that holds it in order (see `in_order`)."""
    return max(1, size // 2 - 2 - 2 * (size // 10))


def _post(index: dict[int, array], grams: set[int], pid: int) -> None:
    for gram in grams:
        postings = index.get(gram)
        if postings is None:
            postings = index[gram] = array("I")
        postings.append(pid)
