"""`refed synthesize` as a subprocess through the real HTTP path, and SIGKILL + resume exactly-once."""

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cli_helpers import refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.store.records import SampleRecord


def samples(run):
    return [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]


def test_cli_synthesize_50_samples_over_http(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    proc = refed("synthesize", *sets(run_overrides(srv, run, 50, **{"synthesis.concurrency": 16})))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "complete" in out and "50/50" in out and "LM calls" in out
    recs = samples(run)
    assert len(recs) == 50 and len({r["meta"]["id"] for r in recs}) == 50
    refs = {json.loads(x)["reference_id"] for x in (run / "feedback.jsonl").read_text().splitlines()}
    for r in recs:
        rec = SampleRecord.model_validate(r)
        assert rec.meta.reference_id in refs and rec.meta.config_hash and rec.meta.unit.startswith("p0:")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["usage"]["calls"] == len(read_log(srv.cfg.log_path)) == 2 * len(refs) + summary["units"] + 100
    assert (run / "config.toml").read_text().count("[teacher]") == 1


def test_sigkill_midway_then_resume_is_exactly_once(server_factory, tmp_path):
    # latency so that the kill lands mid-run; one pass, so every request body is distinct
    srv = server_factory(latency_s=0.05, jitter=0.5)
    run = tmp_path / "run"
    size = 80
    overrides = run_overrides(srv, run, size, **{"synthesis.concurrency": 8})
    proc = refed("synthesize", *sets(overrides))
    deadline = time.time() + 120
    while time.time() < deadline:
        n = len((run / "samples.jsonl").read_text().splitlines()) if (run / "samples.jsonl").exists() else 0
        if n >= 25:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = read_log(srv.cfg.log_path)
    at_kill = len(samples(run))
    assert 0 < at_kill < size

    proc = refed("synthesize", *sets(overrides))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    recs = samples(run)
    ids = [r["meta"]["id"] for r in recs]
    assert len(recs) == size and len(set(ids)) == size
    assert len({r["instruction"] for r in recs}) == size

    log = read_log(srv.cfg.log_path)
    second = log[len(first) :]
    delivered_before = Counter(e["sha"] for e in first if e.get("delivered"))
    assert all(n == 1 for n in delivered_before.values())
    resent = [e for e in second if e["sha"] in delivered_before]
    # A response can only be paid twice if the kill fell between its delivery and the client writing it to the run's
    # cache: a call in flight, which the resume found unsettled in the run's write-ahead log (at most 8: concurrency 8)
    in_flight = json.loads((run / "summary.json").read_text())["usage"].get("lost_in_flight", 0)
    assert len(resent) <= in_flight <= 8, (len(resent), in_flight)
    # the resumed run did the remaining work, not the whole run again
    assert len(second) < len(first) + 2 * (size - at_kill) + 20


def test_progress_lines_when_stderr_is_not_a_terminal(server_factory, tmp_path):
    srv = server_factory(latency_s=0.05)
    run = tmp_path / "run"
    proc = refed(
        "synthesize",
        *sets(run_overrides(srv, run, 12, **{"synthesis.concurrency": 2})),
        "--set",
        "run.progress=true",
        "--set",
        "run.progress_every_s=0.2",
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    lines = [x for x in err.splitlines() if x.startswith("synthesize: ")]
    assert len(lines) >= 2 and all(
        "/12 samples" in x and "LM calls" in x and "rejects" in x and "ETA" in x for x in lines
    )
    proc = refed(
        "judge",
        "run",
        str(run),
        "--set",
        f"judge.api_base='{srv.api_base}'",
        "--set",
        "judge.api_key_env=''",
        "--set",
        "run.progress=true",
        "--set",
        "run.progress_every_s=0.2",
        "--set",
        "judging.concurrency=3",
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert any(x.startswith("judge: ") and "/12 samples" in x for x in err.splitlines())


def test_sigint_sigterm_sighup_stop_cleanly_and_resume(server_factory, tmp_path):
    for name, code in (("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)):
        srv = server_factory(latency_s=0.2)
        run = tmp_path / name
        # in the foreground: SIGINT at its default even when the test runner was started in the background
        proc = refed(
            "synthesize",
            *sets(run_overrides(srv, run, 40, **{"synthesis.concurrency": 4})),
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ((run / "samples.jsonl").exists() and samples(run)):
            time.sleep(0.1)
        proc.send_signal(getattr(signal, name))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, (name, err)
        assert err.strip().splitlines()[-1].startswith(f"refed: stopped by {name}") and "Traceback" not in err
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "interrupted" and 0 < summary["samples"] < 40
        proc = refed("synthesize", *sets(run_overrides(srv, run, 40, **{"synthesis.concurrency": 4})))
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        ids = [s["meta"]["id"] for s in samples(run)]
        assert len(ids) == len(set(ids)) == 40


def test_one_writer_per_run_dir_readers_warned_and_a_dead_holder_taken_over(server_factory, tmp_path):
    srv = server_factory(latency_s=0.5)  # slow enough that the first writer is still at work when it is killed
    run = tmp_path / "run"
    args = ("synthesize", *sets(run_overrides(srv, run, 40, **{"synthesis.concurrency": 2})))
    first = refed(*args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (run / "samples.jsonl").exists():
        time.sleep(0.05)
    second = refed(*args)
    out2, err2 = second.communicate(timeout=120)
    assert second.returncode == 2 and f"is in use by PID {first.pid} (refed synthesize" in err2, err2
    assert len(err2.strip().splitlines()) == 2  # the seed-loading line, then the one error line
    # a reader during the run works, and says the run is still being written; `refed report`, which writes
    # report.html into the run dir, waits its turn like any writer
    exp = refed("export", str(run), "--format", "messages", "--out", str(tmp_path / "during"))
    out, err = exp.communicate(timeout=120)
    assert exp.returncode == 0 and f"still being written by PID {first.pid}" in err, err
    report = refed("report", str(run))
    out, err = report.communicate(timeout=120)
    assert report.returncode == 2 and f"is in use by PID {first.pid} (refed synthesize" in err, err
    assert len(err.strip().splitlines()) == 1 and not (run / "report.html").exists()
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert not (run / "summary.json").exists()  # it died mid-run
    srv.cfg.latency_s = 0.0
    assert json.loads((run / ".refed.lock").read_text())["pid"] == first.pid  # left behind by the dead holder
    # a half-written run: export says so, on stderr and in its dataset card
    exp = refed("export", str(run), "--format", "messages", "--out", str(tmp_path / "exp"))
    out, err = exp.communicate(timeout=120)
    assert exp.returncode == 0 and "no summary.json" in err, err
    assert "Incomplete data" in (tmp_path / "exp" / "README.md").read_text()
    # the dead holder's lock is taken over, and the run finishes with every sample once
    again = refed(*args)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    ids = [s["meta"]["id"] for s in samples(run)]
    assert len(ids) == len(set(ids)) == 40


def test_a_corrupt_middle_line_stops_every_reader_until_repaired(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    args = ("synthesize", *sets(run_overrides(srv, run, 20)))
    assert refed(*args).wait(timeout=300) == 0
    lines = (run / "samples.jsonl").read_text().splitlines(keepends=True)
    lines[7] = '{"instruction": "half a reco\n'
    (run / "samples.jsonl").write_text("".join(lines))
    for cmd in (
        args,
        ("report", str(run)),
        ("judge", "run", str(run), "--set", f"judge.api_base='{srv.api_base}'", "--set", "judge.api_key_env=''"),
        ("export", str(run), "--format", "messages", "--out", str(tmp_path / "e")),
    ):
        p = refed(*cmd)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 2 and "samples.jsonl:8 is not a JSON record" in err and "refed repair" in err, (
            cmd[0],
            err,
        )
        assert "Traceback" not in err
    p = refed("repair", str(run))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "samples.jsonl: moved 1 corrupt line(s)" in out, err
    assert (run / "samples.jsonl.quarantine").read_text() == '{"instruction": "half a reco\n'
    p = refed(*args)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "20/20" in out, err
    recs = samples(run)  # every line parses, and every sample is there once
    assert len(recs) == 20 and len({r["meta"]["id"] for r in recs}) == 20


def test_repair_moves_duplicates_and_a_torn_line_aside():
    from refed_dspy.store.jsonl import split_lines

    a, b = b'{"meta": {"id": "a"}}', b'{"meta": {"id": "b"}}'
    kept, bad, counts = split_lines(a + b"\n" + b + b"\n" + a + b"\nnot json\n" + b'{"meta": {"id": "c"', None)
    assert (
        kept == [a, b, a]
        and bad == [b"not json", b'{"meta": {"id": "c"']
        and counts == {"corrupt": 1, "duplicate": 0, "torn": 1}
    )
    kept, bad, counts = split_lines(a + b"\n" + b + b"\n" + a + b"\n", lambda r: r["meta"]["id"])
    assert kept == [a, b] and bad == [a] and counts["duplicate"] == 1


def test_sigterm_from_the_first_instant_stops_with_its_exit_code(tmp_path):
    """A SIGTERM that arrives while the command is still starting (imports, config), to a process started with SIGINT
    ignored, stops it with one line and exit 143, not a traceback and not a death by signal."""

    def background() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    for _ in range(3):
        proc = refed(
            "synthesize",
            "--set",
            f"run.dir='{tmp_path / 'run'}'",
            "--set",
            "teacher.api_key_env=''",
            preexec_fn=background,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _catches_sigterm(proc.pid):
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert "stopped by SIGTERM" in err and "Traceback" not in err


def test_a_stop_landing_inside_an_exec_of_a_string_still_exits_with_its_code(tmp_path):
    """The stop handler's exception passes through an `exec` of a string (pydantic and dataclasses run many while
    modules import): CPython then ends a `python -m` process by SIGINT at exit, whatever code it returned, if that
    exception is a bare KeyboardInterrupt (1 start in 10 under load exited -2 instead of 143). Deterministic here:
    the signal is sent from inside the exec."""
    package = tmp_path / "stopped_in_exec"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import signal, sys\n"
        "from refed_dspy.cli import _stop_like_sigint\n"
        "signal.signal(signal.SIGTERM, _stop_like_sigint)\n"
        "try:\n"
        "    exec('import os, signal\\nos.kill(os.getpid(), signal.SIGTERM)\\nfor _ in range(10**6): pass')\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(143)\n"
    )
    done = subprocess.run([sys.executable, "-m", "stopped_in_exec"], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 143, done.stderr[-2000:]


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM yet (Linux: /proc/PID/status, SigCgt)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) & (1 << (15 - 1)))
