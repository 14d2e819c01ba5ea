"""Reliability: transient faults are retried (Retry-After honoured, counted), a rate-limited run backs
off (its window cut) instead of burning retries, bad replies become rejects, SIGKILL at many points is
exactly-once, bad input is one line and exit 2, and concurrency 256 holds. See docs/reliability.md."""

from __future__ import annotations

import errno
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from cli_helpers import refed, sets
from conftest import PROVIDER_LATENCY_S, run_overrides
from loopback_server import read_log

from refed_dspy.cli import main
from refed_dspy.config import load_config
from refed_dspy.errors import RunAborted
from refed_dspy.store.records import RejectRecord, SampleRecord
from refed_dspy.synthesis.api import synthesize


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_transient_faults_are_retried_with_retry_after_and_counted(server_factory, tmp_path):
    """429s with Retry-After, 5xx, resets and hangs: every failed request is retried and counted, and no request is
    sent again before its Retry-After (the server answers such a request 429 `early_retry`, as a provider does)."""
    srv = server_factory(
        rate_429=0.08,
        retry_after_s=1.0,  # longer than the first backoff can be (0.75 s): a client that ignores it comes early
        rate_500=0.03,
        rate_503=0.03,
        rate_reset=0.03,
        rate_hang=0.02,
        hang_s=1.5,
        enforce_retry_after=True,
    )
    run = tmp_path / "run"
    summary = synthesize(
        load_config(
            None,
            run_overrides(
                srv, run, 40, **{"synthesis.concurrency": 16, "teacher.num_retries": 6, "teacher.timeout": 0.7}
            ),
        )
    )
    srv.wait_idle()  # the hung requests reach the server's log when their hang is over
    recs = lines(run / "samples.jsonl")
    assert summary["status"] == "complete" and len(recs) == 40 == len({r["meta"]["id"] for r in recs})
    assert not [r for r in lines(run / "rejects.jsonl") if r["reason"] in ("rate_limited", "api_error")]
    log = read_log(srv.cfg.log_path)
    faults = Counter(e.get("fault") for e in log if e.get("status") != 200)
    assert {"transient_429", "transient_500", "transient_503", "reset", "hang"} <= set(faults), faults
    # every failed request was retried once, and the summary counts each retry (on a loaded machine a slow
    # answer can also time out on the client: the server logs it as a 200 it could not deliver)
    undelivered = sum(1 for e in log if e.get("status") == 200 and not e.get("delivered"))
    assert summary["retries"]["total"] == sum(faults.values()) + undelivered
    assert summary["retries"]["this_invocation"]["rate_limited"] == faults["transient_429"]
    # a 429's retry (the same request body) waited for its Retry-After: the server saw none come early, and each 429'd
    # body was answered in the end but those of samples other samples stood in for (the run did without them; how
    # long the 5xx backoff waits: test_retries_become_due_after_their_delay_only)
    assert "early_retry" not in faults
    answered = {e["sha"] for e in log if e.get("status") == 200}
    never = {e["sha"] for e in log if e.get("fault") == "transient_429"} - answered
    assert len(never) <= summary["concurrency"].get("stood_in", 0), (never, summary["concurrency"])


def _work(queued) -> tuple:
    """The work a queued retry is of: its kind, payload and slots."""
    return (queued.kind, queued.payload, queued.slots)


def test_retries_become_due_after_their_delay_only():
    """The engine's retry queue on a clock of the test's own: work that failed with a 429 becomes due exactly when its
    Retry-After has passed, and after a 5xx, reset or timeout after 0.25-0.75 s for the first retry, 0.5-1.5 s for the
    second (a jittered exponential backoff); the engine starts only what is due."""
    from refed_dspy.engine.execution import Retries
    from refed_dspy.engine.failures import Failure

    queue = Retries(max_retries=2, seed=3)
    limited = Failure("rate_limited", "429", retryable=True, retry_after=0.3)
    assert queue.schedule("a", limited, ("sample", "a", 1), now=100.0)
    assert queue.due(100.299) is None and _work(queue.due(100.3)) == ("sample", "a", 1)
    queue.take()
    for retry, (low, high) in enumerate([(0.25, 0.75), (0.5, 1.5)], start=1):
        assert queue.schedule("b", Failure("api_error", "500", retryable=True), ("sample", "b", 1), now=0.0)
        due_at = queue.waiting[0].due
        assert low <= due_at <= high, (retry, due_at)
        assert queue.due(due_at - 1e-6) is None and _work(queue.due(due_at)) == ("sample", "b", 1)
        queue.take()
    assert not queue.schedule("b", Failure("api_error", "500", retryable=True), ("sample", "b", 1), now=0.0)


