"""A model name LiteLLM's price map does not know but is close to one it does (a likely typo) gets its did-you-mean
whatever the budget: a refusal under a cost budget (as before), one line before the run without one (issue 69, item 9).
A model of one's own (nothing close) and a model behind a local server stay quiet."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from cli_helpers import sets
from conftest import run_overrides

from refed_dspy.config import load_config
from refed_dspy.config.lm import LMSpec, price_note
from refed_dspy.errors import ConfigError
from refed_dspy.launch.plan import launch

NOTE = (
    "teacher model 'openai/gpt-4o-minii' is not in the price map (did you mean 'openai/gpt-4o-mini'?); costs will be "
    "unknown (set teacher.input_usd_per_mtok and teacher.output_usd_per_mtok to price it)"
)


def test_the_note_names_the_model_meant_only_where_one_is_close():
    assert price_note(LMSpec(model="openai/gpt-4o-minii"), "teacher") == NOTE
    assert price_note(LMSpec(model="openai/gpt-4o-mini"), "teacher") is None  # priced
    assert price_note(LMSpec(model="openai/my-finetune-7"), "teacher") is None  # nothing close: a model of one's own
    priced = LMSpec(model="openai/gpt-4o-minii", input_usd_per_mtok=1, output_usd_per_mtok=2)
    assert price_note(priced, "teacher") is None
    for base in ("http://127.0.0.1:8000/v1", "http://localhost:8080/v1", "http://192.168.1.5:8000/v1"):
        assert price_note(LMSpec(model="openai/gpt-4o-minii", api_base=base), "teacher") is None
    public = LMSpec(model="openai/gpt-4o-minii", api_base="https://api.openai.com/v1")
    assert price_note(public, "judge") == NOTE.replace("teacher", "judge")


def test_without_a_budget_the_run_is_launched_and_the_typo_said_once(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0000")
    config = load_config(None, [f"run.dir='{tmp_path / 'run'}'", "teacher.model='openai/gpt-4o-minii'"])
    with caplog.at_level(logging.INFO, logger="refed_dspy"), launch(config, "teacher", None) as plan:
        assert plan.lm is not None  # built: the run goes on
    said = [r for r in caplog.records if "price map" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in said] == [(logging.WARNING, NOTE)]


def test_under_a_budget_it_stays_a_refusal_and_nothing_else_is_said(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0000")
    overrides = [f"run.dir='{tmp_path / 'run'}'", "teacher.model='openai/gpt-4o-minii'", "synthesis.max_cost_usd=1"]
    config = load_config(None, overrides)
    with caplog.at_level(logging.INFO, logger="refed_dspy"), pytest.raises(ConfigError) as err:
        launch(config, "teacher", None)
    assert "did you mean 'openai/gpt-4o-mini'?" in str(err.value)
    assert not [r for r in caplog.records if "price map" in r.getMessage()]


def test_a_model_behind_a_local_server_runs_without_a_word_of_prices(server_factory, tmp_path):
    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 2) + ["teacher.model='openai/gpt-4o-minii'", "seeds.limit=1"]
    proc = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "synthesize", *sets(over)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "price map" not in proc.stderr and "did you mean" not in proc.stderr


def test_optimize_says_it_of_the_lms_it_builds_without_a_budget(monkeypatch, caplog, tmp_path):
    from refed_dspy.optimizers.plan import Given, lms_of_record

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0000")
    overrides = [f"run.dir='{tmp_path / 'run'}'", "teacher.model='openai/gpt-4o-minii'"]
    with caplog.at_level(logging.INFO, logger="refed_dspy"):
        lms_of_record(load_config(None, overrides), Given(), "bootstrap")
    assert [r.getMessage() for r in caplog.records if "price map" in r.getMessage()] == [NOTE]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="refed_dspy"), pytest.raises(ConfigError, match="did you mean"):
        lms_of_record(load_config(None, [*overrides, "optimize.max_cost_usd=1"]), Given(), "bootstrap")
    assert not [r for r in caplog.records if "price map" in r.getMessage()]
