"""A config's validation errors as one line a user reads: each bad field, what was expected, the nearest key."""

from __future__ import annotations

import difflib
import json
import re
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from refed_dspy.config.lm import reserved_message
from refed_dspy.registry import FILTERS


def _nearest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(options)}"


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    model: type[BaseModel] = root
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def _holds_tables(annotation: Any) -> bool:
    """The type is a section, or an array or table of sections: what TOML writes as a table (`[teacher]`,
    `[[filters]]`, `[prices."MODEL"]`)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _holds_tables(args[0])
    if origin in (list, dict):
        return bool(args) and _holds_tables(args[-1])
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_name(loc: tuple, root: type[BaseModel]) -> str:
    if not loc:
        return "a table"
    model = _model_at(loc[:-1], root)
    field = model.model_fields.get(str(loc[-1])) if model else None
    if field is None:
        return "a valid value"
    if len(loc) < 2 and _holds_tables(field.annotation):
        return "a table"
    return re.sub(r"typing\.|<class '([^']+)'>", r"\1", str(field.annotation)).replace("NoneType", "None")


def dotted(keys: tuple) -> str:
    """A field's place as a TOML key: `teacher.timeout`, `prices."openai/gpt-4o".input_usd_per_mtok`."""
    return ".".join(str(k) if re.fullmatch(r"[A-Za-z0-9_-]+", str(k)) else json.dumps(str(k)) for k in keys)


def describe_errors(errors: list[Any], root: type[BaseModel], prefix: tuple = ()) -> list[str]:
    """One phrase per pydantic error of `root` (Config, or a part of it: a filter's model) validated at `prefix` of the
    config: the field, what was expected, and for an unknown key the nearest valid one.

    Args:
        errors: the errors of a pydantic ValidationError (`err.errors()`).
        root: the model that was validated.
        prefix: the keys of the config at which `root` sits (() for the whole config).

    Returns:
        One phrase per error, in order.
    """
    parts = []
    for e in errors:
        loc = tuple(e["loc"])
        where = dotted((*prefix, *loc))
        if e["type"] == "refed_config":  # already described (a [[filters]] table)
            parts.append(e["ctx"]["message"])
        elif e["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1], root)
            options = list(parent.model_fields) if parent else []
            section = ".".join(str(p) for p in (*prefix, *loc[:-1]))
            place = f" in [{section}]" if section else ""
            parts.append(f"unknown key '{loc[-1]}'{place}{_nearest(str(loc[-1]), options)}")
        elif e.get("input", ...) is None:  # only `--set FIELD=none` makes a None: TOML has no null
            parts.append(f"{where}: cannot be unset (none): expected {_type_name(loc, root)}")
        elif e["type"] in ("literal_error",):
            near = (e.get("ctx") or {}).get("nearest")
            hint = f"; did you mean {near[0]!r}?" if near else ""
            parts.append(f"{where}: {e['msg'].lower()}, got {e.get('input')!r}{hint}")
        elif e["type"] == "missing" and root in FILTERS.values():
            parts.append(
                f"{'.'.join(map(str, prefix))}: filter '{root.model_fields['name'].default}' needs '{loc[-1]}'"
            )
        elif e["type"] == "missing":
            parts.append(f"{where}: needs a value")
        elif e["type"] == "value_error":
            parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
        elif e["type"] == "reserved_extra":  # a key of a role's extra table that the role sets itself
            parts.append(f"{where}: {reserved_message(e['ctx']['key'], dotted((*prefix, *loc[:-1])))}")
        elif e["type"] == "out_of_bounds":  # refed_dspy.config.section.Section: a number past MAX_NUMBER
            parts.append(f"{where}: {e['msg']}")
        elif e["type"] == "finite_number":
            parts.append(f"{where}: must be a finite number, got {e.get('input')!r}")
        elif "greater" in e["type"] or "less" in e["type"]:
            parts.append(f"{where}: {e['msg'].lower()}, got {e.get('input')!r}")
        else:
            parts.append(f"{where}: expected {_type_name(loc, root)}, got {e.get('input')!r}")
    return parts


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """One line naming every bad field of `root` (Config), what was expected, and the nearest valid key.

    Args:
        err: the ValidationError of validating `root`.
        root: the model that was validated.

    Returns:
        'invalid config: ' followed by describe_errors' phrases, joined by '; '.
    """
    return "invalid config: " + "; ".join(describe_errors(err.errors(), root))
