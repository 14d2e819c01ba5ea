"""refed-dspy: instruction-tuning data synthesis with Reference-Level Feedback, as a DSPy program.

The core (config, records, seeds, store, lm) imports no signatures, programs or optimizers;
`synthesize`, `compare`, `optimize`, `build_lm` and `make_metric` are loaded on first use (and listed by `dir`).
"""

from refed_dspy.tracking.telemetry import set_telemetry

set_telemetry()  # before anything imports MLflow or the Hub: no usage reports unless tracking.telemetry = true

from refed_dspy.config import Config, load_config  # noqa: E402
from refed_dspy.errors import ConfigError, MissingKeyError, RefedError, RunAborted, RunDirError, SeedError  # noqa: E402
from refed_dspy.store.records import Reference, ReferenceFeedback, SampleRecord  # noqa: E402
from refed_dspy.store.seeds import load_references, read_references  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "MissingKeyError",
    "RefedError",
    "Reference",
    "ReferenceFeedback",
    "RunAborted",
    "RunDirError",
    "SampleRecord",
    "SeedError",
    "build_lm",
    "compare",
    "load_config",
    "load_references",
    "make_metric",
    "optimize",
    "read_references",
    "synthesize",
]


def __getattr__(name: str):
    if name == "synthesize":
        from refed_dspy.synthesis.api import synthesize

        return synthesize
    if name == "compare":
        from refed_dspy.experiments.compare import compare

        return compare
    if name == "optimize":
        from refed_dspy.experiments.optimize import optimize

        return optimize
    if name == "build_lm":
        from refed_dspy.clients.lm import build_lm

        return build_lm
    if name == "make_metric":
        from refed_dspy.optimizers.metrics import make_metric

        return make_metric
    raise AttributeError(f"module 'refed_dspy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
