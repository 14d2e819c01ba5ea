"""near_duplicates: remove samples whose instruction, response or both nearly repeat an earlier sample's, by MinHash
with locality-sensitive hashing (datasketch), at the scale of 100,000 samples and more.

A text is the set of its word shingles (`shingle_words` consecutive words, lowercased, punctuation dropped; a text
shorter than that is one shingle). Two samples are near-duplicates when MinHash estimates the Jaccard similarity of their sets at
`threshold` or above. In file order, a sample is compared with the samples kept before it: the LSH index proposes the
candidates, their MinHash signatures decide, and a sample that matches one is removed, naming the most similar (the
earliest among equals). So each cluster is a kept sample and the later ones removed as its near-duplicates.

Deterministic: word hashes are BLAKE2b (not Python's salted `hash`) and the MinHash permutations come from `seed`, so
the same samples and settings give the same result in any process. No LM call.

numpy and datasketch (with SciPy, half a second) are imported when the filter runs, not when the config imports every
filter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from refed_dspy.errors import ConfigError
from refed_dspy.filters.base import Filter, FilterResult, Judgments, Sample, sample_id, split, text_of
from refed_dspy.registry import FILTERS

if TYPE_CHECKING:
    import numpy as np

_WORD = re.compile(r"\w+")  # Unicode words: text.tokens keeps ASCII ones, which would leave other scripts no shingles
_MULTIPLIER = 0x9E3779B97F4A7C15  # odd: the rolling hash that joins a shingle's word hashes is a bijection per step
_WEIGHTS = (0.2, 0.8)  # of a false candidate and of a missed pair, in choosing the LSH bands
_SALTS = (0x243F6A8885A308D3, 0x13198A2E03707344)  # instruction and response shingles stay apart under "both"


@dataclass(frozen=True)
class Match:
    """Sample `index` nearly repeats the kept sample `of` (indexes into the input, `of` < `index`), with MinHash's
    estimate of the Jaccard similarity of their shingle sets."""

    index: int
    of: int
    similarity: float


def parts_of(sample: Sample, field: str) -> tuple[str, ...]:
    """The texts of `sample` that `field` compares: its instruction, its final response, or both."""
    if field == "both":
        return (text_of(sample, "instruction"), text_of(sample, "response"))
    return (text_of(sample, field),)


class Shingler:
    """32-bit hashes of a text's word shingles, the same in every process (word hashes are cached per instance)."""

    def __init__(self, shingle_words: int):
        self.k = shingle_words
        self._words: dict[str, int] = {}

    def _word_hash(self, word: str) -> int:
        value = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        self._words[word] = value
        return value

    def __call__(self, parts: tuple[str, ...]) -> np.ndarray:
        """The shingle hashes of `parts` (uint32; a part's shingles are salted by its position); empty: no words."""
        import numpy as np

        out = []
        for salt, text in zip(_SALTS, parts, strict=False):
            words = _WORD.findall(text.lower())
            if not words:
                continue
            known = self._words
            for word in set(words).difference(known):
                self._word_hash(word)
            h = np.fromiter(map(known.__getitem__, words), dtype=np.uint64, count=len(words))
            k = min(self.k, len(words))
            n = len(words) - k + 1
            acc = h[:n].copy()
            for j in range(1, k):
                acc *= np.uint64(_MULTIPLIER)
                acc += h[j : j + n]
            acc ^= np.uint64(salt)
            out.append((acc ^ (acc >> np.uint64(32))).astype(np.uint32))
        return np.concatenate(out) if out else np.empty(0, dtype=np.uint32)


def _identity(value: int) -> int:
    return value


def signatures(texts: Sequence[tuple[str, ...]], shingle_words: int, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (datasketch, `num_perm` x uint32 a row) of `texts`' shingle sets; a text with no words has
    the row datasketch gives an empty set (all values at their maximum)."""
    import numpy as np
    from datasketch import MinHash

    shingle = Shingler(shingle_words)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    sets = (shingle(parts).tolist() for parts in texts)  # one text at a time: the sets are never all held
    for i, sketch in enumerate(MinHash.generator(sets, num_perm=num_perm, seed=seed, hashfunc=_identity)):
        out[i] = sketch.hashvalues
    return out


def bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH bands and rows per band for `threshold`: datasketch's choice, with a missed pair weighing four times a
    false candidate (every candidate is checked against its signature, so a false one costs a comparison, never a
    sample). ConfigError when it leaves a single band (a threshold too high for `num_perm`)."""
    from datasketch import MinHashLSH

    try:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=_WEIGHTS)
    except ValueError as exc:
        raise ConfigError(
            f"near_duplicates: threshold {threshold} with num_perm {num_perm} leaves no LSH bands to compare ({exc}); "
            "lower the threshold or raise num_perm"
        ) from None
    return lsh.b, lsh.r


def band_keys(sigs: np.ndarray, b: int, r: int) -> np.ndarray:
    """One 64-bit key per row and band (rows x b): equal values give equal keys; different ones collide with odds of
    about 2**-64, and a collision only adds a candidate, which its signature then rules out."""
    import numpy as np

    columns = np.arange(b * r, dtype=np.uint64)
    mult = (columns + np.uint64(1)) * np.uint64(_MULTIPLIER)  # one odd multiplier per column
    mult ^= mult >> np.uint64(29)
    mult |= np.uint64(1)
    keys = np.empty((len(sigs), b), dtype=np.uint64)
    for band in range(b):
        cols = slice(band * r, (band + 1) * r)
        keys[:, band] = (sigs[:, cols].astype(np.uint64) * mult[cols]).sum(axis=1, dtype=np.uint64)
    return keys


