"""refed-dspy: instruction-tuning data synthesis with Reference-Level Feedback, as a DSPy program.

The public names below are the package's facade. The exceptions load with the package; the rest load on first use,
so `import refed_dspy` takes milliseconds (the `refed` command installs its signal handlers right after it) and
`refed --help` does not import DSPy (`dir` lists them all).
"""

import importlib

from refed_dspy.tracking.telemetry import set_telemetry

set_telemetry()  # before anything imports MLflow or the Hub: no usage reports unless tracking.telemetry = true

from refed_dspy.errors import (  # noqa: E402
    ConfigError,
    EndpointError,
    KeyProviderError,
    MissingKeyError,
    RefedError,
    RunAborted,
    RunDirError,
    RunInterrupted,
    SeedError,
)

__version__ = "0.1.0"

# public name -> the module that defines it (loaded on first use)
_LAZY = {
    "Reference": "refed_dspy.store.records",
    "ReferenceFeedback": "refed_dspy.store.records",
    "SampleRecord": "refed_dspy.store.records",
    "load_references": "refed_dspy.store.seeds",
    "read_references": "refed_dspy.store.seeds",
    "Config": "refed_dspy.config",
    "load_config": "refed_dspy.config",
    "synthesize": "refed_dspy.synthesis.api",
    "compare": "refed_dspy.experiments.compare",
    "optimize": "refed_dspy.optimizers.run",
    "experiment": "refed_dspy.experiments.experiment",
    "build_lm": "refed_dspy.clients.lm",
    "make_metric": "refed_dspy.optimizers.metrics",
    "estimate": "refed_dspy.synthesis.estimate",
    "judge_run": "refed_dspy.quality.judge",
    "meta_eval": "refed_dspy.quality.meta_eval",
    "filter_run": "refed_dspy.quality.filter_run",
    "build_report": "refed_dspy.quality.report",
    "score_source": "refed_dspy.quality.statistics",
    "export_run": "refed_dspy.export.run",
    "train_student": "refed_dspy.training.fine_tune",
    "evaluate_students": "refed_dspy.training.evaluate",
    "run_status": "refed_dspy.view.status",
}

__all__ = [
    "Config",
    "ConfigError",
    "EndpointError",
    "KeyProviderError",
    "MissingKeyError",
    "RefedError",
    "Reference",
    "ReferenceFeedback",
    "RunAborted",
    "RunDirError",
    "RunInterrupted",
    "SampleRecord",
    "SeedError",
    "build_lm",
    "build_report",
    "compare",
    "estimate",
    "evaluate_students",
    "experiment",
    "export_run",
    "filter_run",
    "judge_run",
    "load_config",
    "load_references",
    "make_metric",
    "meta_eval",
    "optimize",
    "read_references",
    "run_status",
    "score_source",
    "synthesize",
    "train_student",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refed_dspy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
