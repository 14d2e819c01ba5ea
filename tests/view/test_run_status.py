"""`refed status DIR` on any run dir: finished and judged, being written (by whom), killed, filtered, or not a run
dir at all; read without the lock and without writing anything."""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

from cli_helpers import lines, lock_holder, refed, run_refed

from refed_dspy.quality.filter_run import filter_run, parse_filter


def status_json(path: Path) -> dict:
    code, out, err = run_refed("status", str(path), "--json", timeout=120)
    assert code == 0, err
    return json.loads(out)


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file()}


def test_status_of_a_finished_judged_run_and_of_its_filtered_dir(run, server_factory):
    srv = server_factory()
    judge = refed(
        "judge", "run", str(run), "--set", f"judge.api_base='{srv.api_base}'", "--set", "judge.api_key_env=''"
    )
    _, err = judge.communicate(timeout=300)
    assert judge.returncode == 0, err
    summary = json.loads((run / "summary.json").read_text())
    rejects = lines(run / "rejects.jsonl")

    s = status_json(run)
    assert s["kind"] == "synthesis" and s["state"] == "complete" and s["holder"] is None
    assert s["samples"] == s["size"] == 30 and s["method"] == "refed" and s["mode"] == "online"
    assert s["rejects"] == len(rejects) and s["rejects_by_stage"] == dict(Counter(r["stage"] for r in rejects))
    assert s["calls"] == summary["usage"]["calls"] and s["cost_usd"] == round(summary["cost_usd"], 6)
    judge_summary = json.loads((run / "judge_summary.json").read_text())
    assert s["judge"]["state"] == "complete" and s["judge"]["judged"] == 30 and s["judge"]["samples"] == 30
    assert s["judge"]["calls"] == judge_summary["usage"]["calls"] > 0
    assert "batches" not in s

    code, out, err = run_refed("status", str(run))
    assert code == 0 and err == ""
    assert "state: complete" in out and "samples: 30/30" in out and f"rejects: {len(rejects)}" in out
    assert f"paid LM calls: {summary['usage']['calls']}" in out and "judge: complete, 30/30 judged" in out

    filtered = run.parent / "filtered"
    filter_run(run, filtered, [parse_filter("random_subset:k=10,seed=1")])
    f = status_json(filtered)
    assert f["kind"] == "filtered" and f["state"] == "complete" and f["samples"] == 10
    assert f["rejects"] == 20 and f["rejects_by_stage"] == {"filter": 20} and f["calls"] is None
    assert f["source_run"] == str(run.resolve())
    # its judgments came with its samples: carried, not a judging that stopped (it said "judge: stopped, 10/? judged")
    assert f["judge"]["state"] == "carried" and f["judge"]["judged"] == f["judge"]["samples"] == 10
    code, out, _ = run_refed("status", str(filtered))
    assert code == 0 and "judge: carried from the run it was filtered from, 10/10 judged" in out

    # a judging that ended when the run had 26 samples (it grew since): the 4 made since are said, not a stale count
    (run / "judge_summary.json").write_text(json.dumps({**judge_summary, "samples": 26}))
    assert status_json(run)["judge"]["made_since"] == 4
    code, out, _ = run_refed("status", str(run))
    assert code == 0 and "4 samples made since, not judged yet (`refed judge run` judges them)" in out, out


