"""Synthesis on Ray (issue 34, first step): one local Ray for the file, the loopback server counting what is paid.

The same config locally and on Ray; a run resumed across the two; one budget for the cluster; a worker killed
mid-run; and the inputs that must fail in one line before anything is paid (no extra, an unreachable address, a key
the workers lack)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import ray_helpers
from cli_helpers import STAGE_OF, crash_env, marked_pipeline, marked_stages
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import MissingKeyError
from refed_dspy.export.run import export_run
from refed_dspy.methods import METHODS
from refed_dspy.quality.filter_run import filter_run, parse_filter
from refed_dspy.quality.judge import judge_run
from refed_dspy.store.jsonl import read_json
from refed_dspy.synthesis.api import synthesize
from refed_dspy.synthesis.program import program_hash
from refed_dspy.tracking.mlflow_runs import log_program, register_champion
from refed_dspy.view.status import run_status
from refed_dspy.view.status.run import format_status

ROOT = Path(__file__).resolve().parents[2]
local_ray = ray_helpers.local_ray  # one local Ray for the file


def _on_ray(server, run_dir, size: int, workers: int = 2, **extra) -> list[str]:
    return run_overrides(server, run_dir, size, **{"ray.enabled": "true", "ray.workers": workers, **extra})


def _served(server) -> int:
    return len(read_log(server.cfg.log_path))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _exactly_once(run_dir: Path, size: int) -> None:
    samples = _jsonl(run_dir / "samples.jsonl")
    assert len(samples) == size
    assert len({s["meta"]["id"] for s in samples}) == size, "a sample written twice"
    feedback = Counter(f["reference_id"] for f in _jsonl(run_dir / "feedback.jsonl"))
    assert feedback and max(feedback.values()) == 1, f"a reference's feedback collected twice: {feedback}"


def test_same_config_locally_and_on_ray(local_ray, server_factory, tmp_path):
    extra = {"seeds.limit": 4, "synthesis.concurrency": 4}
    here, there = server_factory(seed=7), server_factory(seed=7)
    local = synthesize(load_config(None, run_overrides(here, tmp_path / "local", 12, **extra)))
    remote = synthesize(load_config(None, _on_ray(there, tmp_path / "ray", 12, **extra)))
    assert local["status"] == remote["status"] == "complete"
    assert remote["samples"] == local["samples"] == 12
    assert _served(there) == _served(here) == remote["usage"]["calls"] == local["usage"]["calls"]
    refs = [
        sorted({s["meta"]["reference_id"] for s in _jsonl(p / "samples.jsonl")})
        for p in (tmp_path / "local", tmp_path / "ray")
    ]
    assert refs[0] == refs[1]
    workers = remote["ray"]["workers"]
    assert len(workers) == 2 and all(w["alive"] and w["tasks"] > 0 for w in workers), workers
    assert sum(w["calls"] for w in workers) == remote["usage"]["calls"]
    _exactly_once(tmp_path / "ray", 12)


def test_a_saved_program_drives_every_stage_on_the_workers(local_ray, server_factory, tmp_path):
    """A compiled pipeline saved to a file (synthesis.program) runs on the workers: every request the server saw
    carries its predictor's compiled instructions, every predictor ran, and every sample names the program."""
    srv, path = server_factory(log_prompts=True), tmp_path / "run"
    program = marked_pipeline("R")
    saved = tmp_path / "pipeline.json"
    program.save(str(saved))
    extra = {"seeds.limit": 3, "synthesis.instructions_per_feature": 2, "synthesis.program": f"'{saved}'"}
    summary = synthesize(load_config(None, _on_ray(srv, path, 6, **extra)))
    assert summary["status"] == "complete" and summary["samples"] == 6
    assert sum(w["calls"] for w in summary["ray"]["workers"]) == summary["usage"]["calls"] == _served(srv)
    assert marked_stages(read_log(srv.cfg.log_path), "R") == set(STAGE_OF.values())
    samples = _jsonl(path / "samples.jsonl")
    assert {s["meta"]["program_hash"] for s in samples} == {program_hash(program)}


