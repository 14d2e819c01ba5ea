"""Fireworks AI: refed knows its host (its key goes nowhere else); its format and schema dialect are LiteLLM's."""

from __future__ import annotations

from refed_dspy.providers.base import Provider
from refed_dspy.providers.registry import PROVIDERS

FIREWORKS = PROVIDERS.register(
    Provider(
        name="fireworks_ai",
        title="Fireworks AI",
        prefixes=("fireworks_ai",),
        hosts=("api.fireworks.ai",),
        key_names=("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY"),
    )
)
