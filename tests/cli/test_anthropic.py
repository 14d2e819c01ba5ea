"""An `anthropic/` teacher and judge, run as a user runs them: `api_base` the server's host (LiteLLM's convention, no
/v1), the key in ANTHROPIC_API_KEY (inferred from the model), against the loopback server's Anthropic Messages endpoint
and Message Batches. The server's log says what went over the wire: the path, the version header, the key's header."""

from __future__ import annotations

import json

from cli_helpers import refed, sets
from loopback_server import read_log

MODEL = "'anthropic/claude-haiku-4-5'"
KEY = {"ANTHROPIC_API_KEY": "sk-ant-loopback-test"}


def cli(*args: str) -> tuple[int, str, str]:
    proc = refed(*args, env_extra=KEY)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def role_sets(role: str, srv) -> list[str]:
    return [f"{role}.model={MODEL}", f"{role}.api_base='{srv.api_base.removesuffix('/v1')}'", f"{role}.num_retries=2"]


def messages_calls(srv) -> list[dict]:
    log = [e for e in read_log(srv.cfg.log_path) if "seq" in e]
    assert log and all(e["path"] == "/v1/messages" for e in log)
    return log


def test_anthropic_teacher_synthesizes_judges_and_batches_at_the_host(server_factory, tmp_path):
    online, judge_srv = server_factory(), server_factory()
    batch_srv = server_factory(extra={"batch_validating_s": 0.01})
    run = tmp_path / "online"
    common = ["seeds.limit=4", "synthesis.instructions_per_feature=2", "synthesis.size=8", "run.progress=false"]
    code, out, err = cli("synthesize", *sets([*role_sets("teacher", online), *common, f"run.dir='{run}'"]))
    assert code == 0, err[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    calls = messages_calls(online)
    assert summary["status"] == "complete" and summary["samples"] == 8
    assert summary["usage"]["calls"] == len(calls) and summary["usage"]["prompt_tokens"] > 0
    assert {e["anthropic_version"] for e in calls} == {"2023-06-01"}
    assert {e["key_header"] for e in calls} == {"x-api-key"}

    code, out, err = cli("judge", "run", str(run), *sets(role_sets("judge", judge_srv)))
    assert code == 0, err[-2000:]
    judged = json.loads((run / "judge_summary.json").read_text())
    assert "judged 8/8" in out and judged["usage"]["calls"] == len(messages_calls(judge_srv))

    batch_run = tmp_path / "batch"
    batch = ["synthesis.mode='batch'", "batch.poll_s=0.05", "batch.linger_s=0.2", f"run.dir='{batch_run}'"]
    code, out, err = cli("synthesize", *sets([*role_sets("teacher", batch_srv), *common, *batch]))
    assert code == 0, err[-2000:]
    summary = json.loads((batch_run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["samples"] == 8 and summary["mode"] == "batch"
    log = read_log(batch_srv.cfg.log_path)
    created = [e for e in log if "batch_create" in e]
    assert created and {e["api"] for e in created} == {"anthropic"}
    posts = [e for e in log if e.get("batch_api") == "POST"]
    assert posts and all(e["path"] == "/v1/messages/batches" and e["auth"] == KEY["ANTHROPIC_API_KEY"] for e in posts)
