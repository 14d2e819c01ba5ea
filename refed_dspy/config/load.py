"""Reading a config: from a dict, a TOML file (with `--set` overrides) or a run dir; writing one as TOML.

`--set section.key=value`: parsing an override and applying it to a config's dict (`apply_overrides`); and what a
layer of a config (`--set`, an experiment file over its base, an experiment's grid cell) leaves behind of the layer
below when it puts another model in a role (`forget_replaced_models`).
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from refed_dspy.config.lm import LMSpec
from refed_dspy.config.messages import format_validation_error
from refed_dspy.config.schema import Config
from refed_dspy.config.section import mask_secrets, tomllib
from refed_dspy.errors import ConfigError
from refed_dspy.registry import load_plugins_once

log = logging.getLogger(__name__)


def config_from_dict(data: dict[str, Any], record: bool = False) -> Config:
    """Validate a plain dict into a Config, raising ConfigError with a one-line message (`record`: the config.toml
    of a run dir, whose method and optimizer names need not be registered here). The installed plugins are loaded
    first: a provider one of them adds is known to every command that reads a config.

    Args:
        data: the config as a plain dict (a TOML document read into one).
        record: the dict is a run dir's config.toml, whose method and optimizer names need not be registered.

    Returns:
        The validated Config.

    Raises:
        ConfigError: the dict is not a valid config; the message names every bad field.
    """
    load_plugins_once()
    try:
        return Config.model_validate(data, context={"record": record})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, Config)) from None


def load_config(
    path: str | Path | Mapping[str, Any] | None = None, overrides: list[str] | None = None, record: bool = False
) -> Config:
    """Read a TOML config (or the defaults when `path` is None) and apply `--set` overrides (`record`: `path` is the
    config.toml of a run dir, read by a command that does not run its method; see config_from_dict). A run dir's
    [ray] is left out: where a run was made does not say where a command on it runs (`--ray` does).

    Args:
        path: the TOML file to read; a mapping of its tables instead (`{"teacher": {"model": ...}}`); None for the
            defaults.
        overrides: `section.key=value` strings, as `--set` takes them, applied over the file.
        record: `path` is the config.toml of a run dir (see config_from_dict).

    Returns:
        The validated Config.

    Raises:
        ConfigError: the file is missing, unreadable or not valid TOML, an override is malformed, or the result is not
            a valid config.
    """
    data: dict[str, Any] = {}
    if isinstance(path, Mapping):
        data = json.loads(json.dumps(path, default=_as_toml_value))  # a copy, in the values a TOML file holds
    elif not isinstance(path, (str, Path, type(None))):
        raise ConfigError(
            f"a config is a TOML file's path, a mapping of its tables or a Config, not {type(path).__name__}"
        )
    elif path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read config file {p}: {err}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {p} is not valid TOML: {err}") from None
        if record:
            data.pop("ray", None)
    return config_from_dict(apply_overrides(data, overrides or []), record=record)


# what a function of the Python API takes as its config: a Config, a TOML file's path, or a mapping of its tables
ConfigLike = Config | str | Path | Mapping[str, Any]


def as_config(config: ConfigLike | None, overrides: list[str] | None = None) -> Config:
    """What a function of the Python API takes as its config, as a Config: one given as it is (overrides refused:
    they would be lost), else `load_config(config, overrides)`."""
    if not isinstance(config, Config):
        return load_config(config, overrides)
    if overrides:
        raise ConfigError(
            "overrides apply to a config file, a mapping or the defaults; apply them to a Config yourself "
            "(load_config(path, overrides))"
        )
    return config


def given_config(config: ConfigLike | None) -> Config | None:
    """`as_config(config)` for a function whose None means a config of its own choosing (a run dir's config.toml)."""
    return None if config is None else as_config(config)


def _as_toml_value(value: Any) -> Any:
    """A value of a config mapping JSON cannot write, as its TOML value: a path as its text, an inner mapping as a
    table; ConfigError for anything else."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(f"a config mapping holds {type(value).__name__} {str(value)[:60]!r}, which no config field takes")


def _drop_none(obj: Any) -> Any:
    """TOML has no null: drop None values, in tables and in arrays of tables alike."""
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj if v is not None]
    return obj


def to_toml(config: Config, say_unset: bool = False) -> str:
    """The resolved config as TOML (None values omitted, secrets masked).

    Args:
        config: the config to write.
        say_unset: under each top-level section's header, a comment naming its fields left unset (TOML has no
            null), so that a reader sees every field there is.

    Returns:
        The TOML text.
    """
    import tomli_w

    data = mask_secrets(config.model_dump(mode="json"))
    text = tomli_w.dumps(_drop_none(data))
    if not say_unset:
        return text
    text = "\n" + text  # each section's header then starts a line after a newline, the first one too
    for name, section in data.items():
        unset = [key for key, value in section.items() if value is None] if isinstance(section, dict) else []
        if unset:
            said = textwrap.wrap(f"unset: {', '.join(unset)}", 100, initial_indent="# ", subsequent_indent="#   ")
            text = text.replace(f"\n[{name}]\n", f"\n[{name}]\n" + "".join(f"{line}\n" for line in said), 1)
    return text[1:]


UNSET = ("none", "null")  # `--set FIELD=none`: the field unset (None); TOML itself has no null
ROLES = ("teacher", "judge")
# what a role's section says of its model rather than of its server: the model's limits, sampling, prices, tier and
# provider-specific arguments. A hosted teacher put over the local model's section took the local model's 384-token
# limit (64 of 64 examples truncated) and its zero prices (a cost budget that never binds)
MODEL_SETTINGS = (
    "temperature",
    "max_tokens",
    "reasoning_effort",
    "extra",
    "input_usd_per_mtok",
    "cached_input_usd_per_mtok",
    "output_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "tier_prices",
    "service_tier",
    "flex_fallback",
)


def forget_replaced_models(below: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`below` (a config dict) as a layer `over` it leaves it: a role whose model `over` replaces with another keeps
    none of its MODEL_SETTINGS from `below` (the new model gets its own defaults, or what `over` sets); its server, key
    and the rest stay. Pure; `below` is not changed."""
    out = dict(below)
    for role in ROLES:
        was, new = below.get(role), over.get(role)
        if not isinstance(was, dict) or not isinstance(new, dict) or "model" not in new:
            continue
        if new["model"] != was.get("model", LMSpec.model_fields["model"].default):
            out[role] = {k: v for k, v in was.items() if k not in MODEL_SETTINGS}
    return out


