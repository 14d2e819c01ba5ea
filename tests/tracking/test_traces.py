"""MLflow traces of a run's DSPy calls (issue 55, item 5): an optimization with tracking.log_traces stores them (it
stored none: DSPy's context copied before autologging hid MLflow's callback), a synthesis too, sampled, keys masked."""

from __future__ import annotations

import json

import mlflow
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.optimizers.run import optimize
from refed_dspy.store.jsonl import read_json
from refed_dspy.synthesis.api import synthesize

PLANTED = "sk-planted-traces-5b4a39281706"
SMALL = {"seeds.limit": 4, "synthesis.instructions_per_feature": 2}


def _traced(tmp_path, ratio: float) -> list[str]:
    return [
        "tracking.enabled=true",
        "tracking.log_traces=true",
        f"tracking.trace_sample_ratio={ratio}",
        f"tracking.mlflow_uri='sqlite:///{tmp_path / 'mlflow.db'}'",
    ]


def _traces(tmp_path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("refed")
    return client.search_traces(locations=[experiment.experiment_id], max_results=5000, flush=True)


def _lm_spans(traces: list) -> int:
    return sum(1 for t in traces for s in t.data.spans if s.span_type == "CHAT_MODEL")  # Predict is an LLM span


def test_an_optimization_with_log_traces_stores_its_traces_masked(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("REFED_PLANTED_KEY", PLANTED)
    srv = server_factory(echo_key_in_answers=True)  # a gateway that quotes the request's key in its answers
    overrides = run_overrides(srv, tmp_path / "run", 10) + [
        "teacher.api_key_env='REFED_PLANTED_KEY'",
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env='REFED_PLANTED_KEY'",
        "optimize.optimizer='bootstrap'",
        "optimize.n_train=4",
        "optimize.n_val=3",
        "optimize.num_threads=2",
        "judging.criteria=['helpfulness','accuracy']",
        *_traced(tmp_path, 1.0),
    ]
    optimize(load_config(None, overrides))
    traces = _traces(tmp_path)
    assert traces, "an optimization with tracking.log_traces stored no trace"
    assert _lm_spans(traces) > 0  # the LM calls inside (answers from the run's cache included)
    stored = json.dumps([t.data.to_dict() for t in traces])
    assert "request header" in stored and PLANTED not in stored  # the echoed key, masked


def test_a_synthesis_traces_its_work_and_keeps_a_sample(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "all"
    synthesize(load_config(None, run_overrides(srv, run, 8, **SMALL) + _traced(tmp_path, 1.0)))
    doc = read_json(run / "metrics.json")
    work = sum(s["value"] for s in doc["series"] if s["name"] in ("refed.work", "refed.retries"))
    traces = _traces(tmp_path)
    assert len(traces) == work  # one trace a piece of work: its part's module and its LM calls
    assert _lm_spans(traces) == len(read_log(srv.cfg.log_path))
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (owner,) = {t.info.request_metadata.get("mlflow.sourceRun") for t in traces}
    assert client.get_run(owner).data.tags["refed.run_dir"] == str(run.resolve())  # the run dir's MLflow run
    # a sample: a share of the pieces of work, not all (a run dir and a store of their own)
    sampled = tmp_path / "sampled"
    sampled.mkdir()
    srv = server_factory()
    synthesize(load_config(None, run_overrides(srv, sampled / "run", 30, **SMALL) + _traced(sampled, 0.3)))
    doc = read_json(sampled / "run" / "metrics.json")
    work = sum(s["value"] for s in doc["series"] if s["name"] in ("refed.work", "refed.retries"))
    assert 0 < len(_traces(sampled)) < work


def test_a_failed_call_s_exception_is_traced_without_the_key_it_quotes(server_factory, tmp_path, monkeypatch):
    """A gateway whose errors quote the request's key (its 500s echo the Authorization header): each failed call is
    traced with its exception as a span event, and the event holds the key masked (MLflow adds the event itself, where
    the span processor cannot edit it: 125 copies of the key were stored)."""
    monkeypatch.setenv("REFED_PLANTED_KEY", PLANTED)
    srv = server_factory(echo_key=True, rate_500=0.3)
    overrides = run_overrides(srv, tmp_path / "run", 8, **SMALL) + ["teacher.api_key_env='REFED_PLANTED_KEY'"]
    synthesize(load_config(None, overrides + _traced(tmp_path, 1.0)))
    assert sum(1 for e in read_log(srv.cfg.log_path) if e.get("status") == 500) > 0
    traces = _traces(tmp_path)
    events = [e for t in traces for s in t.data.spans for e in s.events if e.name == "exception"]
    assert events and any("request header" in e.attributes["exception.message"] for e in events)
    stored = json.dumps([t.data.to_dict() for t in traces])
    assert "sk-...1706" in stored  # the key, masked
    assert PLANTED not in stored
    db = (tmp_path / "mlflow.db").read_bytes()
    assert PLANTED.encode() not in db


def test_an_error_that_cannot_say_itself_still_ends_its_span():
    """An exception whose `__str__` raises is handed on as a stand-in of its type's name (the masking raised first,
    and MLflow's span was never ended)."""
    from refed_dspy.tracking.traces import masked_error

    class Mute(Exception):
        def __str__(self):
            raise RuntimeError("no words")

    stand_in = masked_error(Mute())
    assert type(stand_in).__name__ == "Mute" and str(stand_in) == "Mute"
    plain = ValueError("no key here")
    assert masked_error(plain) is plain and masked_error(None) is None
