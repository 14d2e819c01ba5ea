"""What decides a run's output: the config's fingerprint, its difference from a run dir's, and its hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from refed_dspy.config.schema import Config
from refed_dspy.config.section import expand_home, is_path

# How refed words a signature's prompt (refed_dspy.adapters.wording); a new wording is a new number, which a run's
# fingerprint, a judging's, an experiment's cells and each record's provenance carry, so that nothing made with other
# prompts is resumed or compared without a word. 1: DSPy's layout (a run dir without the number); 2: each field and
# bound stated once, the schema's text left out where the provider shows the model the schema (issue 54).
# tests/adapters/test_wording.py pins the prompts of each built-in signature to the number.
PROMPT_FORMAT = 2
_BEFORE_VERSIONS = 1  # what a fingerprint written before the number was kept holds

# Fields that change what a run produces. Resuming a run dir with other values here is refused.
_OUTPUT_FIELDS = {
    "teacher": (
        "model",
        "api_base",
        "temperature",
        "max_tokens",
        "reasoning_effort",
        "adapter",
        "schema_dialect",
        "schema_shown",
    ),
    "seeds": ("source", "format", "split", "limit"),
    "synthesis": ("method", "instructions_per_feature", "dedup_rouge_threshold", "seed", "reflection", "program"),
}


_DEFAULTS = Config().model_dump(mode="json")


def fingerprint(config: Config, program_hash: str | None = None) -> dict[str, Any]:
    """The config values that determine a run's outputs (size, budgets and concurrency excluded), the content hash
    of the program the run executes when it is not the built-in one, and the prompt format. The teacher's temperature
    and output limit are those it is sent (the model's own where the config sets none); a field added later is left
    out at its default, so that a config that does not set it keeps its fingerprint."""
    data = config.model_dump(mode="json")
    data["teacher"] = config.teacher.identity("teacher")
    out = {
        section: {k: data[section][k] for k in keys if k in data[section]} for section, keys in _OUTPUT_FIELDS.items()
    }
    # replicas of one model: adding or removing one is the same config, so only the first endpoint counts
    out["teacher"]["api_base"] = config.teacher.primary_api_base
    if program_hash is not None:
        out["program_hash"] = program_hash
    out["prompt_format"] = PROMPT_FORMAT
    return out


def prompt_format_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The line saying a fingerprint (a run's, a judging's) was made with other prompts ([] when not)."""
    before, now = old.get("prompt_format", _BEFORE_VERSIONS), new.get("prompt_format", _BEFORE_VERSIONS)
    return [] if before == now else [f"refed's prompt format: {before} -> {now}"]


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable `section.key: old -> new` lines for fields that differ."""
    out = []
    for section, keys in _OUTPUT_FIELDS.items():
        for key in keys:
            a, b = old.get(section, {}).get(key), new.get(section, {}).get(key)
            if isinstance(a, str) and is_path(Config.model_fields[section].annotation.model_fields[key]):
                a = expand_home(a)  # a run made before `~` was expanded in every path field recorded it as given
            if key not in old.get(section, {}) and b == _DEFAULTS[section][key]:
                continue  # a field added after the run was made, at its default: same output
            if a != b:
                out.append(f"{section}.{key}: {a!r} -> {b!r}")
    # a program's content, wherever it came from; a run made with a program before hashes were recorded is
    # matched by its synthesis.program alone (compared above)
    made_before_hashes = "program_hash" not in old and old.get("synthesis", {}).get("program") is not None
    if not made_before_hashes and old.get("program_hash") != new.get("program_hash"):
        out.append(
            f"program content: {old.get('program_hash') or 'built-in'} -> {new.get('program_hash') or 'built-in'}"
        )
    return out + prompt_format_diff(old, new)


def config_hash(config: Config) -> str:
    """Short stable hash of the output-determining fields."""
    return hashlib.sha256(json.dumps(fingerprint(config), sort_keys=True).encode()).hexdigest()[:12]
