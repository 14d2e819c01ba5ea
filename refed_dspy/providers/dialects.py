"""Schema dialects: the part of JSON Schema each kind of provider accepts in `response_format`.

Our schemas carry every bound (maxLength, minimum/maximum, minItems/maxItems). Providers differ in
which of these keywords their structured-output modes take: a grammar-based OpenAI-compatible
server (llama.cpp, vLLM, SGLang, Ollama) enforces all of them; OpenAI's strict mode rejects string
lengths; Anthropic rejects numeric, length and item-count bounds; Gemini takes numeric and item
bounds but not string lengths. A keyword a dialect cannot take is removed from the schema and
stated in the property's description instead, so the model still reads the bound, and parsing
checks it in every dialect (see contract.py).
"""

from __future__ import annotations

from urllib.parse import urlparse

from refed_dspy.providers.base import provider_of

DIALECTS = ("full", "openai", "anthropic", "gemini", "minimal")

_BOUNDS = (
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
)
UNSUPPORTED: dict[str, frozenset[str]] = {
    "full": frozenset(),
    "openai": frozenset({"minLength", "maxLength", "uniqueItems"}),
    "anthropic": frozenset(_BOUNDS),  # minItems of 0 or 1 excepted, below
    "gemini": frozenset(
        {"minLength", "maxLength", "pattern", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems"}
    ),
    "minimal": frozenset(_BOUNDS),
}

# providers whose servers compile the whole schema into a decoding grammar
_GRAMMAR_PROVIDERS = ("hosted_vllm", "ollama", "ollama_chat", "lm_studio", "llamafile", "sglang", "vllm")
_OPENAI_PROVIDERS = ("openai", "azure", "azure_ai", "text-completion-openai")
_GEMINI_PROVIDERS = ("gemini", "vertex_ai", "vertex_ai_beta")


def dialect_for(model: str, api_base: str | None) -> tuple[str, str]:
    """The schema dialect for a model and server, and why: (dialect, reason)."""
    provider = provider_of(model)
    host = (urlparse(api_base).hostname or "") if api_base else ""
    if provider in _GRAMMAR_PROVIDERS:
        return "full", f"{provider} compiles the whole schema into a grammar"
    if provider == "anthropic":
        return "anthropic", "Anthropic takes no numeric, length or item-count bounds"
    if provider in _GEMINI_PROVIDERS:
        return "gemini", "Gemini takes no string-length bounds"
    if provider in _OPENAI_PROVIDERS and api_base and provider == "openai" and not host.endswith("openai.com"):
        return (
            "full",
            f"an OpenAI-compatible server at {host or api_base} (llama.cpp, vLLM, SGLang enforce every bound)",
        )
    if provider in _OPENAI_PROVIDERS:
        return "openai", "OpenAI's strict mode takes no string-length bounds"
    return "minimal", f"provider '{provider}': which bounds it takes is unknown, so none are sent"
