"""MLflow tracking of synthesize, judge and compare runs, and no secret in anything a run writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.experiments.compare import compare
from refed_dspy.optimizers.run import optimize
from refed_dspy.quality.judge import judge_run
from refed_dspy.synthesis.api import synthesize
from refed_dspy.tracking.mlflow_runs import RUN_DIR_TAG, flat_params, summary_metrics

PLANTED = "sk-planted-9f8e7d6c5b4a39281706"


def tracked(srv, tmp_path, run, size, **extra) -> list[str]:
    return run_overrides(srv, run, size, **extra) + [
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        "tracking.enabled=true",
        f"tracking.mlflow_uri='sqlite:///{tmp_path / 'mlflow.db'}'",
        "judging.criteria=['helpfulness','accuracy']",
    ]


def run_of(tmp_path, run_dir):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("refed")
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir.resolve()}'")
    assert len(found) == 1
    return client, found[0]


def test_flat_params_and_metrics_are_pure():
    assert flat_params({"a": {"b": 1, "c": None, "api_key": "x"}, "d": "y" * 7000}) == {
        "a.b": "1",
        "a.api_key": "***",
        "d": "y" * 5997 + "...",
    }
    assert summary_metrics(
        {"usage": {"calls": 3, "by_stage": {"p1:x": {"calls": 1}}}, "status": "complete", "ok": True}
    ) == {"usage.calls": 3.0, "usage.by_stage.p1_x.calls": 1.0, "ok": 1.0}


def test_synthesize_judge_and_compare_are_tracked(server_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    srv = server_factory()
    run = tmp_path / "run"
    cfg = load_config(None, tracked(srv, tmp_path, run, 6))
    summary = synthesize(cfg)
    judge_run(run, cfg)
    client, r = run_of(tmp_path, run)
    assert r.data.params["config.synthesis.size"] == "6" and r.data.params["teacher_model"] == cfg.teacher.model
    assert r.data.params["method"] == "refed" and r.data.tags["refed.kind"] == "synthesize"
    assert r.data.metrics["samples"] == 6 and r.data.metrics["usage.calls"] == summary["usage"]["calls"]
    assert "judge.judged" in r.data.metrics and r.data.tags["refed.steps"] == "synthesize,judge"
    assert not any(t.startswith("refed.kind.") for t in r.data.tags)  # one tag scheme
    arts = {a.path for a in client.list_artifacts(r.info.run_id, "synthesize")}
    assert {"synthesize/summary.json", "synthesize/config.toml", "synthesize/fingerprint.json"} <= arts
    # resuming with a larger size: same MLflow run, the changed param is recorded as a tag
    synthesize(load_config(None, tracked(srv, tmp_path, run, 8)))
    client, r = run_of(tmp_path, run)
    assert r.data.params["config.synthesis.size"] == "6" and r.data.tags["refed.changed.config.synthesis.size"] == "8"
    assert r.data.metrics["samples"] == 8
    # compare: one MLflow run per method dir and one for the comparison
    base = tmp_path / "cmp"
    compare(load_config(None, tracked(srv, tmp_path, base, 4)), ["refed", "no_feedback"])
    for method in ("refed", "no_feedback"):
        _, m = run_of(tmp_path, base / method)
        assert m.data.params["method"] == method and m.data.metrics["samples"] == 4
    client, c = run_of(tmp_path, base)
    assert c.data.metrics["refed.samples"] == 4 and "no_feedback.calls" in c.data.metrics
    assert c.data.tags["refed.kind"] == "compare"
    assert {"compare/compare.json", "compare/compare.md"} <= {
        a.path for a in client.list_artifacts(c.info.run_id, "compare")
    }


def test_a_tracked_call_leaves_the_caller_s_mlflow_where_it_was(server_factory, tmp_path, monkeypatch):
    """A Python caller with an MLflow of its own (its store, its experiment, a span processor) calls synthesize with
    tracking and traces on, into refed's store: afterwards its tracking URI, active experiment, MLFLOW_EXPERIMENT_ID
    and span processors are its own again, and its next run goes to its own experiment (a CI run's later test started a
    run in the experiment id an earlier test's refed store had left active, in a store that had none)."""
    from mlflow.tracing.config import get_config
    from mlflow.tracking import fluent

    uri_before = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None  # None: unset
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    saved_env = {v: os.environ.pop(v, None) for v in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI")}
    theirs = f"sqlite:///{tmp_path / 'theirs.db'}"

    def their_processor(span):
        span.set_attribute("theirs", True)

    try:
        mlflow.set_tracking_uri(theirs)
        mlflow.set_experiment("another")
        mine = mlflow.set_experiment("mine")  # id 2 in their store; refed's experiment is id 1 in its own
        with mlflow.tracing.configure(span_processors=[their_processor]):
            srv = server_factory()
            synthesize(load_config(None, tracked(srv, tmp_path, tmp_path / "run", 3) + ["tracking.log_traces=true"]))
            assert mlflow.get_tracking_uri() == theirs
            assert os.environ.get("MLFLOW_EXPERIMENT_ID") == mine.experiment_id
            assert get_config().span_processors == [their_processor]
            with mlflow.start_run() as run:
                pass
        assert run.info.experiment_id == mine.experiment_id
        assert mlflow.MlflowClient(theirs).get_run(run.info.run_id).info.experiment_id == mine.experiment_id
        _, ours = run_of(tmp_path, tmp_path / "run")  # and refed's run went to refed's store
        assert ours.data.metrics["samples"] == 3
    finally:
        mlflow.set_tracking_uri(uri_before)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_a_caller_s_tracing_switched_off_stays_off(tmp_path, monkeypatch):
    """A caller that switched MLflow's tracing off finds it off after a tracked block (setting a tracking URI makes
    MLflow's tracer anew, switched on)."""
    from mlflow.tracing.provider import is_tracing_enabled

    from refed_dspy.config.run import TrackingConfig
    from refed_dspy.tracking.mlflow_runs import connected

    monkeypatch.chdir(tmp_path)
    mlflow.tracing.disable()
    try:
        with connected(TrackingConfig(enabled=True, mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")):
            pass
        assert not is_tracing_enabled()
    finally:
        mlflow.tracing.enable()


def test_tracking_off_writes_no_store(server_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    srv = server_factory()
    synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 3)))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_unreachable_tracking_server_keeps_the_run(server_factory, tmp_path, caplog):
    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 3) + [
        "tracking.enabled=true",
        "tracking.mlflow_uri='http://127.0.0.1:9'",
    ]

    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        summary = synthesize(load_config(None, over))
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert summary["status"] == "complete" and summary["samples"] == 3
    assert "MLflow tracking failed" in caplog.text


def test_a_file_store_mlflow_refuses_is_one_line_before_any_request_and_a_warning_where_nothing_is_paid(
    server_factory, tmp_path, monkeypatch
):
    """MLflow 3.17 refuses a `file:` store unless MLFLOW_ALLOW_FILE_STORE=true. synthesize warned only after its paid
    calls; report and export printed a 40-line traceback and exit 1."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    srv = server_factory()
    run = tmp_path / "run"
    store = [
        "--set",
        "tracking.enabled=true",
        "--set",
        f"tracking.mlflow_uri='file://{tmp_path / 'mlruns'}'",
    ]
    code, _, err = run_refed("synthesize", *sets(run_overrides(srv, run, 4)), *store)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "MLFLOW_ALLOW_FILE_STORE=true" in err and f"sqlite:///{tmp_path / 'mlflow.db'}" in err, err
    assert read_log(srv.cfg.log_path) == [] and not run.exists() and not (tmp_path / "mlruns").exists()
    # a run made without tracking: judging it with the store is refused before its first call
    code, _, err = run_refed("synthesize", *sets(run_overrides(srv, run, 4)))
    assert code == 0, err
    paid = len(read_log(srv.cfg.log_path))
    code, _, err = run_refed("judge", "run", str(run), "--set", f"judge.api_base='{srv.api_base}'", *store)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "MLFLOW_ALLOW_FILE_STORE=true" in err, err
    assert len(read_log(srv.cfg.log_path)) == paid and not (run / "judgments.jsonl").exists()
    # report and export pay nothing: they write their files, then say in one line that tracking failed
    for cmd, wrote in (
        (("report", str(run)), run / "report.html"),
        (("export", str(run), "-f", "messages", "--out", str(tmp_path / "ex"), "--val-fraction", "0"), tmp_path / "ex"),
    ):
        code, _, err = run_refed(*cmd, *store)
        said = [x for x in err.splitlines() if x.strip()]
        assert code == 0 and len(said) == 1 and said[0].startswith("warning: MLflow tracking failed"), (cmd, err)
        assert "MLFLOW_ALLOW_FILE_STORE=true" in said[0] and wrote.exists(), (cmd, err)
    # the variable MLflow asks for lets the same store in
    code, _, err = run_refed("report", str(run), *store, env_extra={"MLFLOW_ALLOW_FILE_STORE": "true"})
    assert code == 0 and "tracking failed" not in err and (tmp_path / "mlruns").is_dir(), err


@pytest.mark.slow
def test_a_planted_api_key_reaches_no_file_and_no_mlflow_store(server_factory, tmp_path, monkeypatch):
    """The key sits in the environment only; the run dir, the optimize dir and the MLflow store (sqlite
    db and artifacts, including the pickled DSPy settings of the logged program) never hold it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REFED_PLANTED_KEY", PLANTED)
    srv = server_factory()
    run = tmp_path / "run"
    over = tracked(srv, tmp_path, run, 6) + [
        "teacher.api_key_env='REFED_PLANTED_KEY'",
        "judge.api_key_env='REFED_PLANTED_KEY'",
        "optimize.n_train=3",
        "optimize.n_val=2",
        "optimize.optimizer='bootstrap'",
    ]
    cfg = load_config(None, over)
    synthesize(cfg)
    judge_run(run, cfg)
    result = optimize(cfg)
    assert result.model_uri
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "dspy-cache" not in p.parts]
    assert any(p.name == "mlflow.db" for p in files) and any(p.name == "program.json" for p in files)
    assert any(p.suffix == ".pkl" for p in files)  # the logged program and its DSPy settings were scanned
    leaks = [str(p) for p in files if PLANTED.encode() in p.read_bytes()]
    assert leaks == []
    assert json.loads((run / "summary.json").read_text())["samples"] == 6
    # what the CLI shows: a complete run, and one that aborts on a dead server (with --debug tracebacks)
    from cli_helpers import refed, sets

    dead = server_factory(fail_all=True)
    for server, extra in ((srv, []), (dead, ["--set", "synthesis.max_consecutive_failures=2"])):
        for debug in ([], ["--debug"]):
            proc = refed(
                *debug,
                "synthesize",
                *sets(run_overrides(server, tmp_path / f"cli-{server.port}", 3)),
                "--set",
                "teacher.api_key_env='REFED_PLANTED_KEY'",
                *extra,
                env_extra={"REFED_PLANTED_KEY": PLANTED},
            )
            out, err = proc.communicate(timeout=300)
            assert PLANTED not in out and PLANTED not in err
    assert proc.returncode != 0 and "consecutive teacher failures" in err


