"""Watching a run while it works (issue 55): its metrics scraped by a real Prometheus, exported over OTLP, written to
the run dir and carried on by a resume; a port in use refused before any call; keys masked in what leaves."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_helpers import run_refed, sets
from conftest import PROVIDER_LATENCY_S, run_overrides
from loopback_server import read_log
from prometheus_helpers import Prometheus, free_port

from refed_dspy.config import load_config
from refed_dspy.store.jsonl import read_json
from refed_dspy.synthesis.api import synthesize

SMALL = {"seeds.limit": 4, "synthesis.instructions_per_feature": 2}


def _served(server) -> tuple[int, int, int]:
    """(requests, prompt tokens, completion tokens) the loopback server answered."""
    log = read_log(server.cfg.log_path)
    answered = [e for e in log if e.get("status") == 200]
    return len(log), sum(e["prompt_tokens"] for e in answered), sum(e["completion_tokens"] for e in answered)


def _series(doc: dict, name: str, **attrs: str) -> list[dict]:
    return [
        s for s in doc["series"] if s["name"] == name and all(s["attributes"].get(k) == v for k, v in attrs.items())
    ]


def _total(doc: dict, name: str, field: str = "value", **attrs: str) -> float:
    return sum(s[field] for s in _series(doc, name, **attrs))


def test_a_real_prometheus_scrapes_what_the_server_saw(server_factory, tmp_path):
    """A run of 200 samples with the endpoint on, scraped every second by a real Prometheus: the last scrape's
    operation count, summed over its labels, is the server's request count, and the token usage its tokens."""
    srv = server_factory(latency_s=0.01)
    port = free_port()
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"])
    try:
        extra = {
            "metrics.prometheus_port": port,
            "metrics.linger_s": 8,  # scraped several times after the run (a rate needs two samples)
            "synthesis.concurrency": 16,
            "synthesis.max_cost_usd": 5,
        }
        summary = synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 200, **extra)))
        lingering = time.time() - 1.5  # the endpoint still served the final values then (it has gone since)
        assert summary["status"] == "complete" and summary["samples"] == 200
        requests, prompt, completion = _served(srv)
        last = "sum(last_over_time({}[10m]))"
        assert prometheus.number(last.format("gen_ai_client_operation_duration_seconds_count")) == requests
        tokens = 'gen_ai_client_token_usage_sum{{gen_ai_token_type="{}"}}'
        assert prometheus.number(last.format(tokens.format("input"))) == prompt
        assert prometheus.number(last.format(tokens.format("output"))) == completion
        assert prometheus.number(last.format("refed_samples_total")) == 200
        assert prometheus.number(last.format("refed_cost_usd_total")) == pytest.approx(summary["cost_usd"])
        # the conventions' attributes, one provider and model, and the refed series beside them
        found = prometheus.query("last_over_time(gen_ai_client_operation_duration_seconds_count[10m])")
        labels = {(m["metric"]["gen_ai_provider_name"], m["metric"]["gen_ai_request_model"]) for m in found}
        assert labels == {("openai", "gpt-4o-mini")}
        assert {m["metric"]["gen_ai_operation_name"] for m in found} == {"chat"}
        assert {m["metric"]["refed_stage"] for m in found} >= {"feedback", "generate", "improve"}
        assert prometheus.number('last_over_time(refed_window{refed_role="teacher"}[10m])') == 16
        # the guide's queries answer on this run (the error rate has no failed request to divide)
        for expr in guide_queries():
            found = prometheus.query(expr, at=lingering)
            assert found or "error_type" in expr, expr
    finally:
        prometheus.stop()
    # the same final values in the run dir
    doc = read_json(tmp_path / "run" / "metrics.json")
    assert doc["ended"] is True and doc["status"] == "complete" and doc["records"] == 200
    assert _total(doc, "gen_ai.client.operation.duration", "count") == requests


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "monitoring.md"


def guide_queries() -> list[str]:
    """The PromQL expressions of the monitoring guide's text blocks (a line that starts with a space goes on the one
    before)."""
    out: list[str] = []
    for block in re.findall(r"```text\n(.*?)```", GUIDE.read_text(), re.S):
        for line in block.splitlines():
            if line.startswith(" ") and out:
                out[-1] += " " + line.strip()
            elif line.strip():
                out.append(line.strip())
    return out


