"""A method added in one module (toy_method.py, imported here) runs end to end: config, run, records, estimate."""

import importlib
import json
import sys

import pytest
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError
from refed_dspy.methods import METHODS
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.estimate import estimate


@pytest.fixture
def toy():
    """The toy method, registered by importing its module, and unregistered after the test."""
    assert "toy" not in METHODS
    with pytest.raises(ConfigError, match="synthesis.method: input should be 'refed'"):
        load_config(None, ["synthesis.method=toy"])
    sys.modules.pop("toy_method", None)
    module = importlib.import_module("toy_method")
    yield module
    METHODS.unregister("toy")


def test_a_method_in_one_module_runs_end_to_end_estimate_included(toy, server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    over = run_overrides(
        srv, run, 6, **{"synthesis.method": "toy", "seeds.limit": 3, "synthesis.instructions_per_feature": 2}
    )
    config = load_config(None, over)
    e = estimate(config)
    assert srv.state.count == 0  # the estimate calls nothing
    assert set(e.stages) == {"synthesize", "brief"} and e.stages["brief"]["calls"] == 6 and e.work["feedback"] == 0

    summary = synthesize(config)
    assert summary.status == "complete" and summary.samples == 6 and summary.method == "toy"
    assert summary.feedback_collected == 0 and set(summary.usage["by_stage"]) == {"synthesize", "brief"}
    assert summary.usage["by_stage"]["brief"]["calls"] == 6  # one call per sample, as the method says
    records = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {r["meta"]["method"] for r in records} == {"toy"}
    assert all(r["response"] and r["improved_response"] is None for r in records)
    # the requests were the toy's own signature: its output field, and its instruction alone as input
    asked = [x for x in read_log(srv.cfg.log_path) if x["outputs"] == ["brief_answer"]]
    assert len(asked) == 6
    # resuming the finished run makes no call
    n = srv.state.count
    assert synthesize(config).new_samples == 0 and srv.state.count == n
