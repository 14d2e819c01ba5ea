"""Mistral's API: refed knows its host (its key goes nowhere else); its format and schema dialect are LiteLLM's."""

from __future__ import annotations

from refed_dspy.providers.base import Provider
from refed_dspy.providers.registry import PROVIDERS

MISTRAL = PROVIDERS.register(
    Provider(
        name="mistral",
        title="Mistral",
        prefixes=("mistral",),
        hosts=("api.mistral.ai",),
        key_names=("MISTRAL_API_KEY",),
    )
)
