"""The first calls check the endpoint: a 404, a refused key or a reply in another format stops the run after at most
3 requests, in one line naming the URL, the format expected and the fix, with exit 2 (the config is wrong), whatever
the run's concurrency. The loopback server's log is the referee of what was sent."""

from __future__ import annotations

import json

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
    assert "endpoint moved" not in err  # left empty: a new run, not one resumed at a moved endpoint


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


def _held(run) -> dict[str, bytes]:
    """Every file of a run dir (its cache's included) and its bytes; the lock, the disk's reserve (taken again at
    each start) and SQLite's passing files aside."""
    files = [p for p in sorted(run.rglob("*")) if p.is_file() and "lock" not in p.name and p.name != ".refed-reserve"]
    return {str(p.relative_to(run)): p.read_bytes() for p in files if not p.name.endswith(("-shm", "-wal"))}


def test_fresh_at_a_wrong_endpoint_loses_nothing_the_run_had(server_factory, tmp_path, run):
    """--fresh with a typo in the endpoint: the first calls stop it (exit 2) and the run dir is as it was, its samples,
    judgments, ledgers and paid cache included (a newcomer's trial found them deleted before the endpoint was tried);
    the same for the judge's --fresh. The right endpoint then starts the new run, and nothing is kept aside."""
    right = server_factory()
    over = [f"judge.api_base='{right.api_base}'", "judge.api_key_env=''"]
    code, _, err = run_refed("judge", "run", str(run), *sets(over))
    assert code == 0, err[-2000:]
    before = _held(run)
    assert {"samples.jsonl", "judgments.jsonl", "ledger.jsonl", "config.toml"} <= set(before)
    wrong = server_factory(anthropic="404")
    code, _, err = run_refed("synthesize", "--fresh", *anthropic_sets(wrong, run, host(wrong)))
    assert code == 2 and "answered 404" in error_line(err)
    assert _held(run) == before
    over = ["judge.model='anthropic/claude-haiku-4-5'", f"judge.api_base='{wrong.api_base}'", "judge.api_key_env=''"]
    code, _, err = run_refed("judge", "run", str(run), "--fresh", *sets(over))
    assert code == 2 and "answered 404" in error_line(err)
    # the judge's --fresh replaces its judging; the cache, shared with the run, it only reads, and the run's events
    # hear of the attempt
    after = _held(run)
    kept = [name for name in before if not name.startswith("cache/") and name != "events.jsonl"]
    assert set(after) == set(before) and {k: after[k] for k in kept} == {k: before[k] for k in kept}
    code, _, err = run_refed("synthesize", "--fresh", *anthropic_sets(right, run, host(right)))
    assert code == 0, err[-2000:]
    assert not (run / ".replaced").exists() and not (run / "judgments.jsonl").exists()
    assert len(lines_of(run / "samples.jsonl")) == 20


def test_after_a_fresh_put_back_the_same_process_writes_its_answers_into_the_run_s_cache(server_factory, run):
    """In one Python process: a --fresh stopped by a wrong endpoint puts the run's cache folder back; the next run there
    writes its answers into that folder, not into the deleted files of the one the stopped attempt opened."""
    from dspy.clients.cache import Cache

    def entries() -> int:
        reader = Cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(run / "cache"))
        try:
            return len(reader.disk_cache)
        finally:
            reader.disk_cache.close()

    wrong = server_factory(anthropic="404")
    before = entries()
    with pytest.raises(EndpointError):
        synthesize(load_config(None, anthropic_sets_of(wrong, run)), on_mismatch="fresh")
    assert entries() == before
    more = server_factory()
    over = run_overrides(more, run, 36, **{"seeds.limit": 8, "synthesis.instructions_per_feature": 2})
    assert synthesize(load_config(None, over))["samples"] == 36
    assert entries() > before


def anthropic_sets_of(srv, run) -> list[str]:
    return run_overrides(srv, run, 20, **{"teacher.model": ANTHROPIC, "teacher.api_base": f"'{host(srv)}'"})


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_batch_api_that_refuses_the_key_stops_with_exit_2(server_factory, tmp_path):
    srv = server_factory(fail_status=401)
    run = tmp_path / "run"
    extra = {"synthesis.mode": "'batch'", "batch.poll_s": 0.05, "batch.linger_s": 0.2}
    code, _, err = run_refed("synthesize", *anthropic_sets(srv, run, host(srv), **extra))
    line = error_line(err)
    assert code == 2 and f"teacher: {host(srv)}/v1/messages refused the request: HTTP 401" in line
    assert 1 <= len([e for e in read_log(srv.cfg.log_path) if e.get("batch_api")]) <= 3


def test_a_404_once_the_endpoint_has_answered_is_that_request_s_reject(server_factory, tmp_path):
    """An endpoint that answered the run's first calls and then 404s some requests (a gateway with no route for one,
    a model being swapped) rejects those items; the run goes on and completes (it used to stop, exit 3, and again on
    every resume). The server 404s its 9th to 12th requests, whatever the machine's speed."""
    srv = server_factory(extra={"not_found_seq": [9, 12]})
    run = tmp_path / "run"
    summary = synthesize(load_config(None, run_overrides(srv, run, 12, **{"seeds.limit": 6})))
    assert summary["status"] == "complete" and summary["samples"] == 12
    statuses = [e.get("status") for e in requests(srv)]
    assert statuses.count(404) == 4, statuses
    rejected = [json.loads(line)["reason"] for line in (run / "rejects.jsonl").read_text().splitlines()]
    assert "not_found" in rejected, rejected