def left_behind(below: dict[str, Any], kept: dict[str, Any], over: dict[str, Any]) -> list[str]:
    """One line per role whose settings `forget_replaced_models` left behind (`kept` from `below`) and `over` does not
    set again: what a user who changed only the model would not otherwise know."""
    lines = []
    for role in ROLES:
        was, now = below.get(role), kept.get(role)
        gone = sorted(
            k
            for k, v in (was or {}).items()
            if k not in (now or {}) and k not in over.get(role, {}) and not _default_setting(k, v)
        )
        if gone:
            lines.append(
                f"{role}.model set to {over[role]['model']!r}: the {role} settings of "
                f"{was.get('model', LMSpec.model_fields['model'].default)!r} are left "
                f"behind ({', '.join(gone)}); set them again with --set to keep them"
            )
    return lines


def _default_setting(name: str, value: Any) -> bool:
    """Whether `value` is what an LM section holds for `name` when nothing sets it (a config.toml writes those too):
    nothing is lost when it is left behind."""
    field = LMSpec.model_fields.get(name)
    if field is None:
        return False
    default = field.default_factory() if field.default_factory is not None else field.default
    return value == default or (value in (None, {}, []) and default in (None, {}, []))


def nested(assignments: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """The dict that setting each (key path, value) in turn on an empty one makes (later ones win)."""
    out: dict[str, Any] = {}
    for keys, value in assignments:
        node = out
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value`; the value is read as TOML when it parses, else as a string. A bare `none` or `null`
    (any case) is None, which unsets an optional field (a quoted `'none'` stays a string).

    Args:
        text: one override, as `--set` takes it: `section.key=value`, the key dotted and possibly quoted.

    Returns:
        (key path, value): the keys from the section down, and the parsed value.

    Raises:
        ConfigError: `text` has no `=`, or its key is not `section.key` (or a bare `filters`).
    """
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
    """Return a copy of `data` with each `section.key=value` override applied, the overrides taken as one layer over
    `data` (forget_replaced_models: `--set teacher.model=...` leaves the file's teacher limits and prices behind).

    Args:
        data: a config dict; it is not changed.
        overrides: `section.key=value` strings, as `--set` takes them, applied in order (later ones win).

    Returns:
        A deep copy of `data` with the overrides set.

    Raises:
        ConfigError: an override is malformed, or its key path runs through a value that is not a table.
    """
    parsed = [(text, *parse_override(text)) for text in overrides]
    layer = nested([(k, v) for _, k, v in parsed])
    kept = forget_replaced_models(data, layer)
    for line in left_behind(data, kept, layer):
        log.info(line)
    data = json.loads(json.dumps(kept))
    for text, keys, value in parsed:
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{key}' is not a table")
            node = child
        node[keys[-1]] = value
    return data
