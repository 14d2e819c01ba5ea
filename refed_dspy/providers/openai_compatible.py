"""Servers and services that speak OpenAI's chat format under a prefix of their own.

Their calls go out in the OpenAI chat format to an `api_base` that carries its version path. vLLM's and LM Studio's
servers are local (no key) and compile the whole schema into a decoding grammar; OpenRouter, Together, DeepSeek, Groq
and xAI are hosted, each with its own hosts and key. LiteLLM's in-process vLLM, SGLang and llamafile compile the
schema into a grammar too (refed does not check their request path). None has a batch API refed can use. The hosted
ones serve OpenAI's models under OpenAI's names too: its reasoning models keep their settings there.
"""

from __future__ import annotations

from refed_dspy.providers.base import FULL, Provider, Wire
from refed_dspy.providers.openai import CHAT, openai_sampling
from refed_dspy.providers.registry import PROVIDERS
from refed_dspy.providers.sampling import Sampling


class HostedService(Provider):
    """A hosted service of OpenAI's chat format: OpenAI's reasoning models it serves keep their settings."""

    def sampling(self, model: str) -> Sampling:
        return openai_sampling(model, super().sampling(model))


def _hosted(name: str, title: str, host: str, *keys: str, thoughts_apart: bool = False) -> Provider:
    """A hosted service of OpenAI's chat format, with its own host and key (`keys`: the variables its docs name)."""
    return PROVIDERS.register(
        HostedService(
            name=name,
            title=title,
            prefixes=(name,),
            rank=20,
            hosts=(host,),
            key_names=keys,
            wire=CHAT,
            thoughts_apart=thoughts_apart,
        )
    )


def _grammar_server(name: str, title: str, wire: Wire | None, keyless: bool) -> Provider:
    """A server that compiles the whole schema into a grammar (`wire` None: one whose request path refed does not
    check)."""
    return PROVIDERS.register(
        Provider(
            name=name, title=title, prefixes=(name,), rank=30, keyless=keyless, wire=wire, dialect=FULL, grammar=True
        )
    )


HOSTED_VLLM = _grammar_server("hosted_vllm", "vLLM", CHAT, keyless=True)
LM_STUDIO = _grammar_server("lm_studio", "LM Studio", CHAT, keyless=True)
OPENROUTER = _hosted("openrouter", "OpenRouter", "openrouter.ai", "OPENROUTER_API_KEY", "OR_API_KEY")
TOGETHER = _hosted("together_ai", "Together AI", "api.together.xyz", "TOGETHER_API_KEY", "TOGETHERAI_API_KEY")
DEEPSEEK = _hosted("deepseek", "DeepSeek", "api.deepseek.com", "DEEPSEEK_API_KEY")
GROQ = _hosted("groq", "Groq", "api.groq.com", "GROQ_API_KEY")
XAI = _hosted("xai", "xAI", "api.x.ai", "XAI_API_KEY", thoughts_apart=True)
VLLM = _grammar_server("vllm", "vLLM (in-process)", None, keyless=False)
SGLANG = _grammar_server("sglang", "SGLang", None, keyless=False)
LLAMAFILE = _grammar_server("llamafile", "llamafile", None, keyless=False)