def test_the_fixed_config_rerun_in_the_same_process_keeps_its_cache(server_factory, tmp_path):
    """After an EndpointError wiped the empty run dir, the fixed run in the same Python process writes its cache to
    the run dir again (DSPy's cache, still open on the deleted directory, took its writes into deleted files): a kill
    and a resume would have paid every call again."""
    from diskcache import FanoutCache

    wrong, right = server_factory(anthropic="404"), server_factory()
    run = tmp_path / "run"
    with pytest.raises(EndpointError):
        synthesize(
            load_config(
                None,
                run_overrides(
                    wrong,
                    run,
                    4,
                    **{"teacher.model": ANTHROPIC, "teacher.api_base": f"'{host(wrong)}'", "seeds.limit": 2},
                ),
            )
        )
    done = synthesize(
        load_config(
            None,
            run_overrides(
                right, run, 4, **{"teacher.model": ANTHROPIC, "teacher.api_base": f"'{host(right)}'", "seeds.limit": 2}
            ),
        )
    )
    assert done["status"] == "complete"
    with FanoutCache(str(run / "cache"), shards=16) as cache:
        assert len(cache) == done["usage"]["calls"] > 0


def test_a_reply_in_another_format_is_not_replayed_once_the_judge_is_fixed(server_factory, tmp_path, run):
    """A judge pointed at a server of another format stops with exit 2; its replies (no text, no usage) are not kept
    in the run's cache, whose key leaves out api_base: the fixed judge is asked, and judges the run."""
    wrong, right = server_factory(anthropic="openai"), server_factory()
    model = "judge.model='anthropic/claude-haiku-4-5'"
    code, _, err = run_refed(
        "judge", "run", str(run), *sets([model, f"judge.api_base='{host(wrong)}'", "judge.api_key_env=''"])
    )
    assert code == 2 and "not in the Anthropic Messages format" in error_line(err)
    code, _, err = run_refed(
        "judge", "run", str(run), *sets([model, f"judge.api_base='{host(right)}'", "judge.api_key_env=''"])
    )
    assert code == 0, err[-2000:]
    assert requests(right), "the fixed judge was never asked: a cached reply of the wrong server was replayed"


def test_a_batch_sent_before_the_batch_api_fails_is_never_forgotten(server_factory, tmp_path):
    """A batch went out, then the batch API answers 404 to the status checks (an expired or deleted batch): the run
    stops, and its batch records stay in the run dir (a batch out there is billed when it ends; wiping the run dir as
    if nothing was made would forget it and pay for it again)."""
    import threading
    import time

    srv = server_factory(extra={"batch_line_s": 0.5})
    run = tmp_path / "run"

    def fail_once_sent() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any((run / "batches").glob("*")):
            time.sleep(0.01)
        srv.state.cfg.fail_status = 404

    flipper = threading.Thread(target=fail_once_sent, daemon=True)
    flipper.start()
    extra = {"synthesis.mode": "'batch'", "batch.poll_s": 0.05, "batch.linger_s": 0.1}
    code, _, err = run_refed("synthesize", *sets(run_overrides(srv, run, 4, **{"seeds.limit": 2, **extra})))
    flipper.join(5)
    assert code != 0, err[-2000:]
    assert any((run / "batches").glob("*")), "the batch records were wiped"


def test_an_endpoint_nothing_listens_on_or_a_model_of_no_provider_stops_with_exit_2(tmp_path):
    """Connection refused on the first calls (after the client's own retries) is the config's error, as a 404 is: one
    line naming the URL and the fix, exit 2 (it was 25 failures, exit 3, "run the same command again to resume").
    A model whose provider DSPy and LiteLLM cannot place says so, with no call made (it was 25 failures too)."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    over = {"teacher.api_base": f"'{base}'", "teacher.api_key_env": "''", "teacher.num_retries": 1}
    code, _, err = run_refed("synthesize", "--set", f"run.dir='{tmp_path / 'a'}'", *sets_of(over))
    line = error_line(err)
    assert code == 2 and f"teacher: {base}/chat/completions did not answer" in line, line
    assert "start the server it names, or fix teacher.api_base" in line
    assert not (tmp_path / "a" / "samples.jsonl").exists() and not (tmp_path / "a" / "rejects.jsonl").exists()

    over["teacher.model"] = "'foo/bar'"
    code, _, err = run_refed("synthesize", "--set", f"run.dir='{tmp_path / 'b'}'", *sets_of(over))
    line = error_line(err)
    assert code == 2 and "teacher.model = 'foo/bar' names no provider" in line and "no LM call was made" in line


def sets_of(over: dict) -> list[str]:
    return [x for k, v in {"synthesis.size": 4, "run.progress": "false", **over}.items() for x in ("--set", f"{k}={v}")]


def test_once_the_endpoint_has_answered_a_refused_connection_is_retried_not_a_stop():
    from refed_dspy.clients.calls import CallInfo
    from refed_dspy.engine.failures import Failure, FirstCalls

    refused = Failure("unreachable", "nothing answered", final=False, retryable=True)
    first = FirstCalls()
    assert first.note([CallInfo("feedback", "m", error="LMTransportError")], refused).fatal  # never answered
    first.note([CallInfo("feedback", "m", prompt_tokens=5)], None)
    later = first.note([CallInfo("feedback", "m", error="LMTransportError")], refused)
    assert later.retryable and not later.fatal  # a server restarting under a long run
    # with several replicas, one that does not answer is taken out by the spread; the others carry the run
    assert not FirstCalls(unreachable_stops=False).note([CallInfo("feedback", "m", error="x")], refused).fatal
    # nor when another call of that piece of work got a reply
    answered_one = [CallInfo("feedback", "m", prompt_tokens=5), CallInfo("feedback", "m", error="x")]
    assert not FirstCalls().note(answered_one, refused).fatal
