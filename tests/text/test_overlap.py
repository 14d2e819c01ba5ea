"""Text measures: normalization, tokens, ROUGE-L and the instruction dedup (exact and near duplicates)."""

import pytest

from refed_dspy.text.overlap import Deduper, lcs_length, normalize, rouge_l, tokens


def test_rouge_l_hand_computed():
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    # LCS("a b c d", "a b x d") = 3 -> P = R = 3/4
    assert rouge_l(tokens("a b c d"), tokens("a b x d")) == pytest.approx(0.75)
    # LCS = 2 of lengths 2 and 4 -> P = 1, R = 0.5, F = 2/3
    assert rouge_l(tokens("the cat"), tokens("the big fat cat")) == pytest.approx(2 / 3)
    assert rouge_l([], ["x"]) == 0.0
    assert normalize("  Hello,   WORLD! ") == "hello world"


def _lcs_by_table(a: list[str], b: list[str]) -> int:
    """The textbook row-by-row table, to check the bit-parallel LCS against."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_lcs_bit_parallel_equals_the_table():
    """Every length from 0 to 70 (integers past one machine word), repeats, small and large vocabularies."""
    import random

    rng = random.Random(7)
    for _ in range(2000):
        vocab = [f"w{i}" for i in range(rng.randint(1, 40))]
        a = [rng.choice(vocab) for _ in range(rng.randint(0, 70))]
        b = [rng.choice(vocab) for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == _lcs_by_table(a, b) == lcs_length(b, a), (a, b)


def test_deduper_exact_near_and_bound_with_repeats():
    d = Deduper(0.7)
    assert d.offer("Write a poem about the sea") is None
    assert d.offer("write a poem about the sea!") == "duplicate"
    assert d.offer("Write a short poem about the sea") == "near_duplicate"
    assert d.offer("Explain quantum computing to a child") is None
    # repeated tokens: the shared-count bound must count multiplicity, not distinct tokens
    d2 = Deduper(0.7)
    assert d2.offer("go go go go stop") is None
    assert d2.offer("go go go go halt") == "near_duplicate"
    assert len(d) == 2


def test_deduper_prunes_no_tie():
    """A pair whose ROUGE-L F1 equals the threshold exactly is a near-duplicate: the hit-count and length
    bounds must not prune it through float rounding (every length pair up to 20, every LCS)."""
    for n in range(1, 21):
        for m in range(1, 21):
            for lcs in range(1, min(n, m) + 1):
                a = [f"a{i}" for i in range(n)]
                b = a[:lcs] + [f"b{i}" for i in range(m - lcs)]
                if a == b:
                    continue
                score = rouge_l(a, b)
                for t in (0.5, 0.7, 0.9, score):
                    d = Deduper(t)
                    d.add(" ".join(a))
                    assert d.check(" ".join(b)) == ("near_duplicate" if score >= t else None), (n, m, lcs, t)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.9])
def test_deduper_indexed_search_equals_comparing_against_every_kept_text(threshold):
    """The probe of the rarest occurrences must never miss a near-duplicate that a full scan finds."""
    import random

    rng = random.Random(threshold)
    vocab = [f"w{i}" for i in range(12)] + ["the", "a", "of"]
    texts = []
    for _ in range(600):
        if texts and rng.random() < 0.5:  # an edit of an earlier text: drop, swap or insert words
            words = rng.choice(texts).split()
            for _ in range(rng.randint(0, 3)):
                op = rng.random()
                if op < 0.4 and len(words) > 1:
                    words.pop(rng.randrange(len(words)))
                elif op < 0.7:
                    words[rng.randrange(len(words))] = rng.choice(vocab)
                else:
                    words.insert(rng.randrange(len(words) + 1), rng.choice(vocab))
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 16))))
    d = Deduper(threshold)
    kept: list[list[str]] = []
    exact: set[str] = set()
    reasons = []
    for text in texts:
        got = d.offer(text)
        key = normalize(text)
        if not key or key in exact:
            want = "duplicate"
        elif any(rouge_l(tokens(text), other) >= threshold for other in kept):
            want = "near_duplicate"
        else:
            want = None
            kept.append(tokens(text))
            exact.add(key)
        assert got == want, text
        reasons.append(got)
    assert reasons.count("near_duplicate") > 50 and reasons.count(None) > 50