def test_the_guides_alert_rules_are_valid(tmp_path):
    """promtool (Debian's prometheus package) checks the guide's alert rules."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("REFED_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is not installed (Debian: apt-get install prometheus)")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    (rules,) = [b for b in re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S) if "groups:" in b]
    (tmp_path / "rules.yml").write_text(rules)
    done = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert done.returncode == 0 and "SUCCESS: 4 rules found" in done.stdout, done.stdout + done.stderr


def test_a_port_in_use_is_one_line_exit_2_before_any_call(server_factory, tmp_path):
    srv = server_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = tmp_path / "run"
        code, _, err = run_refed("synthesize", *sets(run_overrides(srv, run, 4, **{"metrics.prometheus_port": port})))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "in use" in lines[0], err
    assert "Traceback" not in err
    assert read_log(srv.cfg.log_path) == []  # no call
    assert not run.exists()


def test_a_resumed_run_goes_on_from_its_totals(server_factory, tmp_path):
    """Stopped at 6 samples and resumed to 12: the figures go on from the run dir's, and end at the server's."""
    srv = server_factory()
    run = tmp_path / "run"
    synthesize(load_config(None, run_overrides(srv, run, 6, **SMALL)))
    first = read_json(run / "metrics.json")
    assert _total(first, "refed.samples") == 6
    synthesize(load_config(None, run_overrides(srv, run, 12, **SMALL)))
    doc = read_json(run / "metrics.json")
    requests, prompt, completion = _served(srv)
    assert _total(doc, "refed.samples") == 12
    assert _total(doc, "gen_ai.client.operation.duration", "count") == requests
    assert _total(doc, "gen_ai.client.token.usage", "sum", **{"gen_ai.token.type": "input"}) == prompt
    assert _total(doc, "gen_ai.client.token.usage", "sum", **{"gen_ai.token.type": "output"}) == completion
    summary = read_json(run / "summary.json")
    assert _total(doc, "refed.cost") == pytest.approx(summary["cost_usd"])
    assert _total(doc, "refed.calls", **{"refed.outcome": "answered"}) == summary["usage"]["calls"]


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector: keeps each body posted to /v1/metrics."""

    bodies: list[bytes] = []

    def do_POST(self):  # noqa: N802
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def _exported(bodies: list[bytes]) -> dict[str, float]:
    """The last export's histogram counts and sums and counter values, summed by metric name."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    request.ParseFromString(bodies[-1])
    out: dict[str, float] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.HasField("histogram"):
                    out[f"{m.name}.count"] = sum(p.count for p in m.histogram.data_points)
                    out[f"{m.name}.sum"] = sum(p.sum for p in m.histogram.data_points)
                elif m.HasField("sum"):
                    out[m.name] = sum(p.as_double or p.as_int for p in m.sum.data_points)
    return out


def test_otlp_exports_when_asked_and_the_variables_only_configure(server_factory, tmp_path, monkeypatch):
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    _Collector.bodies = []
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    try:
        srv = server_factory()
        synthesize(load_config(None, run_overrides(srv, tmp_path / "quiet", 4, **SMALL)))
        assert _Collector.bodies == []  # the variables configure an exporter; they do not turn one on
        srv = server_factory()
        synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 6, **SMALL, **{"metrics.otlp": "true"})))
    finally:
        collector.shutdown()
    assert _Collector.bodies, "nothing was exported"
    got = _exported(_Collector.bodies)
    requests, prompt, completion = _served(srv)
    assert got["gen_ai.client.operation.duration.count"] == requests
    assert got["gen_ai.client.token.usage.sum"] == prompt + completion
    assert got["refed.samples"] == 6


def _last_scrape(port: int, run: Callable[[], object]) -> str:
    """The last page /metrics on `port` served while `run()` ran and its endpoint lingered (scraped until it has
    gone: the last page is what the run ended with)."""
    import urllib.request

    seen: list[str] = []

    def scrape() -> None:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    seen.append(answer.read().decode())
            except OSError:
                if seen:
                    return

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    run()
    thread.join(timeout=30)
    return seen[-1]


def test_keys_are_masked_in_what_is_exported(server_factory, tmp_path, monkeypatch):
    key = "sk-test-metrics-key-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    srv = server_factory()
    port = free_port()
    run = tmp_path / "run"
    # where a key could reach a label: the model's name (the reply names it too, but no label takes a reply's name)
    extra = {**SMALL, "metrics.prometheus_port": port, "metrics.linger_s": 2, "teacher.model": f"'openai/{key}'"}
    page = _last_scrape(port, lambda: synthesize(load_config(None, run_overrides(srv, run, 4, **extra))))
    assert "refed_samples_total" in page and 'gen_ai_request_model="' in page
    assert key not in page and "gen_ai_response_model" not in page
    for name in ("metrics.json", "events.jsonl"):
        assert key not in (run / name).read_text()


def test_a_model_label_is_the_model_asked_for_not_the_one_a_reply_names(server_factory, tmp_path):
    """A gateway that names a new model in each reply (34 calls gave 34 label values before): one model label, the
    one the config asks for."""
    srv = server_factory(new_model_each_reply=True)
    port = free_port()
    extra = {**SMALL, "metrics.prometheus_port": port, "metrics.linger_s": 2}
    page = _last_scrape(port, lambda: synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 6, **extra))))
    assert len({e.get("sha") for e in read_log(srv.cfg.log_path)}) > 10  # many replies, each naming its own model
    assert set(re.findall(r'gen_ai_request_model="([^"]*)"', page)) == {"gpt-4o-mini"}
    assert "gpt-4o-mini-" not in page and "gen_ai_response_model" not in page


@pytest.mark.parametrize(
    "host, status",
    [("evil.example.com", 403), ("evil.example.com:{port}", 403), ("127.0.0.1:{port}", 200), ("localhost:{port}", 200)],
)
def test_the_endpoint_answers_only_to_its_own_host(host, status):
    """DNS rebinding: a page under the attacker's name that resolves to 127.0.0.1 sends its own Host header."""
    import http.client

    from refed_dspy.config import MetricsConfig
    from refed_dspy.engine.metrics import Endpoint

    endpoint = Endpoint(MetricsConfig(prometheus_port=0), "teacher")
    try:
        connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
        connection.request("GET", "/metrics", headers={"Host": host.format(port=endpoint.port)})
        answer = connection.getresponse()
        body = answer.read().decode()
        assert answer.status == status, body
        assert ("# HELP" in body or body == "") if status == 200 else "refused" in body
    finally:
        endpoint.close(linger=False)