def test_status_of_a_run_being_written_names_its_holder_and_changes_nothing(run):
    summary = json.loads((run / "summary.json").read_text())
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write(b'{"instruction": "torn by a ki')  # a record being written: skipped by a reader, never cut off
    proc = lock_holder(run)
    try:
        before = snapshot(run)
        s = status_json(run)
        code, out, err = run_refed("status", str(run))
        assert snapshot(run) == before  # no lock taken, no torn line repaired, nothing written
    finally:
        proc.kill()
        proc.wait()
    assert s["state"] == "running" and s["summary_status"] == "complete" and s["samples"] == 30
    assert s["holder"]["pid"] == proc.pid and s["holder"]["host"] == socket.gethostname()
    assert s["holder"]["command"] == "refed synthesize"
    assert code == 0 and f"state: running: PID {proc.pid} on host {socket.gethostname()} (refed synthesize" in out

    # killed before it wrote its summary: stopped, and the figures still come from the records
    (run / "summary.json").unlink()
    s = status_json(run)
    assert s["state"] == "stopped" and s["summary_status"] is None and s["holder"] is None
    assert s["samples"] == 30 and s["size"] == 30 and s["calls"] == summary["usage"]["calls"]
    code, out, _ = run_refed("status", str(run))
    assert "state: stopped (its last invocation wrote no summary" in out and "run the same command to resume" in out

    # stopped by a signal: the summary's word for it is the same state, said once ("stopped (summary status
    # interrupted)" named it twice)
    (run / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    code, out, _ = run_refed("status", str(run))
    assert code == 0 and "state: stopped; run the same command to resume" in out, out
    assert "summary status" not in out


def test_status_of_what_is_not_a_run_dir_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "a-file").write_text("x")
    mine = tmp_path / "mine"  # a folder of the user's holding a file of a run's name: refed did not make it
    mine.mkdir()
    (mine / "samples.jsonl").write_text('{"x": 1}\n')
    exported = tmp_path / "exported"  # an export refed made: not a run, said so (it read as "nothing made yet")
    exported.mkdir()
    (exported / ".refed-dir").write_text("export\n")
    for path, why in (
        (empty, "refed did not make it"),
        (mine, "refed did not make it"),
        (exported, "it is a refed export directory"),
        (tmp_path / "nowhere", "no such path"),
        (tmp_path / "a-file", "not a directory"),
    ):
        code, out, err = run_refed("status", str(path), timeout=120)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"refed: error: {path} is not a run directory") and why in err
    code, out, _ = run_refed("status", "--help", timeout=120)
    assert "exit codes: 0 the status was read" in out and "2 RUN_DIR is not a run directory" in out


def test_status_of_a_plain_folder_of_runs_names_them_and_a_comparison_is_known_by_its_marker(tmp_path):
    runs = tmp_path / "runs"
    for name in ("a", "b", "c"):
        (runs / name).mkdir(parents=True)
        (runs / name / "samples.jsonl").write_text("")
        (runs / name / ".refed-dir").write_text("run\n")
    (runs / "mine").mkdir()  # a folder of the user's with a file of the same name is no run dir
    (runs / "mine" / "samples.jsonl").write_text('{"x": 1}\n')
    code, out, err = run_refed("status", str(runs), timeout=120)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    assert err.startswith(f"refed: error: {runs} is not a run directory; it holds 3 run dirs: {runs / 'a'}, ")
    assert str(runs / "c") in err and "give one of them" in err

    # what `refed compare` made (its marker first, compare.json only at its end) is a comparison
    compare = tmp_path / "compare"
    (compare / "refed").mkdir(parents=True)
    (compare / "refed" / "samples.jsonl").write_text("")
    (compare / "refed" / ".refed-dir").write_text("run\n")
    (compare / ".refed-dir").write_text("compare\n")
    s = status_json(compare)
    assert s["kind"] == "comparison" and [r["run_dir"] for r in s["runs"]] == [str(compare / "refed")]


def test_the_package_s_run_status_reads_a_run_dir_and_an_experiment_dir(run, tmp_path):
    """`refed_dspy.run_status(path)`: typed, for a run dir (RunStatus) and for an experiment dir (ExperimentStatus),
    one line for what is neither."""
    import pytest

    import refed_dspy
    from refed_dspy.store.ownership import claim
    from refed_dspy.view.status.experiment import ExperimentStatus
    from refed_dspy.view.status.run import RunStatus

    status = refed_dspy.run_status(run)
    assert isinstance(status, RunStatus) and status.samples == 30
    experiment = tmp_path / "exp"
    experiment.mkdir()
    claim(experiment, "experiment")
    assert isinstance(refed_dspy.run_status(experiment), ExperimentStatus)
    with pytest.raises(refed_dspy.RunDirError):
        refed_dspy.run_status(tmp_path / "nothing")