def test_rate_limited_run_backs_off_instead_of_burning_retries(server_factory, tmp_path):
    srv = server_factory(max_concurrency=6, retry_after_s=0.05, latency_s=PROVIDER_LATENCY_S)
    run = tmp_path / "run"
    summary = synthesize(
        load_config(None, run_overrides(srv, run, 60, **{"synthesis.concurrency": 48, "teacher.num_retries": 3}))
    )
    assert summary["samples"] == 60 and summary["status"] == "complete"
    assert lines(run / "rejects.jsonl") == [] or all(
        r["reason"] == "dedup" or r["stage"] == "dedup" for r in lines(run / "rejects.jsonl")
    )
    assert summary["retries"]["this_invocation"].get("rate_limited", 0) > 0
    assert summary["concurrency"]["min_limit"] <= 12  # cut from 48 to near the cap's work in flight
    log = read_log(srv.cfg.log_path)
    limited = sum(1 for e in log if e.get("status") == 429)
    assert limited < 0.5 * sum(1 for e in log if e.get("status") == 200)


def test_dead_server_with_retries_stops_after_a_bounded_number_of_requests(server_factory, tmp_path):
    dead = server_factory(fail_all=True)
    run = tmp_path / "run"
    cfg = load_config(
        None,
        run_overrides(
            dead,
            run,
            10,
            **{"synthesis.max_consecutive_failures": 3, "teacher.num_retries": 2, "synthesis.concurrency": 2},
        ),
    )
    with pytest.raises(RunAborted, match="3 consecutive teacher failures"):
        synthesize(cfg)
    # (3 failed tasks + 1 in flight) x 3 attempts x 2 calls (a feedback task describes and critiques at once)
    assert len(read_log(dead.cfg.log_path)) <= 4 * 3 * 2
    assert json.loads((run / "summary.json").read_text())["status"] == "aborted"
    assert (
        synthesize(load_config(None, run_overrides(server_factory(), run, 10)), on_mismatch="resume")["samples"] == 10
    )


def test_bad_replies_become_rejects_with_reasons(server_factory, tmp_path):
    # a repair is a new draw of these faults, so their rates are high enough for some to fail twice
    srv = server_factory(
        sticky_missing=0.2,
        sticky_wrongtype=0.2,
        sticky_empty=0.15,
        sticky_refusal=0.04,
        sticky_filter400=0.04,
        sticky_length=0.04,
    )
    run = tmp_path / "run"
    summary = synthesize(load_config(None, run_overrides(srv, run, 40, **{"synthesis.concurrency": 8})))
    assert summary["samples"] == 40
    rejects = lines(run / "rejects.jsonl")
    reasons = Counter(r["reason"] for r in rejects)
    assert {"unparseable", "refused", "content_filter", "truncated"} <= set(reasons), reasons
    for r in rejects:
        RejectRecord.model_validate(r)
    for s in lines(run / "samples.jsonl"):
        SampleRecord.model_validate(s)
    faults = Counter(e.get("fault") for e in read_log(srv.cfg.log_path))
    assert faults["missing"] and faults["wrongtype"] and faults["empty"]
    assert summary["usage"]["repairs"] > 0 and summary["usage"]["parse_failures"] > reasons["unparseable"]