def test_a_registered_program_runs_on_the_workers(local_ray, server_factory, tmp_path, monkeypatch):
    """synthesis.program = models:/name@alias: the driver resolves it from MLflow (sqlite here) and the workers run
    its compiled parts; nothing of MLflow is asked of them."""
    import mlflow  # only this test needs it

    srv, path = server_factory(log_prompts=True), tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # the sqlite store keeps its artifacts under ./mlruns
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        program = marked_pipeline("M")
        with mlflow.start_run() as run:
            logged = log_program(program, load_config(None, run_overrides(srv, path, 6)).teacher)
        uri = register_champion(logged, run.info.run_id, "ray-program", "champion")
    finally:
        mlflow.set_tracking_uri(before)
    extra = {
        "seeds.limit": 3,
        "synthesis.instructions_per_feature": 2,
        "synthesis.program": f"'{uri}'",
        "tracking.mlflow_uri": f"'{store}'",
    }
    summary = synthesize(load_config(None, _on_ray(srv, path, 6, **extra)))
    assert summary["status"] == "complete" and summary["samples"] == 6 and summary["program"] == uri
    assert summary["usage"]["calls"] == _served(srv)
    assert marked_stages(read_log(srv.cfg.log_path), "M") == set(STAGE_OF.values())


def test_a_run_resumes_across_local_and_ray(local_ray, server_factory, tmp_path):
    """Started locally, grown on Ray, grown locally again: one run dir, every sample once, every call counted."""
    srv, path = server_factory(), tmp_path / "run"
    extra = {"seeds.limit": 6, "synthesis.concurrency": 4}
    synthesize(load_config(None, run_overrides(srv, path, 6, **extra)))
    grown = synthesize(load_config(None, _on_ray(srv, path, 14, **extra)))
    assert grown["status"] == "complete" and grown["new_samples"] == 8
    last = synthesize(load_config(None, run_overrides(srv, path, 18, **extra)))
    assert last["status"] == "complete" and last["samples"] == 18
    _exactly_once(path, 18)
    assert last["usage"]["calls"] == _served(srv)
    status = run_status(path)
    assert status.to_json()["samples"] == 18
    assert status.ray is None  # the last invocation ran locally


def test_one_budget_for_the_cluster(local_ray, server_factory, tmp_path):
    srv = server_factory()
    summary = synthesize(
        load_config(
            None,
            _on_ray(
                srv, tmp_path / "run", 60, **{"seeds.limit": 10, "synthesis.concurrency": 8, "synthesis.max_calls": 10}
            ),
        )
    )
    assert summary["status"] == "budget"
    assert _served(srv) <= 10
    assert summary["usage"]["calls"] == _served(srv)


def _max_in_flight(server) -> int:
    with urllib.request.urlopen(f"{server.api_base}/stats", timeout=10) as resp:
        return json.loads(resp.read())["max_in_flight"]


def test_each_worker_keeps_its_own_concurrency_in_flight(local_ray, server_factory, tmp_path):
    """synthesis.concurrency is per worker: 2 workers at 3 keep more than 3 calls in flight at the server (a driver
    that kept 3 over the cluster made 2 and 4 workers exactly as fast as 1: bench/ray_scale.py)."""
    srv = server_factory(latency_s=0.3)
    extra = {"seeds.limit": 4, "synthesis.concurrency": 3}
    summary = synthesize(load_config(None, _on_ray(srv, tmp_path / "run", 16, **extra)))
    assert summary["samples"] == 16 and summary["usage"]["calls"] == _served(srv)
    assert 3 < _max_in_flight(srv) <= 6


def _instruction_of(entry: dict) -> str:
    """The new instruction a sample's request (its response, or its improvement) carries: the text of the user turn's
    `instruction` field."""
    user = next(m["content"] for m in reversed(entry["messages"]) if m["role"] == "user")
    text = user if isinstance(user, str) else " ".join(p.get("text", "") for p in user)
    after = text.split("[[ ## instruction ## ]]", 1)[1]
    return after.split("[[ ##", 1)[0].split("\n\nRespond with", 1)[0].strip()