def test_status_after_two_kills_counts_the_calls_no_record_holds(server_factory, tmp_path):
    """Killed with -9 twice mid-run (a server answering in 0.3 s, 8 calls in flight): `refed status` counted the
    records alone (84 calls against 96 served in the issue's trial). Its calls now add what the write-ahead ledger
    says no record holds: never below what the server served, above it by at most the calls in flight at the kills
    (written down before they were sent), which it says, with the most they can cost."""
    import signal
    import time

    from conftest import run_overrides
    from loopback_server import read_log

    srv = server_factory(latency_s=0.3)
    run = tmp_path / "run"
    over = run_overrides(srv, run, 40, **{"synthesis.concurrency": 8})
    for served in (25, 50):
        proc = refed("synthesize", "--quiet", *sum((["--set", o] for o in over), []))
        deadline = time.time() + 120
        while len(read_log(srv.cfg.log_path)) < served and time.time() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    time.sleep(0.5)  # the requests in flight at the second kill are answered (and logged) by the server
    served = len(read_log(srv.cfg.log_path))
    s = status_json(run)
    assert s["state"] == "stopped"
    assert s["calls"] >= served  # before: 27 calls against 50 served
    assert s["calls"] <= served + s["lost_in_flight"]
    assert 0 < s["lost_in_flight"] <= 2 * 8 and s["cost_up_to_usd"] > s["cost_usd"]
    code, out, _ = run_refed("status", str(run))
    assert code == 0 and f"paid LM calls: {s['calls']}" in out and "in flight when an invocation was killed" in out
    assert "(up to $" in out


def test_a_finished_run_extended_and_killed_is_stopped_at_its_new_size(run, server_factory):
    """A finished run of 30 asked for 60 and killed with -9 mid-way: its summary.json is the finished invocation's,
    and `refed status` said "complete", 30 of 30 (a newcomer's trial); the last invocation began after that summary
    and never ended (its events say so), so it is stopped, at the size it was asked for."""
    import signal
    import time

    from conftest import run_overrides
    from loopback_server import read_log

    assert status_json(run)["state"] == "complete"
    srv = server_factory(latency_s=0.3)
    over = run_overrides(srv, run, 60, **{"seeds.limit": 8, "synthesis.instructions_per_feature": 2})
    proc = refed("synthesize", "--quiet", *sum((["--set", o] for o in over), []))
    deadline = time.time() + 120
    while len(read_log(srv.cfg.log_path)) < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    s = status_json(run)
    assert s["state"] == "stopped" and s["size"] == 60 and s["summary_status"] is None, s
    code, out, _ = run_refed("status", str(run))
    assert code == 0 and "its last invocation wrote no summary" in out and "complete" not in out, out


def test_a_run_dir_a_refused_config_left_says_nothing_was_made_and_a_mistyped_one_says_no_such_path(
    server_factory, tmp_path
):
    """A run whose endpoint refused its model before its first call leaves a run dir (its config.toml): its status
    said "run the same command to resume", which fails the same way again; now it says nothing was made and to fix
    what stopped it. `refed report` and `refed judge run` of a mistyped path said to pass --config (then failed on
    the missing samples): now "no such path", as `refed status` says."""
    from conftest import run_overrides

    srv = server_factory(fail_status=404)  # as a server answers a model it does not serve
    run = tmp_path / "run"
    over = run_overrides(srv, run, 4)
    code, _, err = run_refed("synthesize", *[x for o in over for x in ("--set", o)], timeout=120)
    assert code == 2 and (run / "config.toml").exists(), err
    code, out, err = run_refed("status", str(run), timeout=120)
    assert code == 0 and "nothing made yet" in out and "fix what stopped it" in out, out + err
    assert "resume" not in out
    for command in (["report"], ["judge", "run"]):
        code, out, err = run_refed(*command, str(tmp_path / "rnu"), "--config", str(run / "config.toml"), timeout=120)
        assert code == 2 and "no such path" in err and "--config" not in err, err
