"""How close a text is to the reference it was made from: ROUGE-L over words, and the share of its words copied word
for word in long runs (pure functions, no I/O).

REFED shows each sample's reference pair to the step that writes the response, so a teacher can copy it, or rewrite the
reference's instruction with a few words changed; a judge scores such a sample well and it adds nothing to the data.
Two measures, since each sees what the other misses:

- ROUGE-L F1 (the longest common subsequence of words, as the dedup counts it): a text with a few words changed keeps
  nearly all of it (two words changed in twenty: 0.9), while texts that are not copies stay far below (the responses of
  the embedded seed set, pair by pair: 0.08 to 0.16; their instructions: at most 0.46);
- the verbatim shares: the share of the text's words that lie in a run of at least `span` words (8) found word for
  word in the reference, and the share of the reference's words that lie in such a run found in the text. A response
  that pastes the reference's response and adds as much again of its own has a ROUGE-L of about 0.67, but holds all
  of the reference (1.0); one that pastes a part of it is itself all copied (1.0).

A text's closeness is the largest of the three, and it copies its reference when that reaches the copy threshold
(COPY_THRESHOLD, 0.8). Words are the lower-cased alphanumeric tokens of `refed_dspy.text.overlap.tokens` (case and punctuation
aside). ROUGE-L reads at most MAX_WORDS words of each text (bit-parallel, about 0.05 ms for two 300-word texts); the
verbatim share reads them all, in time linear in their length.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from refed_dspy.text.overlap import rouge_l, token_spans, tokens

COPY_THRESHOLD = 0.8  # closeness at or above which a text copies its reference
SPAN_WORDS = 8  # the shortest run of words the verbatim share counts
MAX_WORDS = 5000  # words of each text ROUGE-L reads


@dataclass(frozen=True)
class Closeness:
    """How close one text is to its reference text.

    Attributes:
        rouge_l: ROUGE-L F1 of their words (0-1).
        verbatim: the share of the text's words in runs of at least `span` words found word for word in the reference.
        reference_verbatim: the share of the reference's words in runs of at least `span` words found word for word
            in the text (how much of the reference the text holds).
        longest_run: the longest stretch of the text, in words, whose every `span`-word window is in the reference
            (0 when none is).
        span: the run length the verbatim shares count.
    """

    rouge_l: float
    verbatim: float
    reference_verbatim: float
    longest_run: int
    span: int = SPAN_WORDS

    @property
    def value(self) -> float:
        """The largest of the three shares: what a copy threshold is compared with."""
        return max(self.rouge_l, self.verbatim, self.reference_verbatim)

    def phrase(self) -> str:
        """The measure that gives `value`, in words: 'ROUGE-L 0.93', or 'verbatim share 0.85 (85% of its words lie in
        runs of 8+ words found word for word in the reference)'.

        Returns:
            The phrase naming the largest measure and its value.
        """
        if self.rouge_l >= max(self.verbatim, self.reference_verbatim):
            return f"ROUGE-L {self.rouge_l:.2f}"
        mine = self.verbatim >= self.reference_verbatim
        share = self.verbatim if mine else self.reference_verbatim
        whose, other = ("its", "the reference") if mine else ("the reference's", "it")
        return (
            f"verbatim share {share:.2f} ({share:.0%} of {whose} words lie in runs of {self.span}+ words found word for "
            f"word in {other})"
        )

    def as_dict(self) -> dict[str, float | int]:
        """The figures, for a report.

        Returns:
            rouge_l, verbatim, reference_verbatim and longest_run by name (span left out).
        """
        return {
            "rouge_l": self.rouge_l,
            "verbatim": self.verbatim,
            "reference_verbatim": self.reference_verbatim,
            "longest_run": self.longest_run,
        }


def _windows(words: list[str], span: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + span]) for i in range(len(words) - span + 1)]


def _covered(windows: list[tuple[str, ...]], found: set[tuple[str, ...]], span: int) -> tuple[int, int]:
    """(words covered by the windows that are in `found`, the longest stretch of consecutive such windows in words)."""
    covered = longest = end = 0  # words before `end` are counted already
    run_start = None  # the first window of the current stretch of found windows
    for i, window in enumerate(windows):
        if window in found:
            covered += i + span - max(i, end)
            end = i + span
            if run_start is None:
                run_start = i
            longest = max(longest, i + span - run_start)
        else:
            run_start = None
    return covered, longest


def verbatim_runs(words: list[str], reference: list[str], span: int = SPAN_WORDS) -> tuple[float, float, int]:
    """(the share of `words` covered by `span`-word windows that occur in `reference`, the share of `reference` covered
    by windows that occur in `words`, the longest stretch of `words` whose every window occurs in `reference`), in time
    linear in both lengths."""
    if span < 1:
        raise ValueError("span must be at least 1")
    if len(words) < span or len(reference) < span:
        return 0.0, 0.0, 0
    mine, theirs = _windows(words, span), _windows(reference, span)
    covered, longest = _covered(mine, set(theirs), span)
    if not covered:
        return 0.0, 0.0, 0
    covered_ref, _ = _covered(theirs, set(mine), span)
    return round(covered / len(words), 4), round(covered_ref / len(reference), 4), longest


def closeness(text: str, reference: str, span: int = SPAN_WORDS) -> Closeness:
    """How close `text` is to `reference` (see the module's docstring); 0 on every measure when either has no word.

    Args:
        text: the text measured.
        reference: the reference text it is compared with.
        span: the shortest run of words the verbatim shares count.

    Returns:
        Its ROUGE-L F1, its two verbatim shares and its longest copied run.

    Raises:
        ValueError: `span` is less than 1.
    """
    words, ref = tokens(text), tokens(reference)
    share, ref_share, longest = verbatim_runs(words, ref, span)
    return Closeness(round(rouge_l(words[:MAX_WORDS], ref[:MAX_WORDS]), 4), share, ref_share, longest, span)


def copied_spans(text: str, reference: str, span: int = SPAN_WORDS) -> list[tuple[int, int]]:
    """The stretches of `text` (character offsets, start and end) made of `span`-word windows found word for word in
    `reference`: what a viewer highlights as copied ([] when there is none, or positions cannot be told).

    Args:
        text: the text whose copied stretches are found.
        reference: the reference text it is compared with.
        span: the shortest run of words that counts as copied.

    Returns:
        (start, end) character offsets into `text`, in order; overlapping windows are merged into one stretch.
    """
    where = token_spans(text)
    words = tokens(text)
    ref = tokens(reference)
    if where is None or len(words) < span or len(ref) < span:
        return []
    found = set(_windows(ref, span))
    out: list[tuple[int, int]] = []
    for i, window in enumerate(_windows(words, span)):
        if window in found:
            start, end = where[i][0], where[i + span - 1][1]
            if out and start <= out[-1][1]:  # overlapping windows make one stretch
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
    return out


def copy_reason(part: str, close: Closeness, threshold: float = COPY_THRESHOLD) -> str | None:
    """The reason "response copies its reference's response: ROUGE-L 0.97 >= 0.8" when `close` reaches `threshold`,
    else None (`part`: what was compared, instruction or response).

    Args:
        part: what was compared: "instruction" or "response".
        close: the closeness of that part to the reference's.
        threshold: the closeness at or above which the part copies its reference.

    Returns:
        The removal reason, or None when `close` is below `threshold`.
    """
    if close.value < threshold:
        return None
    return f"{part} copies its reference's {part}: {close.phrase()} >= {threshold:g}"


def first_copy(
    pairs: Iterable[tuple[str, str, str]], threshold: float = COPY_THRESHOLD, span: int = SPAN_WORDS
) -> str | None:
    """The reason of the first (part, text, reference text) triple whose text copies its reference, else None."""
    for part, text, reference in pairs:
        reason = copy_reason(part, closeness(text, reference, span), threshold)
        if reason is not None:
            return reason
    return None
