"""The base of every config section, the types of its path and duration fields, and the pattern that tells a
secret's name.

Each table of the config is a `Section` (refed_dspy.config: the LM roles' `LMSpec`, `[synthesis]`, ...; a filter's
settings in refed_dspy.filters); refed_dspy.config composes them into the run's `Config`.
"""

from __future__ import annotations

import re
import sys
import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from refed_dspy.paths import expand_home

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

__all__ = [
    "MAX_SECONDS",
    "SECRET_NAME",
    "Seconds",
    "Section",
    "UserPath",
    "is_path",
    "mask_secrets",
    "tomllib",
]

# a key name that holds a secret: such a value never belongs in a config, a record or a log line
SECRET_NAME = re.compile(r"(api[_-]?key|secret|password|authorization|(^|_)token$)", re.I)


class Section(BaseModel):
    """A table of the config: unknown keys are refused, and types are strict (a boolean is not a number, so
    `size = true` must not mean 1; ints still fill float fields). Every number is finite: TOML's `inf` and `nan` are
    refused in every field, so a price, a budget or a duration can never turn a cost into NaN or a wait into an
    overflow."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


# a config field that names a file or directory, a leading ~ expanded (refed_dspy.paths); it may also take a name or
# URI that is not a path
UserPath = Annotated[str, AfterValidator(expand_home)]


def is_path(field: FieldInfo) -> bool:
    """The config field is a UserPath (alone, or optional)."""
    inner = [a for a in typing.get_args(field.annotation) if typing.get_origin(a) is Annotated]
    metadata = [*field.metadata, *(m for a in inner for m in a.__metadata__)]
    return any(isinstance(m, AfterValidator) and m.func is expand_home for m in metadata)


MAX_SECONDS = 7 * 24 * 3600  # a week: the longest wait a duration field takes (a clock's wait overflows near 300 years)

# a config field in seconds: a finite number (Section refuses inf and nan) of at most a week; each field says
# whether 0 means something (gt=0 or ge=0)
Seconds = Annotated[float, Field(le=MAX_SECONDS)]


def mask_secrets(obj: Any) -> Any:
    """Replace values of secret-looking keys with '***' (defence in depth; keys never belong here)."""
    if isinstance(obj, dict):
        return {
            k: ("***" if SECRET_NAME.search(k) and k != "api_key_env" and v else mask_secrets(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [mask_secrets(v) for v in obj]
    return obj
