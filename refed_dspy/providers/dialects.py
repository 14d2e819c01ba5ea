"""Schema dialects by model: the part of JSON Schema a model's provider takes in `response_format`.

Each provider names its dialect (`Provider.dialect`, `Provider.schema_dialect`): a grammar server (llama.cpp, vLLM,
SGLang, Ollama) enforces every bound; OpenAI's strict mode takes no string lengths; Anthropic takes no numeric, length
or item-count bounds; Gemini takes numeric and item bounds but no string lengths; a provider refed knows nothing of
gets the minimal one. refed_dspy.adapters.dialects moves what a dialect does not take into the descriptions.
"""

from __future__ import annotations

from refed_dspy.providers.registry import dialects, provider_for

# the dialects' names, by rank; this module is imported once every provider module has registered its own
DIALECTS: tuple[str, ...] = tuple(dialects())


def dialect_for(model: str, api_base: str | None) -> tuple[str, str]:
    """The schema dialect for a model and server, and why: (dialect, reason)."""
    dialect, why = provider_for(model).schema_dialect(model, api_base)
    return dialect.name, why
