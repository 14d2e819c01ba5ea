"""`refed experiment` on the loopback server in signal mode: demonstrations in a prompt really make answers the judge
scores higher, so an optimizer that adds them must beat the uncompiled program on held-out references, with an
interval above 0; with the signal off, no cell may be called significant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_refed as refed
from loopback_server import read_log

from refed_dspy.errors import ConfigError
from refed_dspy.experiments.experiment import experiment


def write_experiment(tmp_path: Path, teacher, judge, grid: dict, **settings) -> Path:
    """An experiment file: a run config on the two loopback servers plus an [experiment] table."""
    table = {"out": str(tmp_path / "exp"), "repeats": 1, "examples": 48, "test_fraction": 0.4, **settings}
    lines = [
        "[teacher]",
        f"api_base = '{teacher.api_base}'",
        "api_key_env = ''",
        "num_retries = 2",
        "[judge]",
        f"api_base = '{judge.api_base}'",
        "api_key_env = ''",
        "num_retries = 2",
        "[run]",
        f"dir = '{tmp_path / 'run'}'",
        "progress = false",
        "[judging]",
        "criteria = ['helpfulness', 'accuracy']",
        "[optimize]",
        "num_threads = 1",
        "auto = 'light'",
        "max_demos = 2",
        "[experiment]",
        *[f"{k} = {json.dumps(v)}" for k, v in table.items()],
        "[experiment.grid]",
        *[f'"{k}" = {json.dumps(v)}' for k, v in grid.items()],
    ]
    path = tmp_path / "exp.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_optimizers_that_add_demonstrations_beat_the_baseline_on_held_out_references(server_factory, tmp_path):
    teacher, judge = server_factory(signal=True), server_factory(signal=True)
    path = write_experiment(tmp_path, teacher, judge, {"optimize.optimizer": ["bootstrap", "miprov2"]}, repeats=2)
    result = experiment(path)
    assert len(result.cells) == 4 and all(c["status"] == "done" for c in result.cells)
    assert result.examples["test"] >= 12 and result.split["test"] >= 10
    for cell in result.cells:
        d = cell["difference"]
        assert d["significant"] and d["ci_low"] > 0, cell["label"]
        assert cell["test_mean"] > cell["baseline_mean"]
    assert result.champion == result.cells[0]["id"]
    # the test references were never shown to an optimizer: no training or validation example comes from one
    split = json.loads((tmp_path / "exp" / "split.json").read_text())
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    # the usage adds up to what the servers answered
    answered = sum(len([e for e in read_log(s.cfg.log_path) if e.get("status") == 200]) for s in (teacher, judge))
    assert result.usage["calls"] == answered
    md = (tmp_path / "exp" / "experiment.md").read_text()
    assert "| cell | test score | vs baseline [CI] |" in md and "Champion: " in md


def test_without_a_signal_no_cell_is_significant_and_a_second_run_pays_nothing(server_factory, tmp_path):
    teacher, judge = server_factory(), server_factory()
    path = write_experiment(tmp_path, teacher, judge, {"optimize.optimizer": ["bootstrap", "miprov2"]}, repeats=2)
    result = experiment(path)
    assert all(c["status"] == "done" for c in result.cells)
    assert not any(c["difference"]["significant"] for c in result.cells) and result.champion is None
    calls = len(read_log(teacher.cfg.log_path)) + len(read_log(judge.cfg.log_path))
    code, out, err = refed("experiment", "--config", str(path))
    assert code == 0, err
    assert len(read_log(teacher.cfg.log_path)) + len(read_log(judge.cfg.log_path)) == calls  # all cells were done
    assert "test score" in out and "champion: none" in out and "Traceback" not in err


def test_a_bad_experiment_file_is_one_line(server_factory, tmp_path):
    srv = server_factory()
    path = write_experiment(tmp_path, srv, srv, {"optimize.optimizer": []})
    with pytest.raises(ConfigError, match="non-empty list"):
        experiment(path)
    code, _, err = refed("experiment", "--config", str(path))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert read_log(srv.cfg.log_path) == []
