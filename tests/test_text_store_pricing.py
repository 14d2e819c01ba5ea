import json

import pytest

from refed_dspy.clients.lm import CallInfo
from refed_dspy.clients.pricing import Price, default_price, resolve_price
from refed_dspy.clients.usage import Totals, usage_of
from refed_dspy.errors import RunDirError
from refed_dspy.store.jsonl import JsonlWriter, read_jsonl
from refed_dspy.text import Deduper, lcs_length, normalize, rouge_l, tokens


def test_rouge_l_hand_computed():
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    # LCS("a b c d", "a b x d") = 3 -> P = R = 3/4
    assert rouge_l(tokens("a b c d"), tokens("a b x d")) == pytest.approx(0.75)
    # LCS = 2 of lengths 2 and 4 -> P = 1, R = 0.5, F = 2/3
    assert rouge_l(tokens("the cat"), tokens("the big fat cat")) == pytest.approx(2 / 3)
    assert rouge_l([], ["x"]) == 0.0
    assert normalize("  Hello,   WORLD! ") == "hello world"


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


def test_torn_line_dropped_and_repaired(tmp_path):
    p = tmp_path / "x.jsonl"
    w = JsonlWriter(p)
    w.append({"a": 1})
    w.append({"a": 2})
    w.close()
    with open(p, "ab") as fh:
        fh.write(b'{"a": 3, "tor')
    assert [r["a"] for r in read_jsonl(p)] == [1, 2]
    list(read_jsonl(p, repair=True))
    assert p.read_bytes().endswith(b'{"a": 2}\n')
    w = JsonlWriter(p)
    w.append({"a": 4})
    w.close()
    assert [json.loads(line)["a"] for line in p.read_text().splitlines()] == [1, 2, 4]


def test_write_failure_is_a_clear_run_error(tmp_path, monkeypatch):
    import os

    w = JsonlWriter(tmp_path / "y.jsonl")

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(RunDirError, match="No space left on device"):
        w.append({"a": 1})


def test_prices_and_cost():
    assert default_price("openai/gpt-4o-mini-2024-07-18") == Price(0.15, 0.075, 0.60)
    assert default_price("azure/gpt-4o") == Price(2.50, 1.25, 10.00)
    assert default_price("openai/my-finetune") is None
    assert resolve_price("openai/my-finetune", 1.0, None, 2.0) == Price(1.0, 1.0, 2.0)
    assert resolve_price("openai/gpt-4o-mini", None, None, 1.0) == Price(0.15, 0.075, 1.0)
    # 1000 prompt tokens (400 cached) + 100 completion at gpt-4o-mini prices
    assert Price(0.15, 0.075, 0.60).cost(1000, 100, 400) == pytest.approx((600 * 0.15 + 400 * 0.075 + 100 * 0.6) / 1e6)


def test_usage_counts_cache_hits_apart():
    calls = [
        CallInfo("generate", "m", 100, 10, 50),
        CallInfo("improve", "m", 200, 20, 0),
        CallInfo("improve", "m", cache_hit=True),
    ]
    u = usage_of(calls, Price(1.0, 0.5, 2.0))
    assert (u["calls"], u["cached_calls"], u["prompt_tokens"], u["completion_tokens"], u["cached_tokens"]) == (
        2,
        1,
        300,
        30,
        50,
    )
    assert u["cost_usd"] == pytest.approx((250 * 1.0 + 50 * 0.5 + 30 * 2.0) / 1e6)
    assert u["by_stage"]["improve"]["calls"] == 1 and u["by_stage"]["improve"]["cached_calls"] == 1
    t = Totals()
    t.add(u)
    t.add(u)
    assert t.calls == 4 and t.as_dict()["by_stage"]["generate"]["prompt_tokens"] == 200
    assert usage_of(calls, None)["cost_usd"] is None


def test_default_prices_come_from_litellms_map():
    """Hundreds of models priced without a table of ours; the config's prices win; an unknown model has none."""
    assert default_price("gemini/gemini-2.5-flash") is not None and default_price("deepseek/deepseek-chat") is not None
    haiku = default_price("anthropic/claude-haiku-4-5")
    assert haiku == default_price("anthropic/claude-haiku-4-5-20251001") and haiku.cached_input < haiku.input
    assert resolve_price("anthropic/claude-haiku-4-5", 2.0, None, None) == Price(2.0, 2.0, haiku.output)
    assert default_price("ollama_chat/llama3.1") is None
