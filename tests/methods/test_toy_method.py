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


def test_a_plugin_package_registers_its_method_and_a_run_dir_reads_without_it(tmp_path):
    """A package declares its module in the entry-point group refed_dspy.plugins (here: toy_method); a broken one is
    one ConfigError line. A run dir made with a method this process does not know still reads (judge, report and
    export do not run the method)."""
    from importlib.metadata import EntryPoint

    from refed_dspy.registry import PLUGIN_GROUP, load_plugins
    from refed_dspy.store.rundir import RunDir, run_config

    sys.modules.pop("toy_method", None)
    try:
        assert load_plugins([EntryPoint(name="toy", value="toy_method", group=PLUGIN_GROUP)]) == ["toy"]
        assert "toy" in METHODS and load_config(None, ["synthesis.method=toy"]).synthesis.method == "toy"
    finally:
        METHODS.unregister("toy")
    with pytest.raises(ConfigError, match="the refed plugin 'broken' .* does not load: ModuleNotFoundError"):
        load_plugins([EntryPoint(name="broken", value="no_such_module_here", group=PLUGIN_GROUP)])
    (tmp_path / "config.toml").write_text('[synthesis]\nmethod = "toy"\n')
    assert run_config(RunDir(tmp_path)).synthesis.method == "toy"  # a record of what ran
    with pytest.raises(ConfigError, match="synthesis.method: input should be"):
        load_config(tmp_path / "config.toml")  # to run it, the method must be known


def test_switches_that_would_pay_for_unused_feedback_are_refused():
    from refed_dspy.methods import ReferenceSynthesisMethod

    with pytest.raises(TypeError, match="set critique_reference or sample_feedback, not both"):

        class Both(ReferenceSynthesisMethod):
            name = "both_feedbacks"
            critique_reference = True
            sample_feedback = True

    with pytest.raises(TypeError, match="need improve = True"):

        class NoImprover(ReferenceSynthesisMethod):
            name = "no_improver"
            critique_reference = True
            improve = False

    assert "both_feedbacks" not in METHODS and "no_improver" not in METHODS
