"""Closeness to a reference (refed_dspy.text.closeness): copies are caught by one measure or the other, a paraphrase is not."""

import pytest

from refed_dspy.store.seeds import read_references
from refed_dspy.text.closeness import COPY_THRESHOLD, closeness, copy_reason, first_copy, verbatim_runs
from refed_dspy.text.overlap import tokens

REFS, _ = read_references()
REF = max(REFS, key=lambda r: len(r.response))  # a long response of the embedded set
# written for this test: the same advice as a reference on sleep, in other words
SLEEP = (
    "To sleep better, keep the same bedtime and wake-up time every day, weekends included, so your body clock settles. "
    "Keep the bedroom dark, quiet and cool, and leave screens outside it for the last hour of the evening. Avoid "
    "coffee after lunch and heavy meals late at night. If you lie awake for more than twenty minutes, get up and do "
    "something calm until you feel sleepy again."
)
SLEEP_PARAPHRASE = (
    "Your body clock likes regularity: going to bed and getting up at fixed hours, on Saturdays and Sundays too, "
    "helps most. A cool, dim and silent room works best, and phones and laptops are better left elsewhere during the "
    "final hour before bed. Skip caffeine in the afternoon and big dinners. When sleep does not come within roughly "
    "twenty minutes, leave the bed for a quiet activity and return once drowsy."
)


def changed(text: str, every: int) -> str:
    """`text` with every `every`-th word replaced."""
    words = text.split()
    return " ".join("CHANGED" if i % every == every - 1 else w for i, w in enumerate(words))


def test_a_verbatim_copy_and_a_copy_with_words_changed_are_caught():
    assert closeness(REF.response, REF.response).value == 1.0
    # one word in ten changed: runs of 8+ words survive only in part, but the subsequence keeps 90% of the words
    edited = closeness(changed(REF.response, 10), REF.response)
    assert edited.rouge_l >= 0.85 and edited.value >= COPY_THRESHOLD
    # an instruction of a dozen words with two changed: its runs of 8 words are short of the threshold, ROUGE-L is not
    instruction = "Explain how a refrigerator keeps food cold, step by step, for a curious child."
    two = instruction.replace("refrigerator", "freezer").replace("curious", "young")
    c = closeness(two, instruction)
    assert c.rouge_l >= COPY_THRESHOLD > c.verbatim
    assert (
        copy_reason("instruction", c)
        == f"instruction copies its reference's instruction: ROUGE-L {c.rouge_l:.2f} >= 0.8"
    )


def test_a_pasted_reference_with_more_added_is_caught_by_the_verbatim_share():
    padded = REF.response + " " + SLEEP + " " + SLEEP_PARAPHRASE * 3
    c = closeness(padded, REF.response)
    assert c.rouge_l < COPY_THRESHOLD  # the added text drags ROUGE-L down
    assert c.reference_verbatim == 1.0 and c.value == 1.0  # but all of the reference is in it
    assert c.longest_run == len(tokens(REF.response))
    assert "of the reference's words lie in runs of 8+ words" in copy_reason("response", c)
    # a part of the reference pasted: the sample is all copy
    part = " ".join(REF.response.split()[:60])
    c = closeness(part, REF.response)
    assert c.verbatim == 1.0 and c.reference_verbatim < 0.5
    assert "of its words lie in runs of 8+ words found word for word in the reference" in c.phrase()


def test_a_paraphrase_and_unrelated_texts_are_not_copies():
    c = closeness(SLEEP_PARAPHRASE, SLEEP)
    assert c.value < 0.5 and c.verbatim == 0 and c.longest_run == 0
    assert copy_reason("response", c) is None
    # every pair of the embedded set's responses
    worst = max(closeness(a.response, b.response).value for a in REFS for b in REFS if a is not b)
    assert worst < 0.3


def test_verbatim_runs_count_each_word_once_and_the_longest_stretch():
    ref = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    # two overlapping 3-word windows of the reference (a b c, b c d) cover 4 words; x y z are new
    assert verbatim_runs(["a", "b", "c", "d", "x", "y", "z"], ref, 3) == (round(4 / 7, 4), 0.4, 4)
    assert verbatim_runs(["a", "b", "x"], ref, 3) == (0.0, 0.0, 0)
    assert verbatim_runs(["a"], ref, 3) == (0.0, 0.0, 0)
    with pytest.raises(ValueError):
        verbatim_runs(ref, ref, 0)


def test_first_copy_names_the_first_part_that_copies():
    pairs = [("instruction", "Tell me a joke", "Describe the water cycle"), ("response", REF.response, REF.response)]
    assert first_copy(pairs).startswith("response copies its reference's response: ROUGE-L 1.00")
    assert first_copy(pairs[:1]) is None
    assert first_copy([("response", "", REF.response)]) is None  # nothing written copies nothing
