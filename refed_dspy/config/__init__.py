"""Run configuration: pydantic models for the TOML file, `--set` overrides, fingerprints and error messages.

Every field has a default and a description. Unknown keys are rejected with the nearest
valid key; wrong types name the field and the expected type. API keys never live here:
a spec names the environment variable that holds its key.

The package stands at the bottom of the house, right above refed_dspy.providers (an LM section's schema dialects are
the registered providers'), and imports no method, filter or optimizer: a name the config takes from one of their
registries (synthesis.method, optimize.optimizer, optimize.target, a `[[filters]]` table's name) is checked against the
registry in refed_dspy.registry, which imports the package that fills it on the first question (see that module).
Its modules: section.py (the base of every section, its path and duration types, a path as typed, the registry
check), lm.py (an LM section and its prices), synthesis.py, judging.py (judging, the quality report, benchmarks and
scoring), optimize.py, training.py (`refed train`'s student and loop, `refed evaluate`'s answers and judging) and run.py (the run, Ray, tracking, metrics and the local model: the sections), schema.py
(Config and its fingerprint), messages.py (what a bad value says) and load.py (the file and `--set`). A run dir's own config is read by refed_dspy.store.rundir.run_config.
"""

from refed_dspy.config.judging import Benchmark, JudgingConfig, QualityConfig, ReportConfig, ScoringConfig
from refed_dspy.config.lm import LMSpec, ModelPrice, PriceBook
from refed_dspy.config.load import apply_overrides, config_from_dict, load_config, parse_override, to_toml
from refed_dspy.config.messages import describe_errors, format_validation_error
from refed_dspy.config.optimize import OptimizeConfig
from refed_dspy.config.run import LocalServing, MetricsConfig, RayConfig, RunConfig, TrackingConfig
from refed_dspy.config.schema import Config, config_hash, fingerprint, fingerprint_diff
from refed_dspy.config.section import Registered
from refed_dspy.config.synthesis import BatchConfig, SeedsConfig, SynthesisConfig
from refed_dspy.config.training import EvaluateConfig, TrainConfig

__all__ = [
    "BatchConfig",
    "Benchmark",
    "Config",
    "EvaluateConfig",
    "JudgingConfig",
    "LMSpec",
    "LocalServing",
    "MetricsConfig",
    "ModelPrice",
    "OptimizeConfig",
    "PriceBook",
    "QualityConfig",
    "RayConfig",
    "Registered",
    "ReportConfig",
    "RunConfig",
    "ScoringConfig",
    "SeedsConfig",
    "SynthesisConfig",
    "TrainConfig",
    "TrackingConfig",
    "apply_overrides",
    "config_from_dict",
    "config_hash",
    "describe_errors",
    "fingerprint",
    "fingerprint_diff",
    "format_validation_error",
    "load_config",
    "parse_override",
    "to_toml",
]
