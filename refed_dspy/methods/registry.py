"""The registry of synthesis methods (`synthesis.method` names one)."""

from __future__ import annotations

from refed_dspy.methods.base import Method
from refed_dspy.registry import Registry

METHODS: Registry[Method] = Registry("method", "synthesis.method")


def get_method(name: str) -> Method:
    """The method called `name`; ConfigError naming the available ones otherwise."""
    return METHODS.get(name)
