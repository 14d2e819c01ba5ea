"""`--set section.key=value`: parsing an override and applying it to a config's dict."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel

from refed_dspy.config.schema import Config
from refed_dspy.errors import ConfigError
from refed_dspy.settings import tomllib

UNSET = ("none", "null")  # `--set FIELD=none`: the field unset (None); TOML itself has no null


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value`; the value is read as TOML when it parses, else as a string. A bare `none` or `null`
    (any case) is None, which unsets an optional field (a quoted `'none'` stays a string)."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    path, raw = _split_assignment(text)
    keys = _key_path(path)
    if not keys or (len(keys) < 2 and keys[0] != "filters"):
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    if raw.strip().lower() in UNSET and not _free_form(keys):
        return keys, None
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return keys, value


def _free_form(keys: list[str]) -> bool:
    """The path leads into a table of free-form values (a role's `extra`), where `none` is a value a provider takes
    (reasoning_effort = "none"), not an unset field."""
    node: Any = Config
    rest = list(keys)
    while rest:
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or rest[0] not in node.model_fields:
            return False  # an unknown key: validation says so
        annotation = node.model_fields[rest.pop(0)].annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        target = (
            next((a for a in typing.get_args(annotation) if a is not type(None)), annotation) if union else annotation
        )
        if typing.get_origin(target) is dict:
            value = typing.get_args(target)[1] if typing.get_args(target) else Any
            if not (isinstance(value, type) and issubclass(value, BaseModel)):
                return bool(rest)  # into the table's values: free-form
            rest = rest[1:]  # a table of sections ([prices."model"]): its key, then that section's fields
            node = value
            continue
        node = target
    return False


def _split_assignment(text: str) -> tuple[str, str]:
    """`path=value` split at the first `=` outside a quoted key (`prices."a=b".x=1`)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "=":
            return text[:i], text[i + 1 :]
    return text, ""


def _key_path(path: str) -> list[str]:
    """The keys of a dotted TOML key: `section.key`, or with quoted parts, `prices."openai/gpt-4.1".input_usd_per_mtok`."""
    path = path.strip()
    if not path:
        return []
    if '"' not in path and "'" not in path:
        return [k.strip() for k in path.split(".") if k.strip()]
    try:
        node: Any = tomllib.loads(f"{path} = 0")
    except tomllib.TOMLDecodeError:
        return []
    keys = []
    while isinstance(node, dict) and len(node) == 1:
        key, node = next(iter(node.items()))
        keys.append(key)
    return keys


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `section.key=value` override applied."""
    data = json.loads(json.dumps(data))
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{key}' is not a table")
            node = child
        node[keys[-1]] = value
    return data
