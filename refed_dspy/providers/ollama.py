"""Ollama: a local server, no key. Its `api_base` is the host (http://localhost:11434), passed on as written; it
compiles the whole schema into a decoding grammar, so every bound is enforced."""

from __future__ import annotations

from refed_dspy.providers.base import FULL, Provider
from refed_dspy.providers.registry import PROVIDERS

OLLAMA = PROVIDERS.register(
    Provider(
        name="ollama",
        title="Ollama",
        prefixes=("ollama", "ollama_chat"),
        rank=6,
        example="ollama_chat/<name>",
        keyless=True,
        base_form="host",
        dialect=FULL,
        grammar=True,
    )
)
