"""The registry of filters (`[[filters]] name` names one)."""

from __future__ import annotations

from refed_dspy.filters.base import Filter
from refed_dspy.registry import Registry

FILTERS: Registry[type[Filter]] = Registry("filter", "filters.name")
