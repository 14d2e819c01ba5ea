"""The paper's data filters and the usual hygiene filters, one module each (see base.py for what a filter is).

Importing this package imports every module in it, and each registers its filter model in FILTERS; the config's
`[[filters]]` table is validated by the registered filter its `name` picks, when the config is validated (so a
filter registered from your own module counts too).
"""

from typing import Any

from refed_dspy.filters.base import UNJUDGED, Filter, FilterResult, apply_chain, reject_counts, text_of, unjudged_ids
from refed_dspy.registry import FILTERS, load_package

load_package(__name__, __path__, skip=("base", "chain"))

# the filters' own functions, for use on samples in Python (bound after their modules are imported)
from refed_dspy.filters.decontaminate import decontaminate  # noqa: E402
from refed_dspy.filters.dedup import dedup  # noqa: E402
from refed_dspy.filters.judge_prefers_improved import judge_prefers_improved  # noqa: E402
from refed_dspy.filters.length import length  # noqa: E402
from refed_dspy.filters.min_score import min_score  # noqa: E402
from refed_dspy.filters.near_duplicates import near_duplicates  # noqa: E402
from refed_dspy.filters.random_subset import random_subset  # noqa: E402
from refed_dspy.filters.reference_copy import reference_copy  # noqa: E402
from refed_dspy.filters.rouge_diversity import rouge_diversity  # noqa: E402
from refed_dspy.filters.superfiltering import superfiltering  # noqa: E402


def make_filter(name: str, **params: Any) -> Filter:
    """The filter called `name` with `params` (pydantic's ValidationError when they do not fit it).

    Args:
        name: a registered filter's name, e.g. "dedup".
        params: the filter's settings, as its `[[filters]]` table takes them.

    Returns:
        The filter, validated.

    Raises:
        ConfigError: no filter is registered as `name`.
        pydantic.ValidationError: `params` do not fit the filter.
    """
    return FILTERS.get(name).model_validate({"name": name, **params})


__all__ = [
    "FILTERS",
    "UNJUDGED",
    "Filter",
    "FilterResult",
    "apply_chain",
    "decontaminate",
    "dedup",
    "judge_prefers_improved",
    "length",
    "make_filter",
    "min_score",
    "near_duplicates",
    "random_subset",
    "reference_copy",
    "reject_counts",
    "rouge_diversity",
    "superfiltering",
    "text_of",
    "unjudged_ids",
]