def test_a_trace_span_is_stored_masked(tmp_path, monkeypatch):
    """Every trace span MLflow exports from a process connected by refed (`connected`) is masked first: a span whose
    inputs, outputs and attributes quote the key (an LM call traced by DSPy's autologging, a gateway's answer that
    echoes the request) is stored with the key masked, and the store holds no copy of it."""
    from refed_dspy.config.run import TrackingConfig
    from refed_dspy.tracking.mlflow_runs import connected

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REFED_PLANTED_KEY", PLANTED)
    with (
        connected(TrackingConfig(enabled=True, mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")) as experiment,
        mlflow.start_span("lm-call") as span,
    ):
        span.set_inputs({"headers": {"Authorization": f"Bearer {PLANTED}"}})
        span.set_outputs(f"the gateway says: request header authorization: Bearer {PLANTED}")
        span.set_attribute("raw", {"echo": PLANTED})
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    traces = client.search_traces(locations=[experiment.experiment_id], flush=True)
    stored = json.dumps([t.data.to_dict() for t in traces])
    assert len(traces) == 1 and "sk-...1706" in stored and PLANTED not in stored
    assert [str(p) for p in tmp_path.rglob("*") if p.is_file() and PLANTED.encode() in p.read_bytes()] == []


def test_nothing_leaves_the_machine_with_tracking_on(server_factory, tmp_path):
    """With tracking on, synthesize, judge, export and optimize open sockets to the configured endpoints only
    (here all on loopback): no telemetry to MLflow's or Hugging Face's servers. The commands run as on a user's
    machine, without the test and CI markers that make MLflow keep quiet by itself, and linger at exit so that
    background senders get their chance."""
    import subprocess
    import sys

    from cli_helpers import sets

    srv = server_factory()
    run = tmp_path / "run"
    log = tmp_path / "sockets.log"
    over = tracked(srv, tmp_path, run, 4) + [
        "optimize.n_train=2",
        "optimize.n_val=1",
        "optimize.optimizer='bootstrap'",
        f"optimize.out='{tmp_path / 'opt'}'",
    ]
    quiet = (
        "PYTEST_CURRENT_TEST",
        "CI",
        "GITHUB_ACTIONS",
        "HF_HUB_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "MLFLOW_DISABLE_TELEMETRY",
        "DO_NOT_TRACK",
        "HF_HUB_DISABLE_TELEMETRY",
    )
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    env.update(
        PYTHONPATH=str(Path(__file__).parents[1] / "socket_spy"),
        REFED_SOCKET_LOG=str(log),
        REFED_SOCKET_LINGER="2",
        LITELLM_LOCAL_MODEL_COST_MAP="true",
    )
    commands = [
        ["synthesize", *sets(over)],
        ["judge", "run", str(run), *sets(over)],
        ["export", str(run), "--format", "parquet", "--out", str(tmp_path / "pq"), *sets(over)],
        ["optimize", *sets(over)],
    ]
    for args in commands:
        proc = subprocess.run(
            [sys.executable, "-m", "refed_dspy.cli", *args], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (args[0], proc.stderr[-2000:])
    seen = {line.split(" ", 1)[1] for line in log.read_text().splitlines()}
    assert seen and seen <= {"127.0.0.1", "localhost", "::1"}, seen


def test_telemetry_opt_out_never_overrides_the_user(monkeypatch):
    from refed_dspy.tracking import telemetry

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "false")  # the user's own choice stays
    monkeypatch.setattr(telemetry, "_ours", set())
    telemetry.set_telemetry()

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and os.environ["DO_NOT_TRACK"] == "false"
    telemetry.set_telemetry(opt_in=True)
    assert "MLFLOW_DISABLE_TELEMETRY" not in os.environ and os.environ["DO_NOT_TRACK"] == "false"
