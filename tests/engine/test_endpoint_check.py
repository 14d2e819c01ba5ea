"""The first calls check the endpoint: a 404, a refused key or a reply in another format stops the run after at most
3 requests, in one line naming the URL, the format expected and the fix, with exit 2 (the config is wrong), whatever
the run's concurrency. The loopback server's log is the referee of what was sent."""

from __future__ import annotations

import pytest
from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import EndpointError
from refed_dspy.synthesis.api import synthesize

ANTHROPIC = "'anthropic/claude-haiku-4-5'"


def anthropic_sets(srv, run, api_base: str, **extra) -> list[str]:
    over = {
        "teacher.model": ANTHROPIC,
        "teacher.api_base": f"'{api_base}'",
        "seeds.limit": 8,
        "synthesis.concurrency": 16,
        **extra,
    }
    return sets(run_overrides(srv, run, 20, **over))


def host(srv) -> str:
    return srv.api_base.removesuffix("/v1")


def requests(srv) -> list[dict]:
    return [e for e in read_log(srv.cfg.log_path) if "seq" in e]


def error_line(err: str) -> str:
    assert "Traceback" not in err, err[-2000:]
    found = [line for line in err.splitlines() if line.startswith("refed: error:")]
    assert len(found) == 1, err[-2000:]
    return found[0]


@pytest.mark.parametrize(
    "fault, says",
    [
        ({"anthropic": "404"}, "answered 404 (no such endpoint) to a request in the Anthropic Messages format"),
        ({"anthropic": "openai"}, "answered, but not in the Anthropic Messages format"),
        ({"fail_status": 401}, "refused the request: the provider rejected the credentials"),
    ],
)
def test_a_wrong_endpoint_stops_the_run_after_at_most_3_requests_with_exit_2(server_factory, tmp_path, fault, says):
    srv = server_factory(**fault)
    run = tmp_path / "run"
    code, _, err = run_refed("synthesize", *anthropic_sets(srv, run, host(srv)))
    line = error_line(err)
    assert code == 2
    assert f"teacher: {host(srv)}/v1/messages {says}" in line
    assert "stopped after" in line
    sent = requests(srv)
    assert 1 <= len(sent) <= 3 and all(e["path"] == "/v1/messages" for e in sent)
    assert not (run / "samples.jsonl").exists() and not (run / "fingerprint.json").exists()


def test_the_fix_each_failure_names(server_factory, tmp_path):
    srv = server_factory(anthropic="openai")
    with pytest.raises(EndpointError) as err:
        synthesize(load_config(None, run_overrides(srv, tmp_path / "a", 4, **{"teacher.model": ANTHROPIC})))
    # a server that answers in the OpenAI format: the model string that reaches it
    assert f'use model = "openai/claude-haiku-4-5" with api_base = "{srv.api_base}"' in str(err.value)
    srv404 = server_factory(anthropic="404")
    with pytest.raises(EndpointError) as err:
        synthesize(load_config(None, run_overrides(srv404, tmp_path / "b", 4, **{"teacher.model": ANTHROPIC})))
    assert "set teacher.api_base to the server's host (refed calls <host>/v1/messages" in str(err.value)


def test_after_a_wrong_endpoint_the_fixed_config_runs_in_the_same_run_dir(server_factory, tmp_path):
    """Nothing was made: the run dir is left empty, so the fixed config is not a 'different config' there."""
    wrong, right = server_factory(anthropic="404"), server_factory()
    run = tmp_path / "run"
    code, _, err = run_refed("synthesize", *anthropic_sets(wrong, run, host(wrong)))
    assert code == 2, err[-2000:]
    code, out, err = run_refed("synthesize", *anthropic_sets(right, run, host(right)))
    assert code == 0, err[-2000:]
    assert "20/20" in out


def test_a_judge_at_a_wrong_endpoint_stops_with_exit_2(server_factory, tmp_path, run):
    srv = server_factory(anthropic="404")
    over = ["judge.model='anthropic/claude-haiku-4-5'", f"judge.api_base='{srv.api_base}'", "judge.api_key_env=''"]
    code, _, err = run_refed("judge", "run", str(run), *sets(over + ["judging.concurrency=16"]))
    line = error_line(err)
    assert code == 2 and f"judge: {host(srv)}/v1/messages answered 404" in line
    assert 1 <= len(requests(srv)) <= 3
    # nothing was judged: the fixed judge config judges the run, no "judged with a different judge config"
    right = server_factory()
    over = ["judge.model='anthropic/claude-haiku-4-5'", f"judge.api_base='{right.api_base}'", "judge.api_key_env=''"]
    code, out, err = run_refed("judge", "run", str(run), *sets(over))
    assert code == 0 and "judged 30/30" in out, err[-2000:]


def test_a_batch_api_that_refuses_the_key_stops_with_exit_2(server_factory, tmp_path):
    srv = server_factory(fail_status=401)
    run = tmp_path / "run"
    extra = {"synthesis.mode": "'batch'", "batch.poll_s": 0.05, "batch.linger_s": 0.2}
    code, _, err = run_refed("synthesize", *anthropic_sets(srv, run, host(srv), **extra))
    line = error_line(err)
    assert code == 2 and f"teacher: {host(srv)}/v1/messages refused the request: HTTP 401" in line
    assert 1 <= len([e for e in read_log(srv.cfg.log_path) if e.get("batch_api")]) <= 3
