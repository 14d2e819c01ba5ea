"""The config a run dir was made with: its config.toml, read as a record of what ran."""

from __future__ import annotations

from refed_dspy.config import Config, config_from_dict
from refed_dspy.config.section import tomllib
from refed_dspy.errors import ConfigError, RunDirError
from refed_dspy.store.rundir import RunDir


def run_config(rundir: RunDir) -> Config:
    """The config a run dir was made with (its config.toml), for a command that reads the run: the method and
    optimizer it names need not be registered in this process."""
    if not rundir.config.exists():
        raise RunDirError(f"{rundir.path} is not a run directory (no config.toml); run `refed synthesize` first")
    try:
        data = tomllib.loads(rundir.config.read_text(encoding="utf-8"))
        data.pop("ray", None)  # where the run was made does not say where a command on it runs
        return config_from_dict(data, record=True)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{rundir.config} is not valid TOML: {err}") from None