def test_events_say_each_state_change_and_stay_bounded(server_factory, tmp_path):
    srv = server_factory(max_concurrency=6, retry_after_s=0.05, latency_s=PROVIDER_LATENCY_S)
    run = tmp_path / "run"
    extra = {"synthesis.concurrency": 48, "teacher.num_retries": 3}
    synthesize(load_config(None, run_overrides(srv, run, 60, **extra)))
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "ended" and events[-1]["status"] == "complete"
    retries = [e for e in events if e["event"] == "retry"]
    assert retries and {e["reason"] for e in retries} == {"rate_limited"}
    windows = [e for e in events if e["event"] == "window"]
    assert any(e["why"] == "rate_limited" and e["to"] < e["from"] for e in windows)
    assert all(e["role"] == "teacher" and e["t"] > 0 for e in events)
    doc = read_json(run / "metrics.json")
    assert _total(doc, "refed.retries", **{"refed.reason": "rate_limited"}) == len(retries)


def test_the_event_log_rotates_at_its_bound(tmp_path):
    from refed_dspy.store.rundir import EventLog

    log = EventLog(tmp_path, "teacher", max_bytes=2000)
    for i in range(200):
        log.add("retry", work="sample", reason="rate_limited", attempt=i)
    log.close()
    current, older = tmp_path / "events.jsonl", tmp_path / "events.1.jsonl"
    assert older.exists() and current.stat().st_size < 2000 + 200 and older.stat().st_size < 2000 + 200
    rows = [json.loads(x) for p in (older, current) for x in p.read_text().splitlines()]
    assert [r["attempt"] for r in rows] == list(range(200 - len(rows), 200))  # the newest kept, in order


