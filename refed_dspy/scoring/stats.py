"""The statistics of one instruction-response pair, from the two forward passes of a causal LM (pure arithmetic).

Reflection-Tuning (Li et al. 2023) judges data with statistics a model computes on the text itself; Superfiltering
(Li et al. 2024) showed that a small model ranks data by them as a large one does. For a pair (x, y):

- instruction perplexity: exp of the mean negative log-likelihood of x's tokens (read from the conditional pass,
  where x follows only the chat template's opening);
- response perplexity: of y's tokens alone, as an assistant's turn with no question before it;
- response perplexity given the instruction: of y's tokens after x (the conditional pass);
- IFD (Instruction-Following Difficulty): the last over the one before. Below 1 the instruction helps predict the
  response; at 1 or above it does not (a response to another question, or one that ignores the instruction);
- coherence: the cosine similarity of an embedding of x and one of y (a sentence-embedding model's, else the mean of
  the scorer's own last hidden states over each text's tokens, which sit closer together: compare like with like).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class PassResult:
    """What one forward pass gives: the mean negative log-likelihood of the response's tokens and how many there were,
    the instruction's (a conditional pass only), whether a text was cut at the token limit, and the mean last hidden
    state over the instruction's tokens (conditional pass) or the response's (alone), when the backend gives them."""

    response_nll: float
    response_tokens: int
    instruction_nll: float | None = None
    instruction_tokens: int = 0
    truncated: bool = False
    pooled: tuple[float, ...] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PairScore:
    """The statistics of one pair (see the module docstring); `coherence` is None when no embedding was available."""

    instruction_ppl: float
    response_ppl: float
    response_ppl_given_instruction: float
    ifd: float
    coherence: float | None
    instruction_tokens: int
    response_tokens: int
    truncated: bool

    def figures(self, prefix: str = "") -> dict[str, float | None]:
        """The five statistics by name (each name after `prefix`), rounded for a file or a table.

        Args:
            prefix: put before each name, e.g. "draft_".

        Returns:
            instruction_ppl, response_ppl, response_ppl_given_instruction, ifd and coherence, rounded to 4 places
                (coherence None when there is none).
        """
        out = asdict(self)
        keep = ("instruction_ppl", "response_ppl", "response_ppl_given_instruction", "ifd", "coherence")
        return {f"{prefix}{k}": (None if out[k] is None else round(out[k], 4)) for k in keep}


def perplexity(nll: float) -> float:
    """exp(mean negative log-likelihood), capped at float's range."""
    return math.exp(min(nll, 700.0))


def cosine(a: Sequence[float] | None, b: Sequence[float] | None) -> float | None:
    """The cosine similarity of two vectors; None when one is missing or zero."""
    if a is None or b is None:
        return None
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else None


def pair_score(conditional: PassResult, alone: PassResult, coherence: float | None) -> PairScore:
    """A pair's statistics from its conditional pass (instruction, then response) and its response alone.

    Args:
        conditional: the pass of the instruction followed by the response.
        alone: the pass of the response alone.
        coherence: the cosine similarity of the instruction's and the response's embeddings, or None.

    Returns:
        The pair's three perplexities, IFD, coherence, token counts, and whether either pass was cut at the token limit.
    """
    given = perplexity(conditional.response_nll)
    plain = perplexity(alone.response_nll)
    return PairScore(
        instruction_ppl=perplexity(conditional.instruction_nll or 0.0),
        response_ppl=plain,
        response_ppl_given_instruction=given,
        ifd=given / plain if plain else math.inf,
        coherence=coherence,
        instruction_tokens=conditional.instruction_tokens,
        response_tokens=conditional.response_tokens,
        truncated=conditional.truncated or alone.truncated,
    )


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The probability that a positive scores above a negative (ties count half): how well a statistic ranks.

    Args:
        positives: the statistic's values on the positive examples.
        negatives: its values on the negative examples.

    Returns:
        The AUC, from 0 to 1.

    Raises:
        ValueError: `positives` or `negatives` is empty.
    """
    if not positives or not negatives:
        raise ValueError("auc needs positives and negatives")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))