def test_several_endpoints_are_shared_over_the_cluster(local_ray, server_factory, tmp_path):
    """Two replicas behind the teacher, two workers: the driver sends each task to the replica with the fewest calls
    in flight over the cluster, and every call of a task goes to it (a sample's response and its improvement meet
    one replica's prefix cache); the summary counts each replica's calls as its server does."""
    a, b = server_factory(latency_s=0.05, log_prompts=True), server_factory(latency_s=0.05, log_prompts=True)
    urls = str([a.api_base, b.api_base]).replace('"', "'")
    extra = {"seeds.limit": 4, "synthesis.concurrency": 4, "teacher.api_base": urls}
    summary = synthesize(load_config(None, _on_ray(a, tmp_path / "run", 20, **extra)))
    assert summary["status"] == "complete" and summary["samples"] == 20
    served = {a.api_base: _served(a), b.api_base: _served(b)}
    assert all(n > 0 for n in served.values()), served
    assert {url: row["calls"] for url, row in summary["endpoints"].items()} == served
    assert sum(row["tasks"] for row in summary["endpoints"].values()) >= summary["samples"]
    assert sum(served.values()) == summary["usage"]["calls"]
    replicas: dict[str, set[str]] = {}
    for srv in (a, b):
        for entry in read_log(srv.cfg.log_path):
            if STAGE_OF[tuple(entry["outputs"])].startswith("respond."):
                replicas.setdefault(_instruction_of(entry), set()).add(srv.api_base)
    assert len(replicas) >= 20
    split = {i[:40]: r for i, r in replicas.items() if len(r) > 1}
    assert not split, f"a sample's calls went to two replicas: {split}"


def test_workers_off_the_drivers_node_keep_every_answer_in_the_run_cache(local_ray, server_factory, tmp_path):
    """ray.cache_server = "always": every worker reaches the run's cache through its server, as workers on other
    nodes do. Every answer paid for lands in the run dir's own cache on the driver's disk, and the same run again from
    an empty record (a task run again, a resume) is answered from it: the server sees no second call."""
    from diskcache import FanoutCache  # DSPy's disk cache

    srv, path = server_factory(), tmp_path / "run"
    extra = {"seeds.limit": 2, "synthesis.instructions_per_feature": 2, "ray.cache_server": "always"}
    first = synthesize(load_config(None, _on_ray(srv, path, 4, **extra)))
    assert first["status"] == "complete" and first["ray"]["cache"] == str((path / "cache").resolve())
    served = _served(srv)
    assert served == first["usage"]["calls"] > 0
    with FanoutCache(str(path / "cache"), shards=16) as cache:
        assert len(cache) == served
    for name in ("samples.jsonl", "feedback.jsonl", "journal.jsonl", "rejects.jsonl", "summary.json"):
        (path / name).unlink(missing_ok=True)
    again = synthesize(load_config(None, _on_ray(srv, path, 4, **extra)))
    assert again["status"] == "complete" and again["samples"] == 4
    assert _served(srv) == served, "a paid answer was not found in the run's cache"


def _ray_workers() -> list[int]:
    return ray_helpers.our_ray_workers()  # this test's own: never a worker of another Ray on the machine


def _sent_again(server) -> int:
    """Requests the server was sent more than once (the same turns)."""
    counts = Counter(entry["key"] for entry in read_log(server.cfg.log_path))
    return sum(n - 1 for n in counts.values())


