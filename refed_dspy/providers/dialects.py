"""Schema dialects by model: the part of JSON Schema a model's provider takes in `response_format`.

Each provider names its dialect (`Provider.dialect`, `Provider.schema_dialect`): a grammar server (llama.cpp, vLLM,
SGLang, Ollama) enforces every bound; OpenAI's strict mode takes no string lengths; Anthropic takes no numeric, length
or item-count bounds; Gemini takes numeric and item bounds but no string lengths; a provider refed knows nothing of
gets the minimal one. refed_dspy.adapters.json_schema moves what a dialect does not take into the descriptions.
"""

from __future__ import annotations

from refed_dspy.providers.registry import dialects, provider_for

# the dialects' names, by rank; this module is imported once every provider module has registered its own
DIALECTS: tuple[str, ...] = tuple(dialects())
# what `schema_shown` of an LM section means, by provider (a config field's description)
SCHEMA_SHOWN_HELP = "Whether the server shows the model the response schema of a json_schema call (and bills it as input tokens), so that the prompt's text states no output: true for a gateway in front of OpenAI's, Azure OpenAI's, Anthropic's or Gemini's models (OpenRouter, a LiteLLM proxy, an OpenAI-compatible host of your own); false for a server that only constrains decoding with it (llama.cpp, vLLM, SGLang, Ollama), where the text states each output's type and bounds. Unset: the provider's word: OpenAI, Azure OpenAI, Anthropic and Gemini show it; an OpenAI-compatible server at another host than api.openai.com is taken for a grammar server, which does not."


def dialect_for(model: str, api_base: str | None) -> tuple[str, str]:
    """The schema dialect for a model and server, and why: (dialect, reason).

    Args:
        model: the DSPy/LiteLLM model string.
        api_base: the server's base URL, or None for the provider's own.

    Returns:
        (dialect name, reason), as the model's provider says (`Provider.schema_dialect`).
    """
    dialect, why = provider_for(model).schema_dialect(model, api_base)
    return dialect.name, why
