"""The chat adapter our runs use: DSPy's ChatAdapter with the system message built once per signature.

DSPy rebuilds the system message (field descriptions, JSON schemas of typed outputs, the task
description) on every call, which was about a quarter of the client's CPU per call in
bench/overhead.py. The message depends only on the signature, so it is kept per signature class
and instructions; an optimizer that rewrites instructions makes a new signature class, hence a new entry.
"""

from __future__ import annotations

from typing import Any

import dspy

_MAX_ENTRIES = 256


class RefedChatAdapter(dspy.ChatAdapter):
    """ChatAdapter whose system messages are memoized per (signature, instructions)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._system: dict[tuple[Any, str], str] = {}

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        key = (signature, signature.instructions)
        text = self._system.get(key)
        if text is None:
            text = super().format_system_message(signature)
            if len(self._system) >= _MAX_ENTRIES:
                self._system.clear()
            self._system[key] = text  # a race only computes the same text twice
        return text

    def __deepcopy__(self, memo: dict) -> RefedChatAdapter:
        return self  # stateless but for the memo, which is safe to share