@pytest.mark.parametrize("cache_server", ["auto", "always"])
def test_a_worker_killed_mid_run(local_ray, server_factory, tmp_path, cache_server):
    """One of two workers ended with SIGKILL once the run is under way: the run completes on the other, every
    reference and sample once, and the ledger holds every call the server saw (those in flight at the kill too).
    The tasks it had under way run again on the other worker and find the calls it had finished in the run's cache,
    opened by the workers on this node ("auto") or reached through its server, as on other nodes ("always"): only a
    call it had in flight is sent again."""
    srv, path = server_factory(latency_s=0.3), tmp_path / "run"
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if srv.state.count >= 8 and (pids := _ray_workers()):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    extra = {"seeds.limit": 6, "synthesis.concurrency": 4, "ray.cache_server": cache_server}
    summary = synthesize(load_config(None, _on_ray(srv, path, 24, **extra)))
    killer.join(5)
    assert killed, "no worker was killed"
    assert summary["status"] == "complete" and summary["samples"] == 24
    assert summary["ray"]["workers_alive"] == 1
    _exactly_once(path, 24)
    said = format_status(run_status(path))
    assert "Ray workers at the end: 1 of 2 (local)" in said and "1 lost" in said, said
    served, usage = _served(srv), summary["usage"]
    # the lost worker's tasks are counted as paid up to what each was reserved for (a request leaves before its start
    # reaches the driver: a CI run counted 57 calls where the server answered 59): never fewer than the server saw; the
    # calls answered to the driver are among those it saw; the rest at most its tasks' reservations (2 workers x 4
    # calls in flight, each task at most its method's calls with their repairs)
    config = load_config(None, run_overrides(srv, path, 24))
    most = max(METHODS.get("refed").worst_calls(config.synthesis).values()) * (1 + config.teacher.max_repairs)
    lost = usage.get("worker_lost_calls", 0)
    assert served <= usage["calls"] and usage["calls"] - lost <= served, usage
    assert 1 <= lost <= 2 * 4 * most, usage
    assert summary["usage"]["calls"] == read_json(path / "summary.json")["usage"]["calls"]
    assert _sent_again(srv) <= 4
    # the loss is an event of the run, and its figures count the workers (issue 55)
    lost = [e for e in _jsonl(path / "events.jsonl") if e["event"] == "worker_lost"]
    assert [e["pid"] for e in lost] == killed
    figures = {
        (s["name"], s["attributes"].get("refed.state")): s.get("value")
        for s in read_json(path / "metrics.json")["series"]
    }
    assert figures[("refed.workers", "lost")] == 1 and figures[("refed.workers", "alive")] == 1


