"""A run's metrics on Ray (issue 55): the workers' calls reach the driver, whose endpoint a real Prometheus scrapes as
the one target of the cluster, with the same sums as the server's own."""

from __future__ import annotations

import ray_helpers
from conftest import run_overrides
from loopback_server import read_log
from prometheus_helpers import Prometheus, free_port

from refed_dspy.config import load_config
from refed_dspy.synthesis.api import synthesize

local_ray = ray_helpers.local_ray  # one local Ray for the file


def test_one_scrape_target_holds_every_workers_calls(local_ray, server_factory, tmp_path):
    srv = server_factory(latency_s=0.01)
    port = free_port()
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"])
    try:
        extra = {
            "ray.enabled": "true",
            "ray.workers": 2,
            "synthesis.concurrency": 8,
            "metrics.prometheus_port": port,
            "metrics.linger_s": 4,
        }
        summary = synthesize(load_config(None, run_overrides(srv, tmp_path / "run", 200, **extra)))
        assert summary["status"] == "complete" and summary["samples"] == 200
        workers = summary["ray"]["workers"]
        assert len(workers) == 2 and all(w["calls"] > 0 for w in workers), workers  # both workers made calls
        log = read_log(srv.cfg.log_path)
        answered = [e for e in log if e.get("status") == 200]
        last = "sum(last_over_time({}[10m]))"
        assert prometheus.number(last.format("gen_ai_client_operation_duration_seconds_count")) == len(log)
        tokens = 'gen_ai_client_token_usage_sum{{gen_ai_token_type="{}"}}'
        assert prometheus.number(last.format(tokens.format("input"))) == sum(e["prompt_tokens"] for e in answered)
        assert prometheus.number(last.format(tokens.format("output"))) == sum(e["completion_tokens"] for e in answered)
        assert prometheus.number('last_over_time(refed_workers{refed_state="alive"}[10m])') == 2
        # one target: the driver's endpoint (the workers serve none)
        assert [t["metric"]["instance"] for t in prometheus.query("count_over_time(up[10m])")] == [f"127.0.0.1:{port}"]
    finally:
        prometheus.stop()
