"""Ray at its edges (issue 43): a worker lost while it starts or loads is left out and the run goes on; progress lines
while the workers load; Ray's own notes never on our stdout; a lost worker's calls said as such; and a driver killed
with -9 leaves no Ray process behind past the next start in its run dir (ended by id, never by `ray stop`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import ray_helpers
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.cli import main
from refed_dspy.config import load_config
from refed_dspy.launch.ray import connect, pool
from refed_dspy.launch.ray.worker import PartWorker
from refed_dspy.store.jsonl import read_json
from refed_dspy.synthesis.api import synthesize

ROOT = Path(__file__).resolve().parents[2]
local_ray = ray_helpers.local_ray  # one local Ray for the file


def _on_ray(server, run_dir, size: int, **extra) -> list[str]:
    return run_overrides(server, run_dir, size, **{"ray.enabled": "true", "ray.workers": 2, **extra})


def _sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def _served(server) -> int:
    return len(read_log(server.cfg.log_path))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _exactly_once(run_dir: Path, size: int) -> None:
    samples = _jsonl(run_dir / "samples.jsonl")
    assert len(samples) == size and len({s["meta"]["id"] for s in samples}) == size
    feedback = Counter(f["reference_id"] for f in _jsonl(run_dir / "feedback.jsonl"))
    assert feedback and max(feedback.values()) == 1, feedback


def _dying(marks: Path, phase: str, how_many: int, slow_s: float = 0.0) -> type:
    """A PartWorker whose process ends itself with SIGKILL in `phase` ('info': as it starts, 'load': as it loads its LM
    and cache), the first `how_many` workers to get there (each takes a mark file, made exclusively); the others take
    `slow_s` more to load. Defined here so that Ray sends the class itself to the workers."""

    class DyingWorker(PartWorker):
        def _maybe_die(self) -> None:
            for i in range(how_many):
                try:
                    os.close(os.open(marks / str(i), os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(slow_s)

        def info(self):
            if phase == "info":
                self._maybe_die()
            return super().info()

        def load(self, cache, direct):
            if phase == "load":
                self._maybe_die()
            return super().load(cache, direct)

    marks.mkdir(parents=True, exist_ok=True)
    return DyingWorker


@pytest.mark.parametrize("phase", ["info", "load"])
def test_a_worker_killed_while_it_starts_or_loads_is_left_out(
    local_ray, server_factory, tmp_path, monkeypatch, caplog, phase
):
    """One of two workers killed with -9 as it starts (before it said where it runs) or as it loads: the run completes
    on the other with every sample, exit 0, and one warning line names the worker and how many go on."""
    monkeypatch.setattr(pool, "PartWorker", _dying(tmp_path / "marks", phase, 1))
    srv, path = server_factory(), tmp_path / "run"
    overrides = _on_ray(srv, path, 8, **{"seeds.limit": 4, "synthesis.concurrency": 4})
    with caplog.at_level(logging.INFO):
        code = main(["synthesize", "--quiet", *_sets(overrides)])
    assert code == 0, caplog.text[-2000:]
    assert len(list((tmp_path / "marks").iterdir())) == 1  # one worker died, where the test wanted
    summary = read_json(path / "summary.json")
    assert summary["status"] == "complete" and summary["samples"] == 8
    _exactly_once(path, 8)
    assert summary["usage"]["calls"] == _served(srv) > 0
    workers = summary["ray"]["workers"]
    assert summary["ray"]["workers_alive"] == 1 and [w["alive"] for w in workers].count(False) == 1, workers
    assert all(w["calls"] == 0 for w in workers if not w["alive"])
    when = "while it started" if phase == "info" else "while it loaded"
    lost = [r.getMessage() for r in caplog.records if "was lost" in r.getMessage()]
    assert len(lost) == 1 and f"{when}; the run goes on with 1 of 2 workers" in lost[0], lost
    lost_one = next(w for w in workers if not w["alive"])
    assert f"node {lost_one['node']} (pid {lost_one['pid']})" in lost[0] and lost_one["pid"] > 0, (lost, lost_one)


def test_every_worker_lost_while_loading_aborts_in_one_line(local_ray, server_factory, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pool, "PartWorker", _dying(tmp_path / "marks", "load", 2))
    srv = server_factory()
    code = main(["synthesize", "--quiet", *_sets(_on_ray(srv, tmp_path / "run", 4, **{"seeds.limit": 2}))])
    err = capsys.readouterr().err
    assert code == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "every worker was lost while it loaded" in lines[0], err
    assert "Traceback" not in err
    assert not Path(srv.cfg.log_path).exists() or _served(srv) == 0


def test_progress_lines_while_the_workers_load(local_ray, server_factory, tmp_path, monkeypatch, capsys, caplog):
    """A line as the workers start, then one every run.progress_every_s while they load (here 3 s of loading at a
    line every 0.5 s), saying how many are ready and how long it has waited; then one when they are."""
    monkeypatch.setattr(pool, "PartWorker", _dying(tmp_path / "marks", "load", 0, slow_s=3.0))
    srv = server_factory()
    overrides = _on_ray(srv, tmp_path / "run", 2, **{"seeds.limit": 1, "run.progress_every_s": 0.5})
    with caplog.at_level(logging.INFO, logger="refed_dspy.launch.ray"):
        summary = synthesize(load_config(None, overrides), show_progress=True)
    assert summary["status"] == "complete"
    said = [r.getMessage() for r in caplog.records if r.name.startswith("refed_dspy.launch.ray.")]
    assert said[0].startswith("starting 2 Ray workers on "), said
    assert any(m.startswith("2 of 2 Ray workers ready after ") for m in said), said
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ray: ")]
    loading = [line for line in lines if "of 2 workers loaded (their LMs, their caches), waiting" in line]
    assert len(loading) >= 3, lines


def _wait_for(what, seconds: float = 120.0, every: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    return None


def test_a_worker_killed_mid_run_leaves_our_stdout_ours(local_ray, server_factory, tmp_path):
    """`refed synthesize --ray ADDRESS` with one of two workers killed with -9 mid-run: stdout holds our summary and
    nothing of Ray's ('(raylet) A worker died or was killed ...' goes to the debug log); the calls the worker had in
    flight are counted as paid and said as lost with it, in the summary line, summary.json and the journal's attempts,
    never as cut off by a stop or a timeout."""
    srv, path = server_factory(latency_s=1.0), tmp_path / "run"
    address = local_ray.get_runtime_context().gcs_address
    sets = _sets(_on_ray(srv, path, 16, **{"seeds.limit": 4, "synthesis.concurrency": 4}))
    command = [sys.executable, "-m", "refed_dspy.cli", "synthesize", "--ray", address, *sets]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda k=k, s=s: out.__setitem__(k, s.read()), daemon=True)
        for k, s in (("stdout", run.stdout), ("stderr", run.stderr))
    ]
    for reader in readers:
        reader.start()
    workers = _wait_for(lambda: srv.state.count >= 8 and ray_helpers.our_ray_workers())
    assert workers, "the run made no calls on Ray workers"
    os.kill(workers[0], signal.SIGKILL)
    assert run.wait(300) == 0, out
    for reader in readers:
        reader.join(10)
    stdout = out["stdout"]
    assert stdout.startswith(f"run {path}: complete"), stdout
    for ray_text in ("raylet", "A worker died", "Worker ID", "Worker exit", "(pid="):
        assert ray_text not in stdout, stdout
    assert "was lost; the run goes on with 1 of 2 workers" in out["stderr"], out["stderr"]
    usage = read_json(path / "summary.json")["usage"]
    lost = usage.get("worker_lost_calls", 0)
    assert lost >= 1 and usage["interrupted_calls"] == lost, usage
    calls_line = next(line for line in stdout.splitlines() if line.strip().startswith("LM calls"))
    assert f"; up to {lost} lost with their Ray worker (counted as paid)" in calls_line, calls_line
    assert "cut off by a stop" not in calls_line
    attempts = [r for r in _jsonl(path / "journal.jsonl") if r.get("kind") == "attempt"]
    lost_attempts = [a for a in attempts if a["outcome"] == "worker_lost"]
    assert sum(a["usage"].get("worker_lost_calls", 0) for a in lost_attempts) == lost, attempts


@pytest.fixture
def short_tmp():
    """A Ray temp dir of the test's own (a `ray start` cluster of someone else's is never joined) with a short path:
    Ray's sockets live under it, and a Unix socket path holds at most 107 bytes."""
    path = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_drivers_ray_processes_are_ended_by_the_next_start(local_ray, server_factory, tmp_path, short_tmp):
    """The CLI starting its own local Ray (no ray.address), killed with -9 mid-run: some of that Ray's processes stay
    behind (its agents). The same command again ends them, by their ids, after checking each is still the same
    process; the Ray this test process runs (another cluster on the machine) is untouched."""
    ours_before = connect.ray_processes_of(os.getpid(), ray_helpers.ray_dir())
    assert ours_before, "the file's own local Ray has no process"
    srv, path = server_factory(latency_s=0.5), tmp_path / "run"
    sets = _sets(_on_ray(srv, path, 12, **{"seeds.limit": 4, "synthesis.concurrency": 2}))
    command = [sys.executable, "-m", "refed_dspy.cli", "synthesize", "--ray", *sets]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = short_tmp
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    written = path / connect.FILE
    assert _wait_for(lambda: first.poll() is not None or (written.exists() and srv.state.count >= 4), 300)
    assert first.poll() is None, f"the run ended before it could be killed: {first.stderr.read()[-2000:]!r}"
    (entry,) = json.loads(written.read_text())
    assert entry["driver"]["pid"] == first.pid
    recorded = [connect.Process(**p) for p in entry["processes"]]
    assert any(p.command == "raylet" for p in recorded), recorded
    first.kill()
    first.wait(30)
    # what dies with its driver dies within seconds (the raylet, the GCS); what is left then is for the next start to
    # end (what ends on its own meanwhile, too: the count below allows for it)
    assert _wait_for(lambda: not any(connect._running(p) for p in recorded if p.command == "raylet"), 60)
    left = [p for p in recorded if connect._running(p)]
    assert left, "no Ray process outlived its driver: nothing left to end"

    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not [p for p in left if connect._running(p)], left
    ended = [line for line in again.stderr.splitlines() if "that a killed run left behind" in line]
    assert len(ended) == 1, again.stderr[-2000:]
    # some of `left` may have ended on their own since (a worker, the log monitor, slower to notice on a busy machine)
    assert 1 <= int(ended[0].split()[1]) <= len(left) and "ray::" in ended[0], (ended, left)
    assert all(connect._running(p) for p in ours_before), "a process of another Ray was touched"
    assert not written.exists()  # the second run's local Ray ended with it: nothing is left to end
    _exactly_once(path, 12)