@pytest.mark.parametrize("cache_server", ["auto", "always"])
def test_the_driver_killed_then_the_same_command(local_ray, server_factory, tmp_path, cache_server):
    """`refed synthesize --ray ADDRESS` killed with -9 mid-run, then run again: every reference and sample once, and
    the ledger is never below what the server saw: the driver writes each task to the run's write-ahead log before it
    sends it to a worker, so a task in flight at the kill is counted at its worst case (2 workers x 4 units, each of at
    most its method's calls). What the killed run had paid is in the run's cache, wherever its workers were ("always":
    through the cache server): only the calls in flight at the kill are sent again."""
    srv, path = server_factory(latency_s=0.3), tmp_path / "run"
    address = local_ray.get_runtime_context().gcs_address
    extra = {"seeds.limit": 6, "synthesis.concurrency": 4, "ray.cache_server": cache_server}
    sets = [x for o in run_overrides(srv, path, 24, **extra) for x in ("--set", o)]
    command = [sys.executable, "-m", "refed_dspy.cli", "synthesize", "--ray", address, *sets]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    samples = path / "samples.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and first.poll() is None:
        if samples.exists() and len(samples.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    assert first.poll() is None, f"the run ended before it could be killed: {first.stderr.read()[-2000:]!r}"
    first.kill()
    first.wait(30)
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    _exactly_once(path, 24)
    ledger = read_json(path / "summary.json")["usage"]["calls"]
    # a task in flight at the kill is counted at what the driver reserved for it: its method's calls, each with its
    # repairs (teacher.max_repairs), whether or not its worker had made them
    config = load_config(None, run_overrides(srv, path, 24))
    most = max(METHODS.get("refed").worst_calls(config.synthesis).values()) * (1 + config.teacher.max_repairs)
    assert _served(srv) <= ledger <= _served(srv) + 2 * 4 * most
    assert _sent_again(srv) <= 2 * 4


def test_judge_on_ray_then_filter_and_export_read_it(local_ray, server_factory, tmp_path):
    """A Ray-made run judged on Ray (the run's recorded [ray] is not what decides: the judging's own config is), then
    filtered and exported as a local run is."""
    teacher, judge, path = server_factory(), server_factory(), tmp_path / "run"
    synthesize(load_config(None, _on_ray(teacher, path, 8, **{"seeds.limit": 4, "synthesis.concurrency": 4})))
    judging = [f"judge.api_base='{judge.api_base}'", "judge.api_key_env=''", "judge.num_retries=2"]
    assert not load_config(path / "config.toml", judging, record=True).ray.enabled  # recorded, but not inherited
    summary = judge_run(path, load_config(path / "config.toml", [*judging, "ray.enabled=true"], record=True))
    assert summary.status == "complete" and summary.judged == 8
    assert summary.usage["calls"] == _served(judge) and _served(judge) > 0
    judged = _jsonl(path / "judgments.jsonl")
    assert sorted(j["sample_id"] for j in judged) == sorted(s["meta"]["id"] for s in _jsonl(path / "samples.jsonl"))
    assert all("pointwise" in j and "pairwise" in j for j in judged)
    # where it judged: in its summary and, for `refed status`, beside the synthesis's own workers
    assert summary.ray["workers_alive"] == 2 and sum(w["tasks"] for w in summary.ray["workers"]) == 8
    said = format_status(run_status(path))
    assert "judge's Ray workers at the end: 2 of 2" in said and "\nRay workers at the end: 2 of 2" in said, said
    again = judge_run(path, load_config(path / "config.toml", judging, record=True))  # locally: nothing left to judge
    assert again.judged == 8 and again.ray is None
    said = format_status(run_status(path))
    assert "judge's Ray workers" not in said and "\nRay workers at the end: 2 of 2" in said, said
    kept = filter_run(path, tmp_path / "kept", [parse_filter("min_score:min_score=1")])
    assert kept.kept == 8
    out = export_run(tmp_path / "kept", "messages", tmp_path / "export", val_fraction=0)
    assert sum(out.splits.values()) == 8


def test_compare_runs_each_method_on_the_workers(local_ray, server_factory, tmp_path):
    """`refed compare` with [ray] enabled launches each method's run as `refed synthesize` does: on the workers (it
    built its teacher itself before, and stopped with "leave teacher= out"); compare.json says where each ran."""
    from refed_dspy.experiments.compare import compare

    srv = server_factory()
    config = load_config(None, _on_ray(srv, tmp_path / "cmp", 4, 1, **{"seeds.limit": 2, "synthesis.concurrency": 2}))
    result = compare(config, ["refed", "no_feedback"])
    assert [(r["method"], r["status"], r["transport"]) for r in result.rows] == [
        ("refed", "complete", "ray"),
        ("no_feedback", "complete", "ray"),
    ]
    assert sum(r["calls"] for r in result.rows) == _served(srv)
    written = json.loads(Path(result.json_file).read_text())
    assert [r["transport"] for r in written["rows"]] == ["ray", "ray"]
    for method in ("refed", "no_feedback"):
        summary = read_json(tmp_path / "cmp" / method / "summary.json")
        assert sum(w["tasks"] for w in summary["ray"]["workers"]) > 0
    _exactly_once(tmp_path / "cmp" / "refed", 4)
    samples = _jsonl(tmp_path / "cmp" / "no_feedback" / "samples.jsonl")
    assert len({s["meta"]["id"] for s in samples}) == len(samples) == 4


def test_a_key_the_workers_lack(local_ray, server_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("REFED_TEST_ABSENT_KEY", raising=False)
    srv = server_factory()
    overrides = _on_ray(srv, tmp_path / "run", 4, **{"teacher.api_key_env": "'REFED_TEST_ABSENT_KEY'"})
    with pytest.raises(MissingKeyError) as err:
        synthesize(load_config(None, overrides))
    assert "REFED_TEST_ABSENT_KEY" in str(err.value) and socket.gethostname() in str(err.value)
    assert _served(srv) == 0 if Path(srv.cfg.log_path).exists() else True
    assert not (tmp_path / "run").exists()


def _cli(args: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys; {prelude}from refed_dspy.cli import main; sys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize(
    ("flag", "prelude", "says"),
    [
        (["--ray"], "sys.modules['ray'] = None; ", "pip install 'refed-dspy[ray]'"),
        (["--ray", "127.0.0.1:1"], "", "cannot reach the Ray cluster at 127.0.0.1:1"),
    ],
    ids=["no-extra", "unreachable"],
)
def test_ray_inputs_that_fail_in_one_line(flag, prelude, says, server_factory, tmp_path):
    srv = server_factory()
    sets = [x for o in run_overrides(srv, tmp_path / "run", 4) for x in ("--set", o)]
    done = _cli(["synthesize", *flag, *sets], prelude)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()
    assert not Path(srv.cfg.log_path).exists() or _served(srv) == 0


def test_the_core_does_not_import_ray():
    code = (
        "import sys, refed_dspy, refed_dspy.cli, refed_dspy.synthesis.api, refed_dspy.launch.ray.pool; "
        "sys.exit(1 if 'ray' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0


@pytest.mark.parametrize("crash", ["before_record@feedback:2", "before_record@sample:3"])
def test_the_driver_killed_where_a_task_s_calls_are_paid_pays_for_nothing_twice(
    local_ray, server_factory, tmp_path, crash
):
    """`refed synthesize --ray ADDRESS` killed with -9 at a deterministic point (tests/crash_at): on the driver once a
    worker's task is over (a reference's feedback, a sample) and nothing of it is written (one worker, one piece of work
    at a time: nothing else is under way). The same command again: every sample once, no request body answered twice
    (each answer is in the run's cache, written there by the worker). The ledger is the server's count but for the task
    the driver was writing: counted at its worst case (2 calls, each with teacher.max_repairs = 1 repair), it made 2."""
    srv, path = server_factory(), tmp_path / "run"
    address = local_ray.get_runtime_context().gcs_address
    extra = {"seeds.limit": 3, "synthesis.instructions_per_feature": 2, "synthesis.concurrency": 1}
    sets = [x for o in _on_ray(srv, path, 8, workers=1, **extra) for x in ("--set", o)]
    command = [sys.executable, "-m", "refed_dspy.cli", "synthesize", "--ray", address, *sets]
    killed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=crash_env(crash))
    assert killed.returncode == -9, killed.stderr[-2000:]
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    _exactly_once(path, 8)
    answered = Counter(e["sha"] for e in read_log(srv.cfg.log_path) if e.get("status") == 200)
    assert sum(n - 1 for n in answered.values()) == 0, "a paid answer was not found in the run's cache"
    assert 0 <= read_json(path / "summary.json")["usage"]["calls"] - sum(answered.values()) <= 2 * 2 - 2


@pytest.mark.parametrize("first, second", [("local", "ray"), ("ray", "local")])
def test_a_call_budget_holds_across_kills_on_either_transport(local_ray, server_factory, tmp_path, first, second):
    """synthesis.max_calls = 100: killed with -9 on one transport (at about 30 requests), then on the other (at about
    60), then finished on the first. The server serves at most 100 and the ledger is never below what it served: the
    calls in flight at each kill (locally each request, on Ray each task sent to a worker, at its worst case) were
    written down before they were sent."""
    srv, path = server_factory(latency_s=0.4), tmp_path / "run"
    address = local_ray.get_runtime_context().gcs_address
    extra = {"synthesis.concurrency": 4, "synthesis.max_calls": 100}
    sets = [x for o in run_overrides(srv, path, 60, **extra) for x in ("--set", o)]

    def command(transport: str) -> list[str]:
        ray = ["--ray", address] if transport == "ray" else []
        return [sys.executable, "-m", "refed_dspy.cli", "synthesize", "--quiet", *ray, *sets]

    for transport, point in ((first, 30), (second, 60)):
        proc = subprocess.Popen(command(transport), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and _served(srv) < point:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]!r}"
        proc.kill()
        proc.wait(30)
    last = subprocess.run(command(first), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert last.returncode in (0, 1), last.stderr[-2000:]  # 1: stopped by the call budget
    ledger = read_json(path / "summary.json")["usage"]
    assert _served(srv) <= 100
    assert ledger["calls"] >= _served(srv) and ledger.get("lost_in_flight", 0) > 0
    samples = _jsonl(path / "samples.jsonl")
    assert len(samples) == len({s["meta"]["id"] for s in samples})


def test_junk_is_rejected_on_ray_too(local_ray, server_factory, tmp_path):
    """Issue 52, item 5, on Ray: the workers parse with the same adapter (a junk response is repaired then rejected)
    and the driver takes each unit's instructions through the same gate (a junk item dropped with its reason)."""
    from refed_dspy.adapters import junk_reason

    srv, path = server_factory(sticky_junk=0.35, junk_items=True), tmp_path / "run"
    extra = {"seeds.limit": 6, "synthesis.instructions_per_feature": 4}
    summary = synthesize(load_config(None, _on_ray(srv, path, 6, **extra)))
    assert summary["status"] == "complete" and summary["samples"] == 6 and summary["ray"]["workers"]
    for s in _jsonl(path / "samples.jsonl"):
        assert junk_reason(s["instruction"], instruction=True) is None, s["instruction"]
        assert junk_reason(s["response"]) is None and junk_reason(s["improved_response"]) is None, s
    junk = [r for r in _jsonl(path / "rejects.jsonl") if r["reason"] == "degenerate"]
    assert any(r["stage"] == "synthesize" and "not an instruction" in r["detail"] for r in junk), junk
    faults = [e for e in read_log(srv.cfg.log_path) if e.get("fault") == "junk"]
    assert faults and summary["usage"]["repairs"] >= 1  # the workers' adapter asked again for each junk reply


def test_a_cost_budget_holds_on_ray_when_the_references_are_long(local_ray, server_factory, tmp_path):
    """Under `max_cost_usd` on Ray, one reference of 20 words and seven of 20,000: a piece of work is held at a prompt
    its role is assumed to send (2,000 tokens) or at the dearest call seen, and its calls are made on a worker where
    the budget is not kept ($0.0208 of $0.02 billed before). Each call's prompt is counted there, and a call its
    piece's hold cannot cover is refused before it is sent: the piece runs again, held at what that call needs. What
    the server answered stays within the budget."""
    words = [" ".join(["lorem"] * (20000 if i else 20)) for i in range(8)]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(json.dumps({"instruction": f"Say {i}.", "response": f"{i} {w}"}) + "\n" for i, w in enumerate(words))
    )
    srv = server_factory()
    extra = {
        "synthesis.max_cost_usd": 0.02,
        "teacher.max_tokens": 300,
        "seeds.source": f"'{seeds}'",
        "synthesis.concurrency": 8,
        "teacher.num_retries": 0,  # a piece held short sent nothing: running it again spends none of its retries
    }
    summary = synthesize(load_config(None, _on_ray(srv, tmp_path / "run", 40, **extra)))
    served = [e for e in read_log(srv.cfg.log_path) if e.get("status", 200) == 200]
    billed = sum(
        ((e["prompt_tokens"] - e["cached_tokens"]) * 0.15 + e["cached_tokens"] * 0.075 + e["completion_tokens"] * 0.6)
        / 1e6
        for e in served
    )
    assert max(e["prompt_tokens"] for e in served) > 20000  # the long references reached the server
    assert billed <= 0.02, (billed, len(served), summary["status"])
    assert summary["cost_usd"] == pytest.approx(billed, rel=1e-6)
    assert summary["retries"]["this_invocation"].get("held_short", 0) >= 1, summary["retries"]
    rejects = tmp_path / "run" / "rejects.jsonl"
    assert not rejects.exists() or "held_short" not in rejects.read_text()
