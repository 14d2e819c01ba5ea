"""Which program a synthesis run executes, and how it is named in the run's provenance.

One of: the built-in pipeline of the method; a compiled program named by `synthesis.program` (a file or an
MLflow URI); or a DSPy module passed from Python, either a whole pipeline (`program=`) or only its
per-instruction part (`respond=`). Every program but the built-in one enters the run's fingerprint by its
content hash, so a run dir is never continued by another program without being told to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dspy

from refed_dspy.clients.keys import check_lm_key
from refed_dspy.config import Config
from refed_dspy.errors import ConfigError
from refed_dspy.methods import Method
from refed_dspy.programs.parts import check_pipeline, with_open_parts
from refed_dspy.programs.saved import PYTHON_SCHEME, load_program
from refed_dspy.synthesis.program_origin import program_origin
from refed_dspy.synthesis.provenance import program_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunProgram:
    """The pipeline a run executes. `identity`: where it came from; `hash`: its content; `builtin`: the method's own."""

    program: dspy.Module
    identity: str
    hash: str
    builtin: bool
    threaded: tuple[str, ...] = ()  # parts with no aforward, run in worker threads
    origin: dict | None = None  # the experiment and cell that made it (synthesis.program_origin)

    @property
    def fingerprint_hash(self) -> str | None:
        """What the run's fingerprint holds: the hash of any program but the built-in one."""
        return None if self.builtin else self.hash


def resolve_program(
    config: Config, method: Method, program: dspy.Module | None = None, respond: dspy.Module | None = None
) -> tuple[RunProgram, Config]:
    """The program of this run, checked before any call (an LM pinned to one of its predictors sends its key only to
    its provider's hosts: KeyProviderError), and `config` with `synthesis.program` naming it (`python:<Class>` for an
    object from Python, which config.toml then records)."""

    syn = config.synthesis
    given = [name for name, value in (("program=", program), ("respond=", respond)) if value is not None]
    origin = None
    if len(given) > 1:
        raise ConfigError("give either program= (a whole pipeline) or respond= (its per-instruction part), not both")
    if given and syn.program and not syn.program.startswith(PYTHON_SCHEME):
        raise ConfigError(
            f"{given[0]} and synthesis.program = {syn.program!r} both name the program to run; give one of them"
        )
    if program is not None or respond is not None:
        obj = program if program is not None else respond
        if not isinstance(obj, dspy.Module):
            raise ConfigError(f"{given[0]} takes a DSPy module, not a {type(obj).__name__}")
        pipeline = with_open_parts(program) if program is not None else method.build_pipeline(syn, respond=respond)
        identity = f"{PYTHON_SCHEME}{type(obj).__module__}.{type(obj).__qualname__}"
        builtin = False
        config = config.model_copy(update={"synthesis": syn.model_copy(update={"program": identity})})
    elif syn.program:
        # an MLflow URI resolves against tracking.mlflow_uri whether or not this run is tracked
        pipeline, identity = load_program(syn.program, method, config.tracking.mlflow_uri, syn)
        builtin = False
        origin = program_origin(syn.program, config.tracking.mlflow_uri)
    else:
        pipeline = method.build_pipeline(syn)
        identity = f"refed_dspy.programs.{type(pipeline).__name__}"
        builtin = True
    threaded = check_pipeline(pipeline, method, what=f"program {identity}")
    for name, predictor in pipeline.named_predictors():  # an LM pinned to a predictor: its key, to its own hosts only
        if isinstance(getattr(predictor, "lm", None), dspy.BaseLM):
            check_lm_key(predictor.lm, f"program {identity}: {name}.lm")
    if threaded:
        log.warning(
            "program %s: %s %s no aforward; %s forward runs in worker threads",
            identity,
            " and ".join(threaded),
            "has" if len(threaded) == 1 else "have",
            "its" if len(threaded) == 1 else "their",
        )
    return RunProgram(pipeline, identity, program_hash(pipeline), builtin, tuple(threaded), origin), config
