"""How our calls talk to an LM: DSPy adapters with memoized system messages."""

from refed_dspy.adapters.chat import RefedChatAdapter

__all__ = ["RefedChatAdapter"]
