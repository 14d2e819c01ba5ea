"""A synthesis run resolved before any call: `SynthesisPlan`, what synthesis/api.py makes of the config and of what the
caller handed in, and what the run's stage, its run dir and its tracking read instead of the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from refed_dspy.config import Config, LMSpec, RunConfig, SynthesisConfig
from refed_dspy.launch.plan import Launch
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import OnMismatch
from refed_dspy.synthesis.program import RunProgram


@dataclass(frozen=True)
class SynthesisPlan:
    """A synthesis run resolved before any call: its LM (in `launch`), program, references and settings.

    `record` is the config of record (the teacher of record in it, and the program named): what the run dir's
    config.toml and fingerprint, each record's config_hash and MLflow keep of the run. What the run does is read from
    the other fields.
    """

    run_dir: Path
    settings: SynthesisConfig  # [synthesis]
    teacher: LMSpec  # the teacher of record: a teacher handed in is described by its own settings
    program: RunProgram
    references: list[Reference]
    launch: Launch  # the teacher's LM (or Ray's workers), its prices and its transport
    run: RunConfig  # progress and stop settings
    record: Config
    on_mismatch: OnMismatch = "error"  # for a run dir made by another config or program
    show_progress: bool = False
    detach: bool = False  # batch mode: return once the requests are submitted
