"""Deterministic text utilities: normalization, tokens, ROUGE-L, and instruction dedup."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, strip punctuation at the ends: the exact-duplicate key."""
    return " ".join(_WORD.findall(text.lower()))


def tokens(text: str) -> list[str]:
    """Lowercase alphanumeric tokens (the unit ROUGE-L counts)."""
    return _WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 between two token lists (0 when either is empty)."""
    if not a or not b:
        return 0.0
    lcs = lcs_length(a, b)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(b), lcs / len(a)
    return 2 * p * r / (p + r)


class Deduper:
    """Keeps instructions that are neither exact (normalized) duplicates nor ROUGE-L near-duplicates
    (F1 >= threshold) of any kept one, as Self-Instruct filters its pool.

    An inverted index bounds the LCS by the shared-token count (sum over tokens of the smaller count),
    so only candidates that could reach the threshold get the quadratic LCS: F1 <= 2*shared/(len_a+len_b).
    """

    def __init__(self, threshold: float = 0.7):
        self.threshold = threshold
        self._exact: set[str] = set()
        self._toks: list[list[str]] = []
        self._counts: list[Counter] = []
        self._index: dict[str, list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._toks)

    def check(self, text: str) -> str | None:
        """The reason `text` would be dropped ('duplicate' or 'near_duplicate'), or None."""
        key = normalize(text)
        if not key or key in self._exact:
            return "duplicate"
        toks = tokens(text)
        mine = Counter(toks)
        counts: dict[int, int] = defaultdict(int)
        for tok, k in mine.items():
            for idx in self._index.get(tok, ()):
                counts[idx] += min(k, self._counts[idx][tok])
        n = len(toks)
        for idx, shared in counts.items():
            other = self._toks[idx]
            if 2 * shared / (n + len(other)) < self.threshold:
                continue
            if rouge_l(toks, other) >= self.threshold:
                return "near_duplicate"
        return None

    def add(self, text: str) -> None:
        """Keep `text` (call after `check` returned None)."""
        self._exact.add(normalize(text))
        toks = tokens(text)
        idx = len(self._toks)
        self._toks.append(toks)
        self._counts.append(Counter(toks))
        for tok in set(toks):
            self._index[tok].append(idx)

    def offer(self, text: str) -> str | None:
        """Check and, when it passes, keep `text`. Returns the drop reason or None."""
        reason = self.check(text)
        if reason is None:
            self.add(text)
        return reason
