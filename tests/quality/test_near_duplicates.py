"""The `near_duplicates` filter (MinHash LSH over instruction, response or both): it finds near-copies among distinct
samples, keeps the first of each cluster, names what each removed sample repeats, and gives the same answer in any
process."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from loopback_server import _zipf_vocab
from pydantic import ValidationError

from refed_dspy.filters import FILTERS, make_filter, near_duplicates
from refed_dspy.filters.near_duplicates import near_duplicate_matches
from refed_dspy.quality.figures import reject_reasons

WORDS, CUM = _zipf_vocab(20000)
OPENING = "Here is a clear answer to your question, with the main points first and details after."


def zipf_text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, cum_weights=CUM, k=n))


def sample(i: int, instruction: str, response: str, improved: str | None = None) -> dict:
    return {
        "instruction": instruction,
        "response": response,
        "improved_response": improved,
        "meta": {"id": f"s{i}", "reference_id": "r0", "feature": "subject_areas"},
    }


def one_word_changed(text: str, rng: random.Random) -> str:
    words = text.split()
    at = rng.randrange(len(words))
    words[at] = next(w for w in rng.choices(WORDS[500:], k=10) if w != words[at])
    return " ".join(words)


def distinct_with_copies(n: int = 1000, copies: int = 50, seed: int = 7) -> tuple[list[dict], set[str]]:
    """`n` samples with distinct 150-word responses (Zipf text after one shared opening sentence, as many LLM answers
    share one) and `copies` more, each a copy of an earlier response with one word changed, under a new instruction,
    placed at a random point after its original. Returns the samples and the ids of the copies."""
    rng = random.Random(seed)
    samples = [
        sample(i, f"Question {i}: {zipf_text(rng, 12)}?", f"{OPENING} {zipf_text(rng, 134)}", None) for i in range(n)
    ]
    originals = rng.sample(samples, copies)
    copy_ids = set()
    for k, original in enumerate(originals):
        i = n + k
        position = rng.randrange(samples.index(original) + 1, len(samples) + 1)
        text = one_word_changed(original["response"], rng)
        samples.insert(position, sample(i, f"Question {i}: {zipf_text(rng, 12)}?", text))
        copy_ids.add(f"s{i}")
    return samples, copy_ids


def removed(result) -> dict[str, str]:
    return {s["meta"]["id"]: why for s, why in result.removed}


def test_near_copies_among_a_thousand_distinct_samples_are_removed_and_little_else():
    samples, copies = distinct_with_copies()
    assert len(samples) == 1050 and len({len(s["response"].split()) for s in samples}) == 1  # all 150 words
    result = make_filter("near_duplicates").apply(samples, {})
    gone = removed(result)
    assert len(copies & set(gone)) >= 45
    assert len(set(gone) - copies) <= 5
    by_id = {s["meta"]["id"]: s for s in samples}
    for sid in copies & set(gone):  # each names its original and the estimated similarity
        of, similarity = gone[sid].removeprefix("near-duplicate of ").split(": response Jaccard ~")
        assert one_word_changed_from(by_id[sid]["response"], by_id[of]["response"])
        assert 0.85 <= float(similarity.split()[0]) <= 1.0
    assert [s["meta"]["id"] for s in result.kept] == [s["meta"]["id"] for s in samples if s["meta"]["id"] not in gone]


def one_word_changed_from(a: str, b: str) -> bool:
    x, y = a.split(), b.split()
    return len(x) == len(y) and sum(p != q for p, q in zip(x, y, strict=True)) == 1


def test_the_first_of_each_cluster_is_kept_and_the_others_name_it():
    rng = random.Random(3)
    a, b, c = (zipf_text(rng, 150) for _ in range(3))
    a1, a2, b1 = one_word_changed(a, rng), one_word_changed(a, rng), one_word_changed(b, rng)
    a12 = one_word_changed(a1, rng)  # nearer to a1 (removed) than to a: it names a, the kept one
    samples = [sample(i, f"q{i}", t) for i, t in enumerate([a, b, a1, c, a2, b1, a12])]
    result = near_duplicates(samples)
    assert [s["meta"]["id"] for s in result.kept] == ["s0", "s1", "s3"]
    assert {k: v.split(":")[0] for k, v in removed(result).items()} == {
        "s2": "near-duplicate of s0",
        "s4": "near-duplicate of s0",
        "s5": "near-duplicate of s1",
        "s6": "near-duplicate of s0",
    }
    reverse = near_duplicates(samples[::-1])  # the other order keeps the other firsts
    assert [s["meta"]["id"] for s in reverse.kept] == ["s6", "s5", "s3"]
    assert {k: v.split(":")[0] for k, v in removed(reverse).items()} == {
        "s4": "near-duplicate of s6",
        "s2": "near-duplicate of s6",
        "s1": "near-duplicate of s5",
        "s0": "near-duplicate of s6",
    }


def test_the_same_samples_give_the_same_result_in_any_process(tmp_path):
    samples, _ = distinct_with_copies(300, 20, seed=11)
    mine = [(m.index, m.of, m.similarity) for m in near_duplicate_matches([(s["response"],) for s in samples])]
    again = [(m.index, m.of, m.similarity) for m in near_duplicate_matches([(s["response"],) for s in samples])]
    assert mine == again and len(mine) == 20
    path = tmp_path / "texts.json"
    path.write_text(json.dumps([s["response"] for s in samples]))
    code = (
        "import json, sys\n"
        "from refed_dspy.filters.near_duplicates import near_duplicate_matches\n"
        "texts = json.load(open(sys.argv[1]))\n"
        "print(json.dumps([[m.index, m.of, m.similarity] for m in near_duplicate_matches([(t,) for t in texts])]))\n"
    )
    for hash_seed in ("1", "2"):  # Python's str hash differs per process: the result must not
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, check=True
        ).stdout
        assert [tuple(m) for m in json.loads(out)] == mine
    other_seed = [(m.index, m.of) for m in near_duplicate_matches([(s["response"],) for s in samples], seed=2)]
    assert other_seed == [(i, of) for i, of, _ in mine]  # another seed: other estimates, the same copies found


def test_the_field_chosen_is_what_is_compared():
    rng = random.Random(5)
    ask, answer = zipf_text(rng, 10), zipf_text(rng, 150)
    samples = [
        sample(0, ask, answer),
        sample(1, ask, zipf_text(rng, 150)),  # the same instruction, another response
        sample(2, zipf_text(rng, 10), zipf_text(rng, 40), improved=one_word_changed(answer, rng)),  # final = improved
        sample(3, zipf_text(rng, 10), answer, improved=zipf_text(rng, 150)),  # its draft repeats; its final does not
    ]
    assert set(removed(near_duplicates(samples, "instruction"))) == {"s1"}
    assert set(removed(near_duplicates(samples, "response"))) == {"s2"}
    assert set(removed(near_duplicates(samples, "both"))) == {"s2"}  # 150 words of response outweigh 10 of instruction
    same_both = [sample(0, ask, answer), sample(1, one_word_changed(ask, rng), one_word_changed(answer, rng))]
    assert set(removed(near_duplicates(same_both, "both"))) == {"s1"}


def test_empty_and_short_texts():
    samples = [
        sample(0, "q", ""),
        sample(1, "q", ""),  # no words: never a near-duplicate, never matched
        sample(2, "q", "Yes."),
        sample(3, "q", "yes"),  # shorter than a shingle: the whole text is one shingle
        sample(4, "q", "no"),
    ]
    assert removed(near_duplicates(samples)) == {
        "s3": "near-duplicate of s2: response Jaccard ~1.00 (MinHash, 5-word shingles, threshold 0.7)"
    }
    assert near_duplicates([]).kept == []


def test_settings_are_checked():
    spec = make_filter("near_duplicates", field="both", threshold=0.8, shingle_words=3, num_perm=256, seed=4)
    assert spec.model_dump() == {
        "name": "near_duplicates",
        "field": "both",
        "threshold": 0.8,
        "shingle_words": 3,
        "num_perm": 256,
        "seed": 4,
    }
    assert "near_duplicates" in FILTERS.names()
    for bad in ({"field": "draft"}, {"threshold": 0.99}, {"threshold": 0.2}, {"num_perm": 8}, {"shingle_words": 0}):
        with pytest.raises(ValidationError):
            make_filter("near_duplicates", **bad)


def test_a_filter_with_a_reason_per_sample_is_one_line_of_the_reports_rejects():
    rows = [{"stage": "sample", "reason": "truncated"}] * 3
    rows += [{"stage": "filter", "filter": "min_score", "reason": "mean judge score 4.0 < 5"}] * 2
    few = [{"stage": "filter", "filter": "near_duplicates", "reason": f"near-duplicate of s{i}"} for i in range(10)]
    assert reject_reasons(rows + few) == {
        "truncated": 3,
        "mean judge score 4.0 < 5": 2,
        **{f"near-duplicate of s{i}": 1 for i in range(10)},
    }
    many = few + [{"stage": "filter", "filter": "near_duplicates", "reason": "near-duplicate of s10"}] * 2
    assert reject_reasons(rows + many) == {
        "near_duplicates (11 different reasons: see rejects.jsonl)": 12,
        "truncated": 3,
        "mean judge score 4.0 < 5": 2,
    }
