"""What refed knows of one provider."""

from __future__ import annotations


def provider_of(model: str) -> str:
    """The provider prefix of a DSPy/LiteLLM model string ('openai' when it has none, as LiteLLM assumes)."""
    return model.split("/", 1)[0] if "/" in model else "openai"
