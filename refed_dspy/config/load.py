"""Reading a config: from a dict, a TOML file (with `--set` overrides) or a run dir; writing one as TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from refed_dspy.config.messages import format_validation_error
from refed_dspy.config.overrides import apply_overrides
from refed_dspy.config.schema import Config
from refed_dspy.config.section import mask_secrets, tomllib
from refed_dspy.errors import ConfigError
from refed_dspy.registry import load_plugins_once


def config_from_dict(data: dict[str, Any], record: bool = False) -> Config:
    """Validate a plain dict into a Config, raising ConfigError with a one-line message (`record`: the config.toml
    of a run dir, whose method and optimizer names need not be registered here). The installed plugins are loaded
    first: a provider one of them adds is known to every command that reads a config."""
    load_plugins_once()
    try:
        return Config.model_validate(data, context={"record": record})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, Config)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, record: bool = False) -> Config:
    """Read a TOML config (or the defaults when `path` is None) and apply `--set` overrides (`record`: `path` is the
    config.toml of a run dir, read by a command that does not run its method; see config_from_dict). A run dir's
    [ray] is left out: where a run was made does not say where a command on it runs (`--ray` does)."""
    data: dict[str, Any] = {}
    if path is not None:
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


def _drop_none(obj: Any) -> Any:
    """TOML has no null: drop None values, in tables and in arrays of tables alike."""
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj if v is not None]
    return obj


def to_toml(config: Config) -> str:
    """The resolved config as TOML (None values omitted, secrets masked)."""
    import tomli_w

    return tomli_w.dumps(_drop_none(mask_secrets(config.model_dump(mode="json"))))
