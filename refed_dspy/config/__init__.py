"""Run configuration: pydantic models for the TOML file, `--set` overrides, and error messages.

Every field has a default and a description. Unknown keys are rejected with the nearest
valid key; wrong types name the field and the expected type. API keys never live here:
a spec names the environment variable that holds its key.
"""

from refed_dspy.config.benchmarks import Benchmark
from refed_dspy.config.fingerprint import config_hash, fingerprint, fingerprint_diff
from refed_dspy.config.judging import JudgingConfig, QualityConfig, ReportConfig
from refed_dspy.config.lm import LMSpec
from refed_dspy.config.load import config_from_dict, load_config, to_toml
from refed_dspy.config.local import LocalServing
from refed_dspy.config.messages import describe_errors, format_validation_error
from refed_dspy.config.names import Registered
from refed_dspy.config.optimize import OptimizeConfig
from refed_dspy.config.overrides import apply_overrides, parse_override
from refed_dspy.config.prices import ModelPrice, PriceBook
from refed_dspy.config.run import RayConfig, RunConfig, TrackingConfig
from refed_dspy.config.schema import Config
from refed_dspy.config.synthesis import BatchConfig, SeedsConfig, SynthesisConfig

__all__ = [
    "BatchConfig",
    "Benchmark",
    "Config",
    "JudgingConfig",
    "LMSpec",
    "LocalServing",
    "ModelPrice",
    "OptimizeConfig",
    "PriceBook",
    "QualityConfig",
    "RayConfig",
    "Registered",
    "ReportConfig",
    "RunConfig",
    "SeedsConfig",
    "SynthesisConfig",
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
