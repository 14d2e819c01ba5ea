"""refed-dspy: instruction-tuning data synthesis with Reference-Level Feedback, as a DSPy program.

The core (config, records, seeds, store, lm) imports no signatures, programs or optimizers;
`synthesize`, `compare` and `optimize` are loaded on first use.
"""

from refed_dspy.telemetry import set_telemetry

set_telemetry()  # before anything imports MLflow or the Hub: no usage reports unless tracking.telemetry = true

from refed_dspy.config import Config, load_config  # noqa: E402
from refed_dspy.errors import ConfigError, MissingKeyError, RefedError, RunAborted, RunDirError, SeedError  # noqa: E402
from refed_dspy.records import Reference, ReferenceFeedback, SampleRecord  # noqa: E402
from refed_dspy.seeds import load_references, read_references  # noqa: E402

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
    "compare",
    "load_config",
    "load_references",
    "optimize",
    "read_references",
    "synthesize",
]


def __getattr__(name: str):
    if name == "synthesize":
        from refed_dspy.synthesis import synthesize

        return synthesize
    if name == "compare":
        from refed_dspy.compare import compare

        return compare
    if name == "optimize":
        from refed_dspy.optimize_run import optimize

        return optimize
    raise AttributeError(f"module 'refed_dspy' has no attribute {name!r}")