def previous_in_bucket(keys: np.ndarray) -> np.ndarray:
    """For each row and band, the row before it (in input order) with the same band key, or -1 (rows x b, int32)."""
    import numpy as np

    prev = np.full(keys.shape, -1, dtype=np.int32)
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")  # equal keys stay in input order
        same = keys[order[1:], band] == keys[order[:-1], band]
        prev[order[1:][same], band] = order[:-1][same]
    return prev


def near_duplicate_matches(
    texts: Sequence[tuple[str, ...]],
    threshold: float = 0.7,
    shingle_words: int = 5,
    num_perm: int = 128,
    seed: int = 1,
) -> list[Match]:
    """The near-duplicates among `texts` (each a tuple of parts compared together), in input order: each one with the
    earlier kept text it repeats. A text with no words is never a near-duplicate nor matched.

    The LSH buckets are found at once (rows sorted by band key); then, in input order, a text's candidates are the kept
    texts before it in its buckets, reached through `kept_before` (per row and band, the nearest kept row before it in
    that bucket), so removed texts are stepped over. A text that shares no bucket with an earlier one is kept without
    a look. Memory: the signatures (4 bytes x num_perm a text) and two int32 arrays of texts x bands, about 65 MiB
    at 100,000 texts with the defaults, where datasketch's MinHashLSH, a Python set per bucket, took about 500 MiB
    (docs/benchmarks.md)."""
    import numpy as np

    b, r = bands(threshold, num_perm)
    sigs = signatures(texts, shingle_words, num_perm, seed)
    prev = previous_in_bucket(band_keys(sigs, b, r))
    has_words = ~np.all(sigs == np.iinfo(np.uint32).max, axis=1)  # an empty set's signature: all values at their max
    kept = bytearray(has_words.astype(np.uint8).tobytes())  # a text that shares no bucket with an earlier one is kept
    kept_before = np.full(prev.shape, -1, dtype=np.int32)
    matches = []
    for i in np.flatnonzero(has_words & (prev >= 0).any(axis=1)).tolist():  # in input order: earlier rows are settled
        nearest = [p if p < 0 or kept[p] else int(kept_before[p, band]) for band, p in enumerate(prev[i].tolist())]
        kept_before[i] = nearest
        candidates = set()
        for band, q in enumerate(nearest):
            while q >= 0:
                candidates.add(q)
                q = int(kept_before[q, band])
        if not candidates:
            continue
        found = np.array(sorted(candidates))
        agree = np.count_nonzero(sigs[found] == sigs[i], axis=1)
        best = int(np.argmax(agree))  # the first of the most similar: the earliest kept among equals
        similarity = float(agree[best]) / num_perm
        if similarity >= threshold:
            matches.append(Match(i, int(found[best]), similarity))
            kept[i] = 0
    return matches


def near_duplicates(
    samples: list[Sample],
    field: str = "response",
    threshold: float = 0.7,
    shingle_words: int = 5,
    num_perm: int = 128,
    seed: int = 1,
) -> FilterResult:
    """In input order, keep the first sample of each cluster of near-duplicates (MinHash LSH over `field`: instruction,
    response (the final one) or both); the others are removed, each naming the sample it repeats and the estimated
    Jaccard similarity.

    Args:
        samples: the samples, as samples.jsonl holds them.
        field: what is compared: "instruction", "response" (the final one) or "both".
        threshold: estimated Jaccard similarity at or above which a sample is a near-duplicate of an earlier one.
        shingle_words: words per shingle.
        num_perm: MinHash permutations.
        seed: seed of the MinHash permutations.

    Returns:
        The kept samples, in input order, and the removed ones, each with its reason.

    Raises:
        ConfigError: `threshold` is too high for `num_perm` to leave more than one LSH band.
    """
    matches = near_duplicate_matches([parts_of(s, field) for s in samples], threshold, shingle_words, num_perm, seed)
    how = f"(MinHash, {shingle_words}-word shingles, threshold {threshold})"
    return split(
        samples,
        {
            sample_id(samples[m.index]): f"near-duplicate of {sample_id(samples[m.of])}: "
            f"{field} Jaccard ~{m.similarity:.2f} {how}"
            for m in matches
        },
    )


@FILTERS.register
class NearDuplicates(Filter):
    """Remove near-duplicate samples by MinHash LSH over their instruction, response or both; the first of each
    cluster (in file order) is kept."""

    rank = 6
    name: Literal["near_duplicates"] = Field("near_duplicates", description="This filter's name.")
    field: Literal["instruction", "response", "both"] = Field(
        "response",
        description="What to compare: the instruction, the response (the final one: improved_response where the "
        "method has it) or both (the two texts' shingles in one set).",
    )
    threshold: float = Field(
        0.7,
        ge=0.5,
        le=0.95,
        description="Estimated Jaccard similarity of two samples' shingle sets at or above which the later one is a "
        "near-duplicate of the earlier.",
    )
    shingle_words: int = Field(
        5, ge=1, le=20, description="Words per shingle (a text with fewer words is one shingle)."
    )
    num_perm: int = Field(
        128,
        ge=64,
        le=1024,
        description="MinHash permutations: more estimate the similarity more finely, at more time and memory.",
    )
    seed: int = Field(1, ge=0, description="Seed of the MinHash permutations.")

    def apply(self, samples: list[Sample], judgments: Judgments, unjudged: str = "drop") -> FilterResult:
        return near_duplicates(samples, self.field, self.threshold, self.shingle_words, self.num_perm, self.seed)
