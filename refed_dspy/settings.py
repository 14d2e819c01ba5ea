"""The base of every config section, and the pattern that tells a secret's name.

Each layer defines the settings it reads as a `Section` (the LM roles' `LMSpec` in clients, for one);
refed_dspy.config composes them into the run's `Config`.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

__all__ = ["SECRET_NAME", "Section", "mask_secrets", "tomllib"]

# a key name that holds a secret: such a value never belongs in a config, a record or a log line
SECRET_NAME = re.compile(r"(api[_-]?key|secret|password|authorization|(^|_)token$)", re.I)


class Section(BaseModel):
    """A table of the config: unknown keys are refused, and types are strict (a boolean is not a number, so
    `size = true` must not mean 1; ints still fill float fields)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


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