def test_figures_restore_and_merge_histograms():
    from refed_dspy.clients.calls import CallInfo
    from refed_dspy.engine.figures import Figures

    before = Figures("teacher")
    calls = [CallInfo("generate", "openai/gpt-4o-mini", 100, 20, seconds=0.5)] * 3
    before.calls(calls + [CallInfo("generate", "openai/gpt-4o-mini", error="LMRateLimitError", seconds=0.1)], {})
    earlier = [s.to_dict() for s in before.series()]
    after = Figures("teacher")
    after.restore(json.loads(json.dumps(earlier)))
    after.calls(calls[:1], {"default": 0.25})
    doc = {"series": [s.to_dict() for s in after.series()]}
    answered = [s for s in _series(doc, "gen_ai.client.operation.duration") if "error.type" not in s["attributes"]]
    assert len(answered) == 1 and answered[0]["count"] == 4
    assert _total(doc, "gen_ai.client.operation.duration", "count", **{"error.type": "LMRateLimitError"}) == 1
    assert _total(doc, "gen_ai.client.token.usage", "sum", **{"gen_ai.token.type": "input"}) == 400
    histogram = answered[0]
    assert sum(histogram["buckets"]) == 4 and histogram["min"] == histogram["max"] == 0.5
    assert _total(doc, "refed.cost", **{"refed.tier": "default"}) == 0.25
    judge = Figures("judge")
    judge.restore(earlier)
    assert judge.series() == []  # another role's series are not taken in


def test_a_judging_is_watched_apart(server_factory, tmp_path):
    """The judge's figures go to judge_metrics.json, its events into the run's log under its role."""
    from refed_dspy.quality.judge import judge_run

    teacher, judge = server_factory(), server_factory()
    run = tmp_path / "run"
    cfg = load_config(
        None,
        run_overrides(teacher, run, 6, **SMALL)
        + [f"judge.api_base='{judge.api_base}'", "judge.api_key_env=''", "judge.num_retries=2"],
    )
    synthesize(cfg)
    summary = judge_run(run, cfg)
    doc = read_json(run / "judge_metrics.json")
    requests, prompt, completion = _served(judge)
    assert doc["ended"] is True and doc["records"] == summary["judged"] == doc["target"] == 6
    assert _total(doc, "gen_ai.client.operation.duration", "count", **{"refed.role": "judge"}) == requests
    assert _total(doc, "gen_ai.client.token.usage", "sum") == prompt + completion
    teacher_doc = read_json(run / "metrics.json")
    assert _total(teacher_doc, "refed.samples") == 6  # the synthesis's figures are its own
    roles = [json.loads(x)["role"] for x in (run / "events.jsonl").read_text().splitlines()]
    assert roles[0] == "teacher" and roles[-1] == "judge"
    # judged again from scratch: its figures start from nothing too (its answers come from the run's cache: no request)
    judge_run(run, cfg, on_mismatch="fresh")
    again = read_json(run / "judge_metrics.json")
    assert _total(again, "gen_ai.client.operation.duration", "count") == _served(judge)[0] - requests
    assert again["records"] == 6


def test_budget_refusals_and_batches_are_events(tmp_path, server_factory):
    from loopback_server import LoopbackServer, ServerConfig

    from refed_dspy.launch.batch.store import BatchStore

    srv = server_factory()
    run = tmp_path / "budget"
    summary = synthesize(load_config(None, run_overrides(srv, run, 20, **SMALL, **{"synthesis.max_calls": 12})))
    assert summary["status"] == "budget"
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    refusals = [e for e in events if e["event"] == "budget_refusal"]
    assert refusals and refusals[0]["limit"] == "calls" and "budget of 12" in refusals[0]["why"]
    assert read_json(run / "metrics.json")["status"] == "budget"
    # batch mode: each batch submitted, then ended, and the batches by state among the figures
    fast = {"batch_validating_s": 0.01, "batch_finalizing_s": 0.01}
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=fast)) as batch_server:
        run = tmp_path / "batch"
        extra = {**SMALL, "synthesis.mode": "'batch'", "batch.poll_s": 0.05, "batch.linger_s": 0.2}
        synthesize(load_config(None, run_overrides(batch_server, run, 12, **extra)))
    batches = BatchStore(run, readonly=True).batches
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    submitted = {e["batch"]: e for e in events if e["event"] == "batch_submitted"}
    ended = {e["batch"] for e in events if e["event"] == "batch_ended"}
    assert set(submitted) == ended == set(batches)
    assert all(submitted[b]["provider_id"] == batches[b].provider_id for b in batches)
    doc = read_json(run / "metrics.json")
    assert _total(doc, "refed.batch.jobs", **{"refed.state": "collected"}) == len(batches)
