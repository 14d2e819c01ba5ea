"""A local server still generating is not cut off by the client's timeout (issue 69, item 3): for an endpoint on the
user's machine the timeout counts the time the server generated nothing (llama.cpp's GET /slots), so a slow CPU's
long reply is not thrown away and sent again; a server that holds a request without generating is still cut off, and
that call is still counted as paid; a server that does not report its slots is cut off as before."""

from __future__ import annotations

import json

from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

SLOW = {"teacher.timeout": 1, "synthesis.concurrency": 2, "seeds.limit": 1, "teacher.num_retries": 0}


def _run(srv, tmp_path, size: int, **extra) -> tuple[int, str, dict]:
    run = tmp_path / "run"
    code, _, err = run_refed("synthesize", *sets(run_overrides(srv, run, size, **SLOW, **extra)))
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    return code, err, summary


def test_a_reply_that_takes_longer_than_the_timeout_while_the_server_generates_is_not_cut_off(server_factory, tmp_path):
    """Every reply takes 1.6 s against a 1 s timeout, the server's slots counting tokens meanwhile: nothing is cut off,
    nothing is sent twice, every request the server saw is a paid call."""
    srv = server_factory(latency_s=1.6, report_slots=True)
    code, err, summary = _run(srv, tmp_path, 3)
    assert code == 0, err[-2000:]
    usage = summary["usage"]
    assert usage["interrupted_calls"] == 0 and summary["retries"]["total"] == 0, (usage, summary["retries"])
    log = read_log(srv.cfg.log_path)
    assert len(log) == usage["calls"] > 0
    assert all(entry.get("fault") is None for entry in log)


def test_a_server_that_does_not_report_its_slots_is_cut_off_at_the_timeout_as_before(server_factory, tmp_path):
    """The same replies from a server with no /slots (vLLM, Ollama): cut off at 1 s, counted as paid (the server got
    them); the run stops after 3 such failures in a row."""
    srv = server_factory(latency_s=1.6)
    _code, err, summary = _run(srv, tmp_path, 3, **{"synthesis.max_consecutive_failures": 3})
    assert summary, err[-2000:]
    assert summary["usage"]["interrupted_calls"] > 0, summary["usage"]


def test_a_server_that_holds_a_request_without_generating_is_still_cut_off_and_the_call_paid(server_factory, tmp_path):
    """A fifth of the requests are held 4 s with nothing generated (their slot's count stays at 0): each is cut off
    after about the timeout (and a poll), counted as paid, and its work sent again; the rest answer."""
    srv = server_factory(latency_s=0.1, rate_hang=0.2, hang_s=4.0, report_slots=True, seed=3)
    code, err, summary = _run(srv, tmp_path, 4)
    assert code == 0, err[-2000:]
    srv.wait_idle()  # a hung request reaches the server's log when its hang is over
    hung = [entry for entry in read_log(srv.cfg.log_path) if entry.get("fault") == "hang"]
    assert hung, "no request hung: the test would show nothing"
    assert summary["usage"]["interrupted_calls"] == len(hung), (summary["usage"], len(hung))
