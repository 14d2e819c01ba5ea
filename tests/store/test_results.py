"""Typed results: attributes, the same JSON as the files the commands write, and reading them by key."""

import json

from conftest import run_overrides
from pydantic import Field

from refed_dspy.config import load_config
from refed_dspy.store.results import Optional, Result
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.summary import RunSummary


class Figures(Result):
    count: int
    yield_: dict = Field(alias="yield")
    extra: dict | None = Optional("only sometimes")


def test_a_result_reads_as_attributes_and_as_its_json():
    f = Figures(**{"count": 3, "yield": {"a": 1}})
    assert f.count == 3 and f["count"] == 3 and f["yield"] == {"a": 1} and f.yield_ == {"a": 1}
    assert "extra" not in f and f.get("extra", "none") == "none" and f.to_json() == {"count": 3, "yield": {"a": 1}}
    assert dict(f) == f.to_json() and list(f) == ["count", "yield"] and len(f) == 2
    g = Figures(count=1, yield_={}, extra={"b": 2})
    assert "extra" in g and g.to_json()["extra"] == {"b": 2}
    try:
        f["nope"]
    except KeyError:
        pass
    else:
        raise AssertionError("an unknown key must raise KeyError")


def test_synthesize_returns_the_summary_it_writes(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    summary = synthesize(load_config(None, run_overrides(srv, run, 4, **{"seeds.limit": 2})))
    assert isinstance(summary, RunSummary) and summary.samples == 4 and summary.status == "complete"
    assert summary.to_json() == json.loads((run / "summary.json").read_text())
    assert summary["usage"]["calls"] == summary.usage["calls"] > 0
