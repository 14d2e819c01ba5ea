"""Batch mode against the loopback's OpenAI Files + Batches and Anthropic Message Batches.

What the server saw is the referee: its log lists every batch created with its custom_ids, and every batch line
it answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import crash_env
from conftest import run_overrides
from loopback_server import LoopbackServer, ServerConfig, read_log

from refed_dspy.config import load_config
from refed_dspy.launch.batch.store import BatchStore
from refed_dspy.synthesis.api import synthesize

FAST = {"batch_validating_s": 0.01, "batch_finalizing_s": 0.01}


def batch_overrides(srv, run: Path, size: int, **extra) -> list[str]:
    return run_overrides(
        srv,
        run,
        size,
        **{
            "seeds.limit": 4,
            "synthesis.instructions_per_feature": 2,
            "synthesis.mode": "'batch'",
            "batch.poll_s": 0.05,
            "batch.linger_s": 0.2,
            **extra,
        },
    )


def created(log: list[dict]) -> list[dict]:
    return [e for e in log if "batch_create" in e]


def assert_no_custom_id_twice(log: list[dict]) -> Counter:
    ids = Counter(cid for e in created(log) for cid in e["custom_ids"])
    assert ids and max(ids.values()) == 1, [cid for cid, n in ids.items() if n > 1][:5]
    return ids


def assert_none_lost(run: Path, log: list[dict], name: str = "batches") -> None:
    """Every custom_id the run planned reached the provider, and every one has an outcome on disk."""
    store = BatchStore(run, name, readonly=True)
    planned = {cid for b in store.batches.values() for cid in b.custom_ids}
    sent = {cid for e in created(log) for cid in e["custom_ids"]}
    assert planned == sent
    assert not store.open_batches()
    assert planned <= set(store.results)


def samples_of(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]


def test_openai_batch_run_has_exactly_n_samples_in_waves(tmp_path):
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        s = synthesize(load_config(None, batch_overrides(srv, run, 12)))
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["samples"] == 12 and len(samples_of(run)) == 12
    assert s["mode"] == "batch"
    # the dependent stages went out as waves: feedback first, then instructions, then responses, then improvements
    stages = [b.stage for b in BatchStore(run, readonly=True).batches.values()]
    firsts = [stages.index(st) for st in ("feedback", "synthesize", "generate", "improve")]
    assert firsts == sorted(firsts) and firsts[0] == 0 and len(stages) >= 4
    ids = assert_no_custom_id_twice(log)
    assert_none_lost(run, log)
    # every call went by batch: the server answered no chat request that was not a batch line
    chat = [e for e in log if e.get("path", "").endswith("/chat/completions")]
    assert chat and all(e.get("custom_id") for e in chat)
    assert s["usage"]["calls"] == len(ids) == s["batch"]["submitted_calls_this_invocation"]
    assert s["batch"]["saved_usd"] == pytest.approx(s["cost_usd"], abs=1e-6)  # half price: saved as much as paid


def test_batch_costs_half_of_online_for_the_same_work(tmp_path):
    costs = {}
    for mode in ("online", "batch"):
        with LoopbackServer(ServerConfig(extra=FAST)) as srv:
            run = tmp_path / mode
            s = synthesize(load_config(None, batch_overrides(srv, run, 12, **{"synthesis.mode": f"'{mode}'"})))
        assert s["status"] == "complete" and s["samples"] == 12
        costs[mode] = s["per_sample"]["cost_usd"]
    assert costs["batch"] <= 0.52 * costs["online"]


def test_anthropic_message_batches(tmp_path):
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        over = batch_overrides(srv, run, 8, **{"teacher.model": "'anthropic/claude-haiku-4-5'"})
        s = synthesize(load_config(None, over))
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["samples"] == 8
    assert {e["api"] for e in created(log)} == {"anthropic"}
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)
    assert s["cost_usd"] and s["batch"]["price_factor"] == 0.5


def test_failed_expired_and_erroring_batches_still_give_exactly_n(tmp_path):
    """Every 3rd batch fails validation, every 2nd expires halfway (its finished half is kept), 10% of lines come back
    as 500s, 10% of replies are malformed: the run still ends with exactly N valid samples, and the requests that came
    back unanswered went out again under new custom_ids."""
    extra = {**FAST, "batch_fail_every": 3, "batch_expire_every": 2, "batch_line_error_rate": 0.1}
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), sticky_malformed=0.1, extra=extra)) as srv:
        run = tmp_path / "run"
        s = synthesize(load_config(None, batch_overrides(srv, run, 16)))
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["samples"] == 16 and len(samples_of(run)) == 16
    assert all(x["response"] and x["improved_response"] for x in samples_of(run))
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)
    store = BatchStore(run, readonly=True)
    finals = Counter(b.final for b in store.batches.values())
    assert finals["failed"] and finals["expired"] and finals["completed"]
    assert s["batch"]["resubmitted"] > 0
    # a request sent again is the same request: the custom_ids of one family carry the same body
    lines = {x["custom_id"]: x["body"] for b in store.batches.values() for x in store.requests_of(b.local_id)}
    families: dict[str, list] = {}
    for cid, body in lines.items():
        families.setdefault(cid.rsplit("-", 1)[0], []).append(json.dumps(body, sort_keys=True))
    assert any(len(v) > 1 for v in families.values()) and all(len(set(v)) == 1 for v in families.values())


def test_cancelled_batch_keeps_its_finished_lines(tmp_path):
    import threading
    import urllib.request

    extra = {**FAST, "batch_line_s": 0.05}
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=extra)) as srv:
        run = tmp_path / "run"
        cancelled = []

        def cancel_first():  # someone cancels the first batch at the provider while it runs
            import time

            while not cancelled:
                time.sleep(0.02)
                with srv.state.batches.lock:
                    first = next(iter(srv.state.batches.batches.values()), None)
                if first is not None and first.done >= 2:
                    req = urllib.request.Request(f"{srv.api_base}/batches/{first.id}/cancel", method="POST", data=b"{}")
                    urllib.request.urlopen(req).read()
                    cancelled.append(first.id)

        t = threading.Thread(target=cancel_first, daemon=True)
        t.start()
        s = synthesize(load_config(None, batch_overrides(srv, run, 8)))
        t.join(timeout=5)
    log = read_log(tmp_path / "log.jsonl")
    assert cancelled and s["status"] == "complete" and s["samples"] == 8
    store = BatchStore(run, readonly=True)
    first = next(iter(store.batches.values()))
    assert first.final == "cancelled"
    kept = [cid for cid in first.custom_ids if not store.results[cid].lost]
    assert 2 <= len(kept) < len(first.custom_ids)  # its finished lines were used, the rest sent again
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def _cli(
    run_args: list[str], env_extra: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    if env.get("REFED_CRASH_AT"):  # the crash seam: tests/crash_at/sitecustomize.py
        env = crash_env(env["REFED_CRASH_AT"], env)
    return subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", *run_args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _set(over: list[str]) -> list[str]:
    out = []
    for o in over:
        out += ["--set", o]
    return out


def kill_then_resume(over: list[str], crash: str, kill_env: dict | None = None, resume_env: dict | None = None) -> None:
    """`refed synthesize` killed by SIGKILL at `crash` (REFED_CRASH_AT), then the same command run to the end."""
    args = ["synthesize", *_set(over)]
    killed = _cli(args, {"REFED_CRASH_AT": crash, **(kill_env or {})})
    assert killed.returncode == -9, killed.stderr[-2000:]
    done = _cli(args, resume_env)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    "point", ["before_upload", "after_upload", "after_create", "while_polling", "while_writing_results"]
)
def test_sigkill_then_resume_sends_nothing_twice_and_loses_nothing(tmp_path, point):
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        nth = "2" if point in ("before_upload", "after_upload", "after_create") else "3"
        kill_then_resume(batch_overrides(srv, run, 8), f"{point}:{nth}")
    log = read_log(tmp_path / "log.jsonl")
    assert len(samples_of(run)) == 8
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)
    # the provider answered each request once: no line was run twice either
    answered = Counter(e["custom_id"] for e in log if e.get("custom_id"))
    assert max(answered.values()) == 1


def test_detach_then_status_then_resume(tmp_path):
    with LoopbackServer(
        ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra={**FAST, "batch_line_s": 0.02})
    ) as srv:
        run = tmp_path / "run"
        args = ["synthesize", *_set(batch_overrides(srv, run, 8))]
        first = _cli([*args, "--detach"])
        assert first.returncode == 0, first.stderr[-2000:]
        assert "batches submitted" in first.stdout
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "submitted" and summary["samples"] == 0
        status = _cli(["status", str(run)])
        assert status.returncode == 0 and "b00001" in status.stdout and "feedback" in status.stdout
        assert "state: submitted; its batches wait at the provider" in status.stdout
        typed = json.loads(_cli(["status", str(run), "--json"]).stdout)
        open_ = typed["batches"]["synthesis"]["open_batches"]
        assert typed["state"] == "submitted" and typed["mode"] == "batch" and typed["samples"] == 0
        assert open_ and typed["batches"]["synthesis"]["open"] == len(open_) and open_[0]["stage"] == "feedback"
        assert typed["batches"]["synthesis"]["waiting_requests"] == sum(b["requests"] for b in open_)
        rounds = 0
        while json.loads((run / "summary.json").read_text())["status"] != "complete":
            rounds += 1
            assert rounds < 12
            again = _cli([*args, "--detach"])
            assert again.returncode == 0, again.stderr[-2000:]
        final = _cli(["status", str(run)])
    log = read_log(tmp_path / "log.jsonl")
    assert rounds >= 2  # each detached round submitted the next wave
    assert len(samples_of(run)) == 8
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)
    assert "state: complete" in final.stdout and "samples: 8/8" in final.stdout and "0 open" in final.stdout


def test_judging_in_batch_mode(tmp_path):
    from refed_dspy.quality.judge import judge_run

    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        over = batch_overrides(
            srv,
            run,
            6,
            **{
                "synthesis.mode": "'online'",
                "judging.mode": "'batch'",
                "judge.api_base": f"'{srv.api_base}'",
                "judge.api_key_env": "''",
            },
        )
        cfg = load_config(None, over)
        synthesize(cfg)
        s = judge_run(run, cfg)
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["judged"] == 6 and s["mode"] == "batch"
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log, "judge_batches")
    assert len([e for e in log if e.get("custom_id")]) == s["usage"]["calls"]
    # the report says how each part's calls went, and what the batch price saved
    from refed_dspy.quality.report import build_report, format_text

    stats = build_report(run, cfg)
    ex = stats["execution"]
    assert ex["synthesis"]["mode"] == "online" and ex["judge"]["mode"] == "batch"
    assert ex["judge"]["batches"] == s["batch"]["batches"] and ex["judge"]["saved_usd"] == s["batch"]["saved_usd"] > 0
    text = format_text(stats)
    assert "calls        synthesis online; judge batch, " in text and f"saved ${s['batch']['saved_usd']:.4f}" in text
    assert "judge calls" in (run / "report.html").read_text()


@pytest.mark.parametrize("model", ["gemini/gemini-2.0-flash", "ollama_chat/llama3.1"])
def test_providers_without_a_batch_api_are_refused_in_one_line(tmp_path, model):
    out = _cli(
        [
            "synthesize",
            "--set",
            f"teacher.model='{model}'",
            "--set",
            "teacher.api_key_env=''",
            "--set",
            "synthesis.mode='batch'",
            "--set",
            f"run.dir='{tmp_path / 'run'}'",
        ],
        timeout=60,
    )
    assert out.returncode == 2
    lines = [x for x in out.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "batch" in lines[0] and "online" in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "samples.jsonl").exists()


def test_detach_needs_batch_mode(tmp_path):
    out = _cli(["synthesize", "--detach", "--set", f"run.dir='{tmp_path / 'run'}'"], timeout=60)
    assert out.returncode == 2 and "--detach needs" in out.stderr


def test_azure_openai_batches_use_the_resource_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_API_KEY", "azure-key")
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        over = batch_overrides(
            srv,
            run,
            6,
            **{
                "teacher.model": "'azure/my-deployment'",
                "teacher.api_base": f"'{srv.api_base.removesuffix('/v1')}'",
                "teacher.api_version": "'2024-10-21'",
                "teacher.api_key_env": "'AZURE_API_KEY'",
            },
        )
        s = synthesize(load_config(None, over))
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["samples"] == 6
    posts = [e for e in log if e.get("batch_api") == "POST"]
    assert posts and all(e["path"].startswith("/openai/") and "api-version=2024-10-21" in e["path"] for e in posts)
    assert all(e["auth"] == "azure-key" for e in posts)
    lines = BatchStore(run, readonly=True)
    first = lines.requests_of(next(iter(lines.batches)))[0]
    assert first["url"] == "/chat/completions" and first["body"]["model"] == "my-deployment"
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def test_upload_and_create_errors_are_retried_without_sending_twice(tmp_path):
    extra = {**FAST, "batch_api_errors": 3}
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=extra)) as srv:
        run = tmp_path / "run"
        s = synthesize(load_config(None, batch_overrides(srv, run, 8, **{"batch.poll_s": 0.02})))
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["samples"] == 8
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def test_resume_with_another_api_key_finds_its_batches(tmp_path):
    """The key is no part of a custom_id: a run killed while polling and resumed with a rotated key sends nothing twice."""
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        kill_then_resume(
            batch_overrides(srv, run, 6, **{"teacher.api_key_env": "'REFED_TEST_KEY'"}),
            "while_polling:2",
            {"REFED_TEST_KEY": "key-one"},
            {"REFED_TEST_KEY": "key-two"},
        )
    log = read_log(tmp_path / "log.jsonl")
    auths = [e["auth"] for e in log if e.get("batch_api") == "POST"]
    assert "Bearer key-one" in auths and auths[-1] == "Bearer key-two"
    assert len(samples_of(run)) == 6
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def test_provider_limits_split_a_stage_into_several_batches(tmp_path):
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        s = synthesize(
            load_config(None, batch_overrides(srv, run, 12, **{"batch.max_requests": 5, "batch.max_bytes": 60000}))
        )
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["samples"] == 12
    store = BatchStore(run, readonly=True)
    sizes = [len(b.custom_ids) for b in store.batches.values()]
    assert max(sizes) <= 5 and sum(1 for b in store.batches.values() if b.stage == "generate") >= 3
    for b in store.batches.values():  # and each batch's file stays under the byte cap
        assert len("".join(json.dumps(x) + "\n" for x in store.requests_of(b.local_id)).encode()) <= 60000
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


@pytest.mark.parametrize("point", ["after_create", "while_writing_results"])
def test_anthropic_sigkill_then_resume(tmp_path, point):
    """Message batches carry no metadata: a batch created by a killed run is found by its time and request count."""
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        over = batch_overrides(srv, run, 6, **{"teacher.model": "'anthropic/claude-haiku-4-5'"})
        kill_then_resume(over, f"{point}:2")
    log = read_log(tmp_path / "log.jsonl")
    assert len(samples_of(run)) == 6
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def test_an_unreadable_provider_answer_stops_the_run_resumably(tmp_path, monkeypatch):
    from refed_dspy.errors import RunAborted
    from refed_dspy.launch.batch import api as batch_api

    real = batch_api.FileBatches._view
    broken = {"on": True}

    def view(self, b):
        if broken["on"] and b.get("status") == "completed":
            raise KeyError("request_counts")  # a provider that changed its format
        return real(self, b)

    monkeypatch.setattr(batch_api.FileBatches, "_view", view)
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        run = tmp_path / "run"
        cfg = load_config(None, batch_overrides(srv, run, 6))
        with pytest.raises(RunAborted, match="unreadable"):
            synthesize(cfg)
        broken["on"] = False
        s = synthesize(cfg)
    assert s["status"] == "complete" and s["samples"] == 6
    log = read_log(tmp_path / "log.jsonl")
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def test_work_asked_for_again_gets_new_requests_not_the_stored_error(tmp_path):
    """A reference whose feedback failed (a 500 inside the batch, no retries left) is asked for again when a unit needs
    it: that is a new attempt with new custom_ids, not the stored error handed back (which looped until the failure
    streak stopped the run)."""
    extra = {**FAST, "batch_line_error_first": 3}  # the first batch is the feedback one: 3 of its lines fail
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=extra)) as srv:
        run = tmp_path / "run"
        s = synthesize(load_config(None, batch_overrides(srv, run, 8, **{"teacher.num_retries": 0})))
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["samples"] == 8
    rejects = [json.loads(x) for x in (run / "rejects.jsonl").read_text().splitlines()]
    assert any(r["stage"] == "feedback" for r in rejects)  # some feedback did fail, and was asked for again
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def test_an_unreachable_batch_api_stops_with_one_line(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    s.close()  # nothing listens there
    run = tmp_path / "run"
    out = _cli(
        [
            "synthesize",
            "--set",
            f"teacher.api_base='{dead}'",
            "--set",
            "teacher.api_key_env=''",
            "--set",
            "synthesis.mode='batch'",
            "--set",
            "batch.poll_s=0.02",
            "--set",
            "synthesis.size=4",
            "--set",
            f"run.dir='{run}'",
            "--set",
            "run.progress=false",
        ],
        timeout=120,
    )
    assert out.returncode == 3, out.stderr[-2000:]
    last = [x for x in out.stderr.strip().splitlines() if x.strip()][-1]
    assert "batch API unreachable" in last and "10 times in a row" in last and "Traceback" not in out.stderr
    journal = BatchStore(run, readonly=True)
    assert journal.batches and all(
        b.provider_id is None for b in journal.batches.values()
    )  # planned, kept for the resume


def test_open_batches_at_the_environment_s_endpoint_are_not_polled_elsewhere(tmp_path):
    """Batches sent to OPENAI_BASE_URL's endpoint, the variable then pointed elsewhere: the run refuses to resume (its
    open batches are known only at the old endpoint), in one line; at the old one it collects them."""
    with LoopbackServer(
        ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra={**FAST, "batch_line_s": 0.02})
    ) as srv:
        run = tmp_path / "run"
        over = [o for o in batch_overrides(srv, run, 4) if not o.startswith("teacher.api_base")]
        args = ["synthesize", *_set(over)]
        first = _cli([*args, "--detach"], {"OPENAI_BASE_URL": srv.api_base})
        assert first.returncode == 0 and "batches submitted" in first.stdout, first.stderr[-2000:]
        moved = _cli(args, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
        assert moved.returncode == 2 and "the endpoint moved" in moved.stderr and "still open" in moved.stderr
        back = _cli(args, {"OPENAI_BASE_URL": srv.api_base})
        assert back.returncode == 0, back.stderr[-2000:]
    assert len(samples_of(run)) == 4
    assert_none_lost(run, read_log(tmp_path / "log.jsonl"))


def test_batches_go_where_the_environment_sends_the_online_calls(tmp_path, monkeypatch):
    """No api_base, OPENAI_BASE_URL set: the online calls go to that endpoint (the clients read it), and so do the
    batches (they went to api.openai.com, a provider the user had routed away from)."""
    with LoopbackServer(ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra=FAST)) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.api_base)
        run = tmp_path / "run"
        over = [o for o in batch_overrides(srv, run, 6) if not o.startswith("teacher.api_base")]
        s = synthesize(load_config(None, over))
    log = read_log(tmp_path / "log.jsonl")
    assert s["status"] == "complete" and s["samples"] == 6 and s["mode"] == "batch"
    assert created(log) and [e for e in log if e.get("batch_api") == "POST"]
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def test_a_run_with_batches_still_open_does_not_resume_online(tmp_path):
    """Batches submitted, then the run resumed with synthesis.mode = "online": their requests are billed at the
    provider and known only to the batch record, so sending them online too would pay them twice and pass the caps
    (the attacker's run: 59 calls against max_calls 40). The resume is refused in one line, before any request; in
    batch mode it collects them, and online goes on once none is open."""
    with LoopbackServer(
        ServerConfig(log_path=str(tmp_path / "log.jsonl"), extra={**FAST, "batch_line_s": 0.02})
    ) as srv:
        run = tmp_path / "run"
        args = ["synthesize", *_set(batch_overrides(srv, run, 4))]
        first = _cli([*args, "--detach"])
        assert first.returncode == 0 and "batches submitted" in first.stdout, first.stderr[-2000:]
        sent = len(read_log(tmp_path / "log.jsonl"))
        online = _cli([*args, "--set", "synthesis.mode='online'"])
        assert online.returncode == 2 and "are not collected yet" in online.stderr, online.stderr[-2000:]
        assert 'synthesis.mode = "batch"' in online.stderr and "Traceback" not in online.stderr
        assert len(read_log(tmp_path / "log.jsonl")) == sent  # nothing sent online, nothing polled
        back = _cli(args)
        assert back.returncode == 0, back.stderr[-2000:]
        again = _cli([*args, "--set", "synthesis.mode='online'"])  # none open: online goes on (nothing left to do)
        assert again.returncode == 0, again.stderr[-2000:]
    log = read_log(tmp_path / "log.jsonl")
    assert len(samples_of(run)) == 4
    assert_no_custom_id_twice(log)
    assert_none_lost(run, log)


def test_a_judging_with_batches_still_open_does_not_resume_online(tmp_path):
    """The same for a judging: its batches open, a resume online is refused in one line; in batch mode it goes on."""
    from refed_dspy.errors import RunDirError
    from refed_dspy.quality.judge import judge_fingerprint, judge_mismatch
    from refed_dspy.store.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    config = load_config(None, ["judging.mode='batch'"])
    rd.path.mkdir()
    rd.judge_fingerprint.write_text(json.dumps(judge_fingerprint(config)))
    store = BatchStore(rd.path, "judge_batches")
    entry = store.plan("openai", "judge", [{"custom_id": "c1", "body": {}}, {"custom_id": "c2", "body": {}}])
    online = config.model_copy(update={"judging": config.judging.model_copy(update={"mode": "online"})})
    with pytest.raises(RunDirError, match=r"1 batches \(2 requests\) of batch mode are not collected yet"):
        judge_mismatch(rd, online, "resume")
    assert judge_mismatch(rd, config, "error") == []  # in batch mode it collects them
    rd.judge_fingerprint.unlink()  # a first judging that stopped before its fingerprint: its batches count all the same
    with pytest.raises(RunDirError, match="not collected yet"):
        judge_mismatch(rd, online, "resume")
    rd.judge_fingerprint.write_text(json.dumps(judge_fingerprint(config)))
    store._event({"e": "collected", "batch": entry.local_id, "status": "completed"})
    assert judge_mismatch(rd, online, "resume") == []