@pytest.mark.slow
def test_sigkill_at_many_points_is_exactly_once(server_factory, tmp_path):
    """Kill -9 when the server has seen 3, 12, 30, 60, 100 and 150 requests: inside the feedback stage
    (20 references x 2 calls come first) and across synthesis; then finish. Count everything."""
    srv = server_factory(latency_s=0.02, jitter=0.5)
    run = tmp_path / "run"
    size = 60
    args = ("synthesize", "--quiet", *sets(run_overrides(srv, run, size, **{"synthesis.concurrency": 4})))
    kills = 0
    for point in (3, 12, 30, 60, 100, 150):
        if (run / "samples.jsonl").exists() and len(lines(run / "samples.jsonl")) >= size:
            break
        proc = refed(*args)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if len(read_log(srv.cfg.log_path)) >= point:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    assert kills >= 5
    proc = refed(*args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    recs = lines(run / "samples.jsonl")
    assert len(recs) == size and len({r["meta"]["id"] for r in recs}) == size
    feedback = lines(run / "feedback.jsonl")
    assert len(feedback) == len({f["reference_id"] for f in feedback})
    units = [j["unit"] for j in lines(run / "journal.jsonl") if j.get("kind") == "unit"]
    assert len(units) == len(set(units))
    # an answer the client read is in the run's cache: a paid request repeats only when it was in flight at a kill,
    # which the next start finds unsettled in the run's write-ahead log (at most 4 a kill: concurrency 4)
    log = read_log(srv.cfg.log_path)
    delivered = Counter(e["sha"] for e in log if e.get("status") == 200 and e.get("delivered"))
    repeats = sum(n - 1 for n in delivered.values())
    in_flight = json.loads((run / "summary.json").read_text())["usage"].get("lost_in_flight", 0)
    assert repeats <= in_flight <= kills * 4, (repeats, in_flight)
    again = refed(*args)
    again.communicate(timeout=120)
    assert len(read_log(srv.cfg.log_path)) == len(log)  # a finished run sends nothing more


@pytest.mark.parametrize(
    "name,content,expect",
    [
        ("truncated.toml", "[synthesis\nsize = 3", "not valid TOML"),
        ("unknown.toml", "[synthesis]\nsise = 3\n", "did you mean 'size'"),
        ("wrongtype.toml", "[synthesis]\nsize = 'many'\n", "synthesis.size: expected int"),
        # a price, budget or duration that is not a finite number, and an extra key the section sets itself
        ("price.toml", "[teacher]\ninput_usd_per_mtok = inf\n", "teacher.input_usd_per_mtok: must be a finite"),
        ("table.toml", '[prices."openai/x"]\noutput_usd_per_mtok = nan\n', 'prices."openai/x".output_usd_per_mtok'),
        ("budget.toml", "[synthesis]\nmax_cost_usd = inf\n", "synthesis.max_cost_usd: must be a finite number"),
        ("progress.toml", "[run]\nprogress_every_s = inf\n", "run.progress_every_s: must be a finite number"),
        ("extra.toml", "[teacher]\nextra = {max_tokens = -5}\n", "set teacher.max_tokens instead"),
    ],
)
def test_bad_config_files_are_one_line_exit_2(tmp_path, capsys, name, content, expect):
    path = tmp_path / name
    path.write_text(content)
    assert main(["synthesize", "--config", str(path), "--set", f"run.dir='{tmp_path / 'run'}'"]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "name,data,expect",
    [
        ("latin1.jsonl", '{"instruction": "caf\xe9?", "response": "Oui."}\n'.encode("latin-1"), "UTF-8"),
        ("empty.jsonl", b"", "no rows"),
        ("shape.jsonl", b'{"question": "Q?", "answer": "A."}\n', "match no known shape"),
        # rows that are not objects are counted, and a file of nothing else is refused
        ("lists.jsonl", b'[1, 2, 3]\n["a"]\n', "skipped: 2 not an object"),
        ("huge.jsonl", json.dumps({"instruction": "Q?", "response": "word " * 400_000}).encode() + b"\n", "no usable"),
    ],
)
def test_bad_seed_files_are_one_line_exit_2(tmp_path, capsys, name, data, expect):
    path = tmp_path / name
    path.write_bytes(data)
    code = main(
        [
            "synthesize",
            "--set",
            f"seeds.source='{path}'",
            "--set",
            f"run.dir='{tmp_path / 'run'}'",
            "--set",
            "teacher.api_key_env=''",
            "--set",
            "teacher.api_base='http://127.0.0.1:9/v1'",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and expect.lower() in err.lower() and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "samples.jsonl").exists()


def full_disk_after(samples: int, full: Callable[[str], bool]):
    """An os.write for a disk that fills up once `samples` sample lines are written: from then on a write to a path
    for which `full(path)` holds fails with ENOSPC."""
    real_write = os.write
    written = Counter()

    def write(fd, data):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith("samples.jsonl"):
            written["samples"] += 1
        if written["samples"] > samples and full(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    return write


def test_disk_full_stops_with_one_line_and_keeps_every_record(server_factory, tmp_path, monkeypatch, capsys):
    """ENOSPC on the 6th sample write: exit 2, one line, the 5 samples already written intact; resumable."""
    import refed_dspy.store.jsonl as store

    srv = server_factory()
    run = tmp_path / "run"
    real_write = os.write
    monkeypatch.setattr(store.os, "write", full_disk_after(5, lambda path: path.endswith("samples.jsonl")))
    code = main(["synthesize", "--quiet", *sets(run_overrides(srv, run, 20))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "No space left on device" in err and len(err.splitlines()) == 1, err
    kept = lines(run / "samples.jsonl")
    assert len(kept) == 5 and all(SampleRecord.model_validate(s) for s in kept)
    monkeypatch.setattr(store.os, "write", real_write)
    assert synthesize(load_config(None, run_overrides(srv, run, 20)))["samples"] == 20
    ids = [s["meta"]["id"] for s in lines(run / "samples.jsonl")]
    assert len(ids) == len(set(ids)) == 20


def test_a_full_disk_then_resume_counts_every_paid_call(server_factory, tmp_path, monkeypatch, capsys):
    """A disk that fills up after 5 samples (every write into the run dir fails until room is made; the reserve
    the run set aside is that room), with 16 calls in flight, then resumed: the summary's paid calls are the calls
    the provider answered. Before the reserve, the record whose write failed and the calls cut off were in no file
    (328 counted against 334 answered); cut off at once, calls not yet sent counted as paid (81 against 76)."""
    import refed_dspy.store.jsonl as store
    from refed_dspy.store.jsonl import RESERVE_NAME

    srv = server_factory(latency_s=0.05)
    run = tmp_path / "run"
    real_write = os.write
    full_disk = full_disk_after(5, lambda path: path.startswith(str(run)) and (run / RESERVE_NAME).exists())

    over = run_overrides(srv, run, 30, **{"synthesis.concurrency": 16})
    monkeypatch.setattr(store.os, "write", full_disk)
    code = main(["synthesize", "--quiet", *sets(over)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "No space left on device" in err and len(err.splitlines()) == 1, err
    assert not (run / RESERVE_NAME).exists()  # given back, and the lines that say what was paid went there
    # the sample whose write hit the full disk is kept, and the work in flight finished and was written in the room
    assert len(lines(run / "samples.jsonl")) >= 6
    monkeypatch.setattr(store.os, "write", real_write)
    summary = synthesize(load_config(None, over))
    assert summary["samples"] == 30 and (run / RESERVE_NAME).exists()
    answered = [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]
    u = summary["usage"]
    assert u["calls"] == len(answered), (u["calls"], u["interrupted_calls"], len(answered))


@pytest.mark.slow
def test_stress_concurrency_256(server_factory, tmp_path):
    srv = server_factory(
        latency_s=4.0, jitter=0.5
    )  # long enough, on a 2-core machine busy with the real-model tier too, for one client process to fill 256 slots
    run = tmp_path / "run"
    summary = synthesize(load_config(None, run_overrides(srv, run, 400, **{"synthesis.concurrency": 256})))
    recs = lines(run / "samples.jsonl")
    assert summary["samples"] == 400 == len(recs) == len({r["meta"]["id"] for r in recs})
    assert srv.state.max_in_flight <= 256
    # the window was really used: the teacher has its own pool as wide as the concurrency (DSPy 3.4's
    # client would hold at most 100 connections per LM; docs/benchmarks.md)
    assert srv.state.max_in_flight >= 200, srv.state.max_in_flight
    assert summary["usage"]["calls"] == len(read_log(srv.cfg.log_path))


def test_a_provider_that_always_truncates_is_stopped_within_the_streak(server_factory, tmp_path):
    srv = server_factory(sticky_length=1.0)
    run = tmp_path / "run"
    proc = refed("synthesize", *sets(run_overrides(srv, run, 2, **{"synthesis.concurrency": 4})))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "25 consecutive teacher failures (25 truncated)" in last and "raise teacher.max_tokens" in last
    requests = len(read_log(srv.cfg.log_path))
    assert requests <= 2 * (25 + 4)  # the streak's tasks (2 feedback calls each) and those in flight
    assert json.loads((run / "summary.json").read_text())["status"] == "aborted"


def test_the_default_call_budget_stops_a_wasteful_run(server_factory, tmp_path):
    srv = server_factory(sticky_malformed=0.6)
    run = tmp_path / "run"
    cfg = load_config(
        None,
        run_overrides(
            srv,
            run,
            30,
            **{"synthesis.max_calls_per_sample": 1.5, "seeds.limit": 6, "synthesis.max_consecutive_failures": 1000},
        ),
    )
    summary = synthesize(cfg)
    assert summary["status"] == "budget" and summary["max_calls"] == 45 + 12
    assert summary["usage"]["calls"] <= 57 and len(read_log(srv.cfg.log_path)) <= 57
    assert summary["samples"] < 30


def test_every_request_is_accounted_when_many_requests_fail(server_factory, tmp_path):
    """40 % of the requests fail with a 500. The summary's paid calls are the server's answered requests and its
    failed calls the server's failed requests, exactly, feedback's paired calls included; a resume of the
    finished run reads the same totals back from the files."""
    srv = server_factory(rate_500=0.4)
    run = tmp_path / "run"
    cfg = load_config(
        None,
        run_overrides(
            srv,
            run,
            12,
            **{"synthesis.concurrency": 8, "teacher.num_retries": 8, "synthesis.max_consecutive_failures": 100},
        ),
    )
    summary = synthesize(cfg)
    log = read_log(srv.cfg.log_path)
    answered = sum(1 for e in log if e.get("status") == 200)
    failed = sum(1 for e in log if e.get("status") == 500)
    assert summary["samples"] == 12 and failed > 5
    assert summary["usage"]["calls"] == answered and summary["usage"]["failed_calls"] == failed
    assert sum(st["failed_calls"] for st in summary["usage"]["by_stage"].values()) == failed
    again = synthesize(cfg)
    assert again["usage"]["calls"] == answered and again["usage"]["failed_calls"] == failed
    assert len(read_log(srv.cfg.log_path)) == len(log)


def test_judge_accounts_every_request_when_many_fail(server_factory, tmp_path):
    """The judge runs on the same engine: under 40 % HTTP 500s its paid and failed calls are the server's answered and
    failed judge requests, exactly."""
    from refed_dspy.quality.judge import judge_run

    good = server_factory()
    run = tmp_path / "run"
    cfg = load_config(None, run_overrides(good, run, 6, **{"seeds.limit": 3, "synthesis.instructions_per_feature": 2}))
    synthesize(cfg)
    bad = server_factory(rate_500=0.4)
    cfg = load_config(
        None,
        run_overrides(
            good,
            run,
            6,
            **{
                "seeds.limit": 3,
                "synthesis.instructions_per_feature": 2,
                "judge.api_base": f"'{bad.api_base}'",
                "judge.api_key_env": "''",
                "judge.num_retries": 8,
                "judging.concurrency": 4,
                "judging.max_consecutive_failures": 100,
            },
        ),
    )
    s = judge_run(run, cfg)
    log = read_log(bad.cfg.log_path)
    answered = sum(1 for e in log if e.get("status") == 200)
    failed = sum(1 for e in log if e.get("status") == 500)
    assert s["judged"] == 6 and failed > 3
    assert s["usage"]["calls"] == answered and s["usage"]["failed_calls"] == failed


def _as_in_the_background() -> None:
    """What a shell does to a command it starts with `&` in a script: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _as_in_the_foreground() -> None:
    """A command started in the foreground: SIGINT at its default, whatever the test runner inherited (pytest itself
    started in the background ignores SIGINT, and its children would too)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    "sig, background", [("SIGINT", False), ("SIGTERM", False), ("SIGTERM", True), ("SIGHUP", True)]
)
def test_a_stopped_run_pays_for_nothing_twice(server_factory, tmp_path, sig, background):
    """Stopped mid-run and resumed: every answer the server sent was read and recorded (the calls in flight
    finish within run.stop_grace_s), so no request body is answered twice, and the summary's paid calls are
    the server's answered requests exactly. SIGTERM and SIGHUP do so also for a command started with SIGINT ignored
    (as `cmd &` in a script, or nohup under some shells, starts it)."""
    srv = server_factory(latency_s=0.25, jitter=0.5)
    run = tmp_path / "run"
    args = ("synthesize", *sets(run_overrides(srv, run, 30, **{"synthesis.concurrency": 6})))
    proc = refed(*args, preexec_fn=_as_in_the_background if background else _as_in_the_foreground)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(lines(run / "samples.jsonl")) < 8:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + getattr(signal, sig), err
    stopped = json.loads((run / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["usage"]["interrupted_calls"] == 0
    log = read_log(srv.cfg.log_path)
    assert stopped["usage"]["calls"] == sum(1 for e in log if e.get("status") == 200)
    proc = refed(*args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    log = read_log(srv.cfg.log_path)
    answered = [e for e in log if e.get("status") == 200]
    assert all(e["delivered"] for e in answered)
    assert len({e["sha"] for e in answered}) == len(answered)  # no request paid for twice
    summary = json.loads((run / "summary.json").read_text())
    assert summary["samples"] == 30 and summary["usage"]["calls"] == len(answered)


def test_requests_the_client_gave_up_on_are_paid_and_kept_against_the_cost_budget(server_factory, tmp_path, capsys):
    """DSPy's own client, a teacher that never answers within the timeout: every request reached the server, so each
    is a paid call of unknown tokens (once a failed one, priced at nothing: such a run never met its cost budget and
    stopped only at 25 failures in a row), kept against max_cost_usd at what one call is reserved at."""
    # a timeout of 1 s, not less: under CI's load a request can take 0.3 s to reach the server, and one the client gave
    # up on before it arrived is paid here (the client cannot tell) but never in the server's log (20 against 19 once)
    srv = server_factory(rate_hang=1.0, hang_s=2.0)
    run = tmp_path / "run"
    over = run_overrides(
        srv,
        run,
        20,
        **{
            "teacher.timeout": 1.0,
            "teacher.num_retries": 0,
            "teacher.max_tokens": 1000,
            "teacher.input_usd_per_mtok": 1.0,
            "teacher.output_usd_per_mtok": 2.0,
            "synthesis.max_cost_usd": 0.05,
            "synthesis.concurrency": 4,
        },
    )
    code = main(["synthesize", *sets(over)])
    err = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    u = summary["usage"]
    deadline = time.monotonic() + 30  # a hung request reaches the server's log when its hang ends
    while len(sent := [e for e in read_log(srv.cfg.log_path) if e.get("fault") == "hang"]) < u["calls"]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert code == 1 and summary["status"] == "budget", (code, err)
    assert u["calls"] == u["interrupted_calls"] == len(sent) > 0 and u["failed_calls"] == 0, (u, len(sent))
    assert u["interrupted_cost_usd"] <= 0.05 and u["cost_usd"] == 0
    assert "cost budget" in err and "cut off" in err, err
    reasons = Counter(r["reason"] for r in lines(run / "rejects.jsonl"))
    assert set(reasons) <= {"timeout"}, reasons


def test_a_call_budget_is_spent_up_to_what_the_next_piece_of_work_may_need(server_factory, tmp_path):
    """Work is reserved at its worst case (repairs included); a reservation refused while work is under way waits
    for that work to give back what it did not spend. The run stops only when, with nothing under way, the next piece
    of work could still break the budget (it stopped at the first refusal: 11 calls of 20 at 8 in flight)."""
    import re

    srv = server_factory(latency_s=0.05)
    run = tmp_path / "run"
    summary = synthesize(
        load_config(None, run_overrides(srv, run, 30, **{"synthesis.max_calls": 20, "synthesis.concurrency": 8}))
    )
    calls = summary["usage"]["calls"]
    assert summary["status"] == "budget" and calls == len(read_log(srv.cfg.log_path)) <= 20
    found = re.search(
        r"\((\d+) calls made, (\d+) left; the next piece of work .* may make (\d+) calls", summary["budget_stop"]
    )
    assert found, summary["budget_stop"]
    made, left, next_needs = map(int, found.groups())
    assert (made, left) == (calls, 20 - calls) and next_needs > left, summary["budget_stop"]


def _kill_at(proc, srv, served: int, timeout: float = 120) -> bool:
    """SIGKILL `proc` once the server has seen `served` requests; False when it ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len(read_log(srv.cfg.log_path)) >= served:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return True
        time.sleep(0.005)
    proc.wait(timeout=60)
    return False


def test_a_call_budget_holds_across_kills(server_factory, tmp_path):
    """synthesis.max_calls = 100, a server answering in 0.4 s: killed with -9 twice mid-run (at about 30 and 60
    requests), then run to its end. The calls in flight at each kill, and those answered whose records were not yet
    written, were counted nowhere (the server served 105 under a ledger of 98): the write-ahead log counts them, so the
    server serves at most 100, and the ledger is never below what it served."""
    srv = server_factory(latency_s=0.4)
    run = tmp_path / "run"
    over = run_overrides(srv, run, 60, **{"synthesis.concurrency": 8, "synthesis.max_calls": 100})
    args = ("synthesize", "--quiet", *sets(over))
    for point in (30, 60):
        assert _kill_at(refed(*args), srv, point), "the run ended before it could be killed"
    proc = refed(*args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 1), err  # 1: stopped by the call budget
    served = len(read_log(srv.cfg.log_path))
    summary = json.loads((run / "summary.json").read_text())
    assert served <= 100
    assert summary["usage"]["calls"] >= served
    assert summary["usage"].get("lost_in_flight", 0) > 0  # the kills left calls in flight, now counted as paid
    recs = lines(run / "samples.jsonl")
    assert len(recs) == len({r["meta"]["id"] for r in recs})


def test_a_cost_budget_reserves_a_call_at_its_real_prompt(server_factory, tmp_path):
    """References of 190,000 characters (made-up words: about 60,000 tokens), gpt-4o's prices, synthesis.max_cost_usd
    = 0.40: the first calls were reserved at a prompt of 2,000 tokens whatever its length, so two such calls ran at
    once ($0.48 spent). Each call's prompt is now counted before it is sent: what the server's own token counts cost at
    gpt-4o's prices stays within the budget."""
    import random

    rng = random.Random(7)
    seeds = tmp_path / "long.jsonl"
    with open(seeds, "w") as fh:
        for _ in range(3):  # made-up words of 5 letters: about 2 tokens each, 95,000 characters a field
            half = " ".join("".join(rng.choices("bcdfghjklmnpqrstvwxz", k=5)) for _ in range(15_800))
            fh.write(json.dumps({"instruction": half, "response": half}) + "\n")
    srv = server_factory(latency_s=0.2, tokenizer="o200k_base")
    run = tmp_path / "run"
    over = run_overrides(
        srv,
        run,
        4,
        **{
            "teacher.model": "'openai/gpt-4o'",
            "seeds.source": f"'{seeds}'",
            "synthesis.concurrency": 4,
            "synthesis.max_cost_usd": 0.40,
        },
    )
    code = main(["synthesize", "--quiet", *sets(over)])
    assert code == 1  # stopped by the cost budget
    served = [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]
    # gpt-4o's list price: $2.50 input, $1.25 cached input, $10 output per million tokens
    spent = (
        sum(
            ((e["prompt_tokens"] - e.get("cached_tokens", 0)) * 2.5 + e.get("cached_tokens", 0) * 1.25)
            + e["completion_tokens"] * 10.0
            for e in served
        )
        / 1e6
    )
    assert served and spent <= 0.40
    summary = json.loads((run / "summary.json").read_text())
    assert summary["usage"]["cost_usd"] == pytest.approx(spent, rel=1e-6)


def test_a_cost_budget_holds_online_when_the_provider_counts_three_times_our_tokens(server_factory, tmp_path, capsys):
    """Online, the calls sent before a role's first answer were weighed at refed's count of their prompts: references
    a provider counts at three tokens a word where refed counts one (the loopback's chars4 tokenizer on
    "information"), two calls in flight, billed $0.0074 of $0.004. A model not of OpenAI's o200k family has its
    prompts weighed at their UTF-8 bytes until an answer says the provider's count: under $0.004 no call is sent and
    the run says why; under $0.02 it runs, and what the server counted stays within each budget."""
    text = " ".join(["information"] * 8000)
    seeds = tmp_path / "long.jsonl"
    seeds.write_text(
        "".join(json.dumps({"instruction": f"Say {i} things.", "response": text}) + "\n" for i in range(4))
    )
    srv = server_factory(latency_s=0.3, tokenizer="chars4")
    priced = {"teacher.model": "'openai/our-own-teacher'", "teacher.input_usd_per_mtok": 0.15}
    priced |= {"teacher.output_usd_per_mtok": 0.6, "teacher.max_tokens": 300, "seeds.source": f"'{seeds}'"}
    spent = []
    for budget in (0.004, 0.02):
        more = {"synthesis.max_cost_usd": budget, "synthesis.concurrency": 4}
        over = run_overrides(srv, tmp_path / f"run{budget}", 8, **priced, **more)
        assert main(["synthesize", *sets(over)]) == 1  # stopped by the budget
        served = [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]
        spent.append(sum(e["prompt_tokens"] * 0.15 + e["completion_tokens"] * 0.6 for e in served) / 1e6 - sum(spent))
        assert spent[-1] <= budget, (spent, len(served))
        if budget == 0.004:
            assert not served and "96,775 as its provider may" in capsys.readouterr().out
    assert spent[-1] > 0.004 and max(e["prompt_tokens"] for e in served) > 24_000  # at three times our count


def test_a_short_prompt_heard_first_does_not_vouch_for_long_ones(server_factory, tmp_path):
    """A provider's count of a short seed's prompt said nothing of long references': a reviewer's run whose first seed
    was one line and the next three 8,000-word references (three tokens a word at the provider, one at refed) billed
    $0.0076 of $0.005, the long prompts weighed at refed's count once the short one had been heard. A prompt longer
    than any whose count a provider has said is weighed at its UTF-8 bytes: what the server counted stays within."""
    text = " ".join(["information"] * 8000)
    seeds = tmp_path / "mixed.jsonl"
    rows = [{"instruction": "Say one thing.", "response": "One thing."}]
    rows += [{"instruction": f"Say {i} things.", "response": text} for i in range(3)]
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    srv = server_factory(latency_s=0.3, tokenizer="chars4")
    priced = {"teacher.model": "'openai/our-own-teacher'", "teacher.input_usd_per_mtok": 0.15}
    priced |= {"teacher.output_usd_per_mtok": 0.6, "teacher.max_tokens": 300, "seeds.source": f"'{seeds}'"}
    more = {"synthesis.max_cost_usd": 0.005, "synthesis.concurrency": 4}
    assert main(["synthesize", *sets(run_overrides(srv, tmp_path / "run", 40, **priced, **more))]) == 1  # budget
    served = [e for e in read_log(srv.cfg.log_path) if e.get("status") == 200]
    spent = sum(e["prompt_tokens"] * 0.15 + e["completion_tokens"] * 0.6 for e in served) / 1e6
    assert served and spent <= 0.005, (spent, len(served))


def test_several_completions_a_call_are_refused_before_any_request(server_factory, tmp_path, capsys):
    """DSPy sends a call's `n` completions as n requests, and a call's record holds one reply's usage: an attacker's
    `teacher.extra.n = 3` billed 63 requests ($0.59) under a $0.25 budget, refed said 21 calls, and in batch mode ran
    to 83 times its budget. `n` is refused in a section's extra (exit 2, one line), and a call that asks for it (a
    user's LM, a module's own arguments) is refused before it is sent: the server sees no request."""
    import dspy

    from refed_dspy.errors import ConfigError

    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 4)
    for key in ("teacher.extra.n", "judge.extra.num_generations"):
        assert main(["synthesize", *sets([*over, f"{key}=3"])]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "several completions" in err and "Traceback" not in err, err
    teacher = dspy.LM("openai/loopback", api_base=srv.api_base, api_key="unused", n=3)
    with pytest.raises((ConfigError, RunAborted), match="several completions"):
        synthesize(load_config(None, over), teacher=teacher)
    from refed_dspy.clients.lm import bounded

    lm = bounded(dspy.LM("openai/loopback", api_base=srv.api_base, api_key="unused"), "teacher")
    with pytest.raises(ConfigError, match="'n=2' in the call's arguments"):
        lm(messages=[{"role": "user", "content": "Say two things."}], n=2)
    # extra_body, which the client merges into the request: one request answered with three completions
    body = bounded(dspy.LM("openai/loopback", api_base=srv.api_base, api_key="unused", extra_body={"n": 3}), "teacher")
    with pytest.raises(ConfigError, match="'n=3' in extra_body in its LM's arguments"):
        body(messages=[{"role": "user", "content": "Say three things."}])
    # an output limit in extra_body, past the one the call is reserved at (a reviewer's $0.2001 of a $0.10 budget)
    longer = {"max_completion_tokens": 100000}
    body = bounded(dspy.LM("openai/loopback", api_base=srv.api_base, api_key="unused", extra_body=longer), "teacher")
    with pytest.raises(ConfigError, match="'max_completion_tokens' in extra_body in its LM's arguments"):
        body(messages=[{"role": "user", "content": "Say one long thing."}])
    with pytest.raises(ConfigError, match="'service_tier' in extra_body in the call's arguments"):
        lm(messages=[{"role": "user", "content": "Say it fast."}], extra_body={"service_tier": "priority"})
    for body in ("{n=3}", "{max_tokens=100000}"):
        other = run_overrides(srv, tmp_path / "other", 4, **{"teacher.extra.extra_body": body})
        assert main(["synthesize", *sets(other)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "teacher.extra" in err and "Traceback" not in err, err
    assert read_log(srv.cfg.log_path) == []


def test_from_python_a_truncated_reply_is_a_reject_not_dspys_warning(server_factory, tmp_path, caplog):
    """DSPy logs a warning for each reply cut off at max_tokens ("increase max_tokens or inspect history"); the run has
    already made it a reject that says so. The command always dropped it; `refed_dspy.synthesize` from Python now does
    too, while it runs (a success printed advice the library had acted on), and leaves DSPy's logger as it was."""
    import logging

    srv = server_factory(sticky_length=0.5)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        # a model of its own: no answer of an earlier test's comes from DSPy's cache (keyed without the endpoint)
        model = f"'openai/loopback-{uuid.uuid4().hex[:8]}'"
        over = run_overrides(srv, run, 6, **{"synthesis.concurrency": 4, "teacher.model": model})
        summary = synthesize(load_config(None, over))
    assert summary["status"] == "complete"
    assert any(e.get("fault") == "length" for e in read_log(srv.cfg.log_path))  # some replies were cut off
    assert not [r for r in caplog.records if "truncated" in r.getMessage() and r.name.startswith("dspy")]
    assert not logging.getLogger("dspy.clients.lm").filters
