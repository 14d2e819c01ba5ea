"""The benchmark matcher (refed_dspy.contamination): exact after normalization, word n-gram overlap of the shorter
text, against brute force on random text."""

import random

import pytest

from refed_dspy.contamination import BenchmarkIndex, exact_key, ngram_hashes, words

PROMPT = "What are the names of some famous actors that started their careers on Broadway?"  # 14 words, 7 8-grams


def test_normalization_ignores_case_whitespace_and_punctuation():
    assert exact_key("  What ARE the names...\n of SOME famous actors?! ") == "what are the names of some famous actors"
    assert words("Café, naïve; snake_case 42") == ["café", "naïve", "snake_case", "42"]  # any script, digits
    assert exact_key("?!...") == ""
    assert ngram_hashes(words("one two three"), 2) == {hash(("one", "two")), hash(("two", "three"))}
    assert ngram_hashes(words("one two"), 3) == set()


def test_exact_match_after_normalization():
    index = BenchmarkIndex({"bench": [PROMPT, "Write a haiku."]})
    found = index.match("what are the names of some famous ACTORS that started their careers on broadway")
    assert (found.benchmark, found.prompt, found.how, found.overlap) == ("bench", PROMPT, "exact", 1.0)
    assert index.match("Write a  HAIKU").how == "exact"  # shorter than an n-gram: exact only
    assert index.match("Write two haiku.") is None
    assert index.match("") is None and index.match("...") is None


def test_two_words_changed_at_the_ends_shares_five_of_seven_8grams():
    index = BenchmarkIndex({"bench": [PROMPT]})
    found = index.match("Which are the names of some famous actors that started their careers on stage?")
    assert found.how == "ngram" and found.overlap == round(5 / 7, 4)


def test_a_change_in_the_middle_of_a_short_prompt_breaks_its_8grams_but_not_its_4grams():
    edited = "What are the names of some well known actors that started their careers on Broadway?"
    assert BenchmarkIndex({"b": [PROMPT]}).match(edited) is None
    assert BenchmarkIndex({"b": [PROMPT]}, ngram=4).match(edited).how == "ngram"


def test_the_share_is_of_the_shorter_text_so_a_prompt_inside_a_longer_sample_matches():
    index = BenchmarkIndex({"bench": [PROMPT]})
    longer = f"Please answer this carefully. {PROMPT} Also list one play each of them was in, and the year it opened."
    assert index.match(longer).overlap == 1.0
    assert index.match(longer).how == "ngram"


@pytest.mark.parametrize("share, matches", [(0.71, True), (5 / 7, True), (0.72, False)])
def test_the_share_is_a_threshold_reached_at_equality(share, matches):
    index = BenchmarkIndex({"bench": [PROMPT]}, share=share)
    text = "Which are the names of some famous actors that started their careers on stage?"  # 5 of 7
    assert (index.match(text) is not None) is matches


def test_the_best_prompt_wins_and_a_tie_goes_to_the_first_given():
    a = "Explain how the tides of the ocean are caused by the moon and the sun in simple terms for a child."
    b = "Explain how the tides of the ocean are caused by the moon and the sun in great detail."
    index = BenchmarkIndex({"first": [b], "second": [a]})
    assert index.match(a).benchmark == "second" and index.match(a).how == "exact"
    shared = "Explain how the tides of the ocean are caused by the moon and the sun"  # inside both
    assert index.match(shared).benchmark == "first"  # both 100%: the first given


def test_prompts_are_counted_once_per_benchmark_and_bad_settings_refused():
    index = BenchmarkIndex({"a": [PROMPT, PROMPT.upper(), "", "x"], "b": [PROMPT]})
    assert index.counts == {"a": 2, "b": 1} and len(index) == 3
    assert index.match(PROMPT).benchmark == "a"
    with pytest.raises(ValueError, match="ngram"):
        BenchmarkIndex({}, ngram=0)
    with pytest.raises(ValueError, match="share"):
        BenchmarkIndex({}, share=0)


def test_the_index_gives_what_comparing_with_every_prompt_gives():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(60)]
    prompts = [" ".join(rng.choices(vocab, k=rng.randint(6, 30))) for _ in range(150)]
    texts = []
    for _ in range(300):
        base = rng.choice(prompts).split()
        for _ in range(rng.randint(0, 4)):
            base[rng.randrange(len(base))] = rng.choice(vocab)
        texts.append(" ".join(base) if rng.random() < 0.7 else " ".join(rng.choices(vocab, k=20)))
    index = BenchmarkIndex({"b": prompts}, ngram=3, share=0.5)

    def brute(text):
        key = exact_key(text)
        if key in {exact_key(p) for p in prompts}:
            return 1.0
        mine = ngram_hashes(words(text), 3)
        best = 0.0
        for p in prompts:
            theirs = ngram_hashes(words(p), 3)
            if mine and theirs:
                best = max(best, len(mine & theirs) / min(len(mine), len(theirs)))
        return best if best >= 0.5 else None

    agreed = 0
    for text in texts:
        found, expected = index.match(text), brute(text)
        assert (found.overlap if found else None) == (round(expected, 4) if expected is not None else None), text
        agreed += found is not None
    assert 50 < agreed < 300  # both kinds occur
