"""The benchmark matcher (refed_dspy.text.contamination): exact after normalization as the texts render, word n-gram overlap
of the shorter text, the shorter text's words in order, against brute force on random text."""

import random

import pytest

from refed_dspy.text.contamination import ORDER_WORDS, BenchmarkIndex, exact_key, fold, in_order, ngram_hashes, words

PROMPT = "What are the names of some famous actors that started their careers on Broadway?"  # 14 words, 7 8-grams


def test_normalization_ignores_case_whitespace_and_punctuation():
    assert exact_key("  What ARE the names...\n of SOME famous actors?! ") == exact_key(
        "what are the names of some famous actors"
    )
    assert words("Café, naïve; snake_case 42") == words("cafe naive snake_case 42")  # any script, digits
    assert len(words("Café, naïve; snake_case 42")) == 4
    # Unicode reads Cyrillic "І" as "l": it matches the "I" it imitates, and "l", "1", "o" and "0" as their look-alikes
    assert exact_key("\u0406s it 10 or lO?") == exact_key("Is it lo or 10?")
    assert exact_key("?!...") == ""
    assert ngram_hashes(["one", "two", "three"], 2) == {hash(("one", "two")), hash(("two", "three"))}
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


def test_a_change_in_the_middle_of_a_short_prompt_breaks_its_8grams_but_not_its_words_in_order():
    """Issue 52: one word changed in the middle of a 14-word prompt shares none of its 8-grams, so the overlap rule
    let it through; 13 of its 14 words in order are a copy. `ngram = 4` still finds it by overlap."""
    edited = "What are the names of some well known actors that started their careers on Broadway?"
    found = BenchmarkIndex({"b": [PROMPT]}).match(edited)
    assert (found.how, found.overlap) == ("order", round(13 / 14, 4))
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


def test_the_order_check_finds_what_checking_every_prompt_finds():
    """The order check looks word by word only at prompts sharing enough trigrams with the text: on texts made of
    prompts with words inserted, dropped and changed, it finds the same prompt as checking each one in turn."""
    rng = random.Random(11)
    vocab = [f"w{i}" for i in range(400)]
    prompts = [" ".join(rng.choices(vocab, k=rng.randint(8, 40))) for _ in range(200)]
    index = BenchmarkIndex({"b": prompts})  # ngram 8: the overlap rule seldom fires on these edits
    found_in_order = 0
    for _ in range(600):
        ws = rng.choice(prompts).split()
        for _ in range(rng.randint(0, 6)):
            kind, at = rng.random(), rng.randrange(len(ws))
            if kind < 0.5:
                ws.insert(at, rng.choice(vocab))
            elif kind < 0.75 and len(ws) > ORDER_WORDS:
                del ws[at]
            else:
                ws[at] = rng.choice(vocab)
        text = " ".join(ws)
        found = index.match(text)
        if found is not None and found.how != "order":
            continue
        expected = None
        for p in prompts:
            mine, theirs = words(text), words(p)
            if len(mine) >= ORDER_WORDS and len(theirs) >= ORDER_WORDS:
                short, long = (theirs, mine) if len(theirs) <= len(mine) else (mine, theirs)
                if in_order(short, long) is not None:
                    expected = p
                    break
        assert (found.prompt if found else None) == expected, text
        found_in_order += found is not None
    assert found_in_order > 50


P = "Explain how the immune system responds when a new virus enters the human body for the first time."
FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyz"}
RENDERED_THE_SAME = {  # each shows as the prompt does
    "zero-width spaces inside words": P.replace("immune", "imm\u200bune").replace("virus", "vi\u200brus"),
    "a soft hyphen": P.replace("system", "sys\u00adtem"),
    "a zero-width joiner": P.replace("body", "bo\u200ddy"),
    "tag characters": P.replace("enters", "ent\U000e0041\U000e0042ers"),
    "a combining accent": P.replace("new", "ne\u0301w"),
    "a word joiner and a BOM": P.replace("human", "hu\u2060man\ufeff"),
    "Cyrillic look-alike letters": P.replace("a", "\u0430").replace("e", "\u0435").replace("o", "\u043e"),
    "Cyrillic i's": P.replace("i", "\u0456"),
    "full-width letters": "".join(FULL_WIDTH.get(c, c) for c in P),
}


@pytest.mark.parametrize("kind", list(RENDERED_THE_SAME))
def test_a_prompt_that_renders_the_same_is_the_same(kind):
    text = RENDERED_THE_SAME[kind]
    assert text != P and fold(text) == fold(P)
    found = BenchmarkIndex({"b": [P]}).match(text)
    assert (found.how, found.prompt) == ("exact", P)


def test_a_filler_word_every_seven_words_breaks_every_8gram_but_not_the_order():
    ws = P.split()
    padded = " ".join(w + (" basically" if i % 7 == 6 else "") for i, w in enumerate(ws))
    assert BenchmarkIndex({"b": [P]}, share=0.01)._overlap(words(padded)) is None  # not one 8-gram left
    found = BenchmarkIndex({"b": [P]}).match(padded)
    assert (found.how, found.overlap) == ("order", 1.0)


@pytest.mark.parametrize(
    "text",
    [
        "Explain how the digestive system responds when a large meal enters the human body after a fast.",
        "Explain how the immune system works.",  # the prompt's start, short: a common phrase, not a copy
        "Write a short story about a virus that enters the human body for the first time.",
        "Describe how a new law enters into force when the human rights council votes for the first time.",
    ],
)
def test_related_text_in_the_same_register_is_not_a_match(text):
    assert BenchmarkIndex({"b": [P]}).match(text) is None


def test_a_text_of_fewer_than_eight_words_matches_only_exactly():
    short = "Write a haiku about autumn leaves."
    index = BenchmarkIndex({"b": [short]})
    assert index.match("Write a haiku about autumn leaves") is not None
    assert index.match("Write a lovely haiku about autumn leaves.") is None
