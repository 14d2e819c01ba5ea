"""Cohere's API: refed knows its hosts (its key goes nowhere else); its format and schema dialect are LiteLLM's."""

from __future__ import annotations

from refed_dspy.providers.base import Provider
from refed_dspy.providers.registry import PROVIDERS

COHERE = PROVIDERS.register(
    Provider(
        name="cohere",
        title="Cohere",
        prefixes=("cohere", "cohere_chat"),
        hosts=("api.cohere.com", "api.cohere.ai"),
        key_names=("CO_API_KEY", "COHERE_API_KEY"),
        base_variables=("CO_API_URL",),
    )
)
