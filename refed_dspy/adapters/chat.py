"""The chat format: DSPy's `[[ ## field ## ]]` markers, with our memo, contract checks and repairs."""

from __future__ import annotations

from typing import Any

import dspy

from refed_dspy.adapters.base import RepairingAdapter


class RefedChatAdapter(RepairingAdapter, dspy.ChatAdapter):
    """ChatAdapter whose replies are checked against their contract and repaired, never sent to JSONAdapter."""

    mode = "chat"

    def __init__(self, *args: Any, max_repairs: int = 1, **kwargs: Any):
        kwargs.setdefault("use_json_adapter_fallback", False)
        super().__init__(*args, max_repairs=max_repairs, **kwargs)
