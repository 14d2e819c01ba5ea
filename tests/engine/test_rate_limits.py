"""A run under rate limits (issue 67): a 429 waits for its Retry-After and goes again without using up the work's
retries; a limit that never lets a request through stops the run after `rate_limit_patience_s` with one line,
resumable."""

from __future__ import annotations

from cli_helpers import lines, run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.synthesis.api import synthesize


def test_429s_use_no_retries(server_factory, tmp_path):
    """20% of requests refused at random, with no retries allowed for other failures: every sample written once, no
    reject (each 429 used to spend one of `num_retries`: at 0, a reject each), and the ledger's paid calls equal to
    the server's answered requests."""
    srv = server_factory(rate_429=0.2, retry_after_s=0.2, enforce_retry_after=True)
    run = tmp_path / "run"
    summary = synthesize(
        load_config(None, run_overrides(srv, run, 40, **{"synthesis.concurrency": 16, "teacher.num_retries": 0}))
    )
    samples = lines(run / "samples.jsonl")
    assert summary["status"] == "complete" and len(samples) == 40 == len({r["meta"]["id"] for r in samples})
    assert not [r for r in lines(run / "rejects.jsonl") if r["reason"] == "rate_limited"]
    log = read_log(srv.cfg.log_path)
    assert summary["retries"]["this_invocation"]["rate_limited"] == sum(1 for e in log if e.get("status") == 429) > 0
    assert summary["usage"]["calls"] == sum(1 for e in log if e.get("status") == 200)
    assert "early_retry" not in {e.get("fault") for e in log}  # each waited for its Retry-After


def test_a_limit_that_lets_nothing_through_stops_the_run_and_the_same_command_resumes(server_factory, tmp_path):
    refusing = server_factory(rate_429=1.0, retry_after_s=0.1)
    run = tmp_path / "run"
    over = run_overrides(refusing, run, 12, **{"teacher.rate_limit_patience_s": 1})
    code, _, err = run_refed("synthesize", *sets(over), timeout=120)
    said = [line for line in err.splitlines() if "rate limited for 1s" in line]
    assert code == 3 and len(said) == 1 and "Traceback" not in err, err[-2000:]
    assert "run the same command again" in said[0]
    healed = server_factory()
    code, _, err = run_refed("synthesize", *sets(run_overrides(healed, run, 12)), timeout=300)
    assert code == 0, err[-2000:]
    assert len({r["meta"]["id"] for r in lines(run / "samples.jsonl")}) == 12


def test_the_retry_queue_takes_a_429_whatever_the_retries_left():
    from refed_dspy.engine.execution import Retries
    from refed_dspy.engine.failures import Failure

    queue = Retries(max_retries=1, seed=0)
    limited = Failure("rate_limited", "429", retryable=True, retry_after=0.5)
    assert all(queue.schedule("a", limited, ("sample", "a", 1), now=0.0) for _ in range(20))
    assert queue.waiting[-1][0] == 0.5  # each after its Retry-After
    failed = Failure("api_error", "500", retryable=True)
    assert queue.schedule("a", failed, ("sample", "a", 1), now=0.0)  # its one retry is still there
    assert not queue.schedule("a", failed, ("sample", "a", 1), now=0.0)
