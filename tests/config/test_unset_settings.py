"""An LM section's temperature and max_tokens are unset by default (the model's own), and reasoning_effort is a new
field: what identifies a config (a run's fingerprint, an experiment's cells and baselines, MLflow's params) is what it
was for a config that sets neither, and says the effort where one is set."""

from __future__ import annotations

import hashlib
import json

from refed_dspy.config import Config, config_hash, fingerprint, fingerprint_diff, load_config
from refed_dspy.experiments.config import baseline_key
from refed_dspy.experiments.config import config_hash as cell_hash
from refed_dspy.quality.judge import judge_fingerprint, judge_fingerprint_diff
from refed_dspy.tracking.mlflow_runs import config_params

# configs/quickstart.toml when those hashes were computed (it names another model now)
QUICKSTART = """
[teacher]
model = "openai/gpt-4o-mini"
temperature = 1.0
max_tokens = 4096

[judge]
model = "openai/gpt-4o-mini"

[synthesis]
method = "refed"
size = 40
instructions_per_feature = 10
concurrency = 16
max_cost_usd = 0.50

[run]
dir = "runs/quickstart"
"""


def test_identities_of_a_config_that_sets_neither_are_what_they_were(tmp_path):
    """The hashes main computed for the defaults and configs/quickstart.toml (when temperature was 1.0, a judge's 0.0,
    and max_tokens 4096 in the config itself), but for the prompt format (issue 54: 2, and every identity carries it,
    so that nothing made with format 1's prompts is resumed or compared without a word): without it, the run's
    fingerprint is what it was, so a run dir made then differs by its prompt format alone; the same file without
    those two lines has the same identities."""
    (tmp_path / "quick.toml").write_text(QUICKSTART)
    (tmp_path / "silent.toml").write_text(QUICKSTART.replace("temperature = 1.0\nmax_tokens = 4096\n", ""))
    default, quick, silent = Config(), load_config(tmp_path / "quick.toml"), load_config(tmp_path / "silent.toml")
    assert silent.teacher.max_tokens is None and silent.teacher.temperature is None
    assert (config_hash(default), cell_hash(default), baseline_key(default)) == (
        "8153cfe61ee3",
        "0557798e9caf3498",
        "8c61ae9b9837",
    )
    for config in (quick, silent):
        assert (config_hash(config), cell_hash(config), baseline_key(config)) == (
            "8153cfe61ee3",
            "d65b0c69bb97a8da",
            "8c61ae9b9837",
        )
    before = fingerprint(default)
    assert before.pop("prompt_format") == 2
    assert hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12] == "baf2e29afedc"
    teacher = fingerprint(default)["teacher"]
    assert (teacher["temperature"], teacher["max_tokens"]) == (1.0, 4096) and "reasoning_effort" not in teacher
    judge = judge_fingerprint(default)
    assert (judge["temperature"], judge["max_tokens"]) == (0.0, 4096) and "reasoning_effort" not in judge
    params = config_params(default)
    assert params["config.teacher.temperature"] == "1.0" and params["config.judge.temperature"] == "0.0"
    assert params["config.teacher.max_tokens"] == "4096" and "config.teacher.reasoning_effort" not in params


def test_a_reasoning_effort_is_in_every_identity_and_its_change_is_said():
    low = load_config(None, ["teacher.model='openai/gpt-5-mini'", "teacher.reasoning_effort='low'"])
    plain = load_config(None, ["teacher.model='openai/gpt-5-mini'"])
    assert fingerprint(low)["teacher"]["reasoning_effort"] == "low"
    assert fingerprint_diff(fingerprint(plain), fingerprint(low)) == ["teacher.reasoning_effort: None -> 'low'"]
    assert fingerprint_diff(fingerprint(low), fingerprint(plain)) == ["teacher.reasoning_effort: 'low' -> None"]
    assert config_hash(low) != config_hash(plain) and cell_hash(low) != cell_hash(plain)
    assert config_params(low)["config.teacher.reasoning_effort"] == "low"
    assert config_params(plain)["config.teacher.temperature"] == "1.0"
    assert config_params(plain)["config.teacher.max_tokens"] == "16000"
    judge_low = load_config(None, ["judge.model='openai/gpt-5-mini'", "judge.reasoning_effort='high'"])
    judge_plain = load_config(None, ["judge.model='openai/gpt-5-mini'"])
    assert judge_fingerprint_diff(judge_fingerprint(judge_low), judge_fingerprint(judge_plain)) == [
        "reasoning_effort: 'high' -> None"
    ]


def test_every_identity_carries_the_prompt_format(monkeypatch):
    """A run's fingerprint, a judging's, an experiment's cells and baselines: each changes with the prompt format, and
    a fingerprint written before it was recorded (format 1) is said to differ by it alone."""
    import refed_dspy.experiments.config as identity

    cfg = Config()
    run, judged = fingerprint(cfg), judge_fingerprint(cfg)
    assert run["prompt_format"] == judged["prompt_format"] == 2
    older = {k: v for k, v in run.items() if k != "prompt_format"}
    assert fingerprint_diff(older, run) == ["refed's prompt format: 1 -> 2"] and fingerprint_diff(run, run) == []
    older_judging = {k: v for k, v in judged.items() if k != "prompt_format"}
    assert judge_fingerprint_diff(older_judging, judged) == ["refed's prompt format: 1 -> 2"]
    cell, base = cell_hash(cfg), baseline_key(cfg)
    monkeypatch.setattr(identity, "PROMPT_FORMAT", 3)
    assert cell_hash(cfg) != cell and baseline_key(cfg) != base
