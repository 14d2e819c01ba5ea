"""Ctrl-C stops a command cleanly and says what a finished one says (issue 51, item 5): the calls in flight finish,
the summary is written and printed (what was written, what was spent), then one line says how to resume; the exit
code is 128 + the signal's number. A real SIGINT to a `refed` process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

from cli_helpers import lines, refed, sets
from conftest import run_overrides

from refed_dspy.synthesis.summary import format_summary

RESUME = "nothing it wrote is lost: run the same command again to go on"


def _in_the_foreground() -> None:
    """SIGINT at its default, as in a terminal, whatever the test runner inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_once(proc, path, at_least: int) -> tuple[str, str]:
    """SIGINT to `proc` once `path` holds `at_least` records; its stdout and stderr."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(lines(path)) < at_least and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=120)


def test_ctrl_c_during_synthesis_prints_the_summary_a_finished_run_prints(server_factory, tmp_path):
    """It printed one line and no summary: now the summary (samples written, calls, tokens, cost), as summary.json
    holds it, then the line that says how to resume; exit 130."""
    srv = server_factory(latency_s=0.2)
    run = tmp_path / "run"
    proc = refed(
        "synthesize",
        *sets(run_overrides(srv, run, 40, **{"synthesis.concurrency": 4})),
        preexec_fn=_in_the_foreground,
    )
    out, err = _interrupt_once(proc, run / "samples.jsonl", 4)
    assert proc.returncode == 130, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["samples"] < 40
    assert out == format_summary(summary) + "\n"
    assert f"run {run}: interrupted" in out and "  LM calls " in out and "  cost " in out
    assert err.strip().splitlines()[-1] == f"refed: stopped by SIGINT; {RESUME}" and "Traceback" not in err
    # said as the signal lands: the calls in flight then take seconds
    stopping = (
        "refed: SIGINT: stopping once the calls in flight finish (a second SIGINT stops without waiting for them)"
    )
    assert err.strip().splitlines()[-2:] == [stopping, f"refed: stopped by SIGINT; {RESUME}"], err


def test_ctrl_c_during_judging_prints_what_was_judged_and_spent(run, server_factory):
    """The judge's lines (judged n/N, the scores so far, its calls and cost), then how to resume; exit 130."""
    slow = server_factory(latency_s=0.3)
    judge = [f"judge.api_base='{slow.api_base}'", "judge.api_key_env=''", "judging.concurrency=2"]
    proc = refed("judge", "run", str(run), *sets(judge), preexec_fn=_in_the_foreground)
    out, err = _interrupt_once(proc, run / "judgments.jsonl", 2)
    assert proc.returncode == 130, err
    summary = json.loads((run / "judge_summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["judged"] < summary["samples"]
    said = out.splitlines()
    assert (
        said[0]
        == f"judged {summary['judged']}/{summary['samples']} samples of {run} with {summary['judge']}: interrupted"
    )
    assert any(x.startswith(f"  {summary['usage']['calls']} judge calls, $") for x in said), out
    assert err.strip().splitlines()[-1] == f"refed: stopped by SIGINT; {RESUME}" and "Traceback" not in err


def _main_in_a_child(command: str, before_exit: str, torch: bool) -> subprocess.CompletedProcess:
    """`refed` (the console script's main) in a child whose one command is `command` (a body of `def func(args)`),
    with `before_exit` run at the interpreter's shutdown (an atexit callback) and, if `torch`, torch counted as
    imported."""
    code = f"""
import atexit, os, signal, sys, time, types
import refed_dspy.cli as cli
if {torch!r}:
    sys.modules.setdefault("torch", types.ModuleType("torch"))
def func(args):
    {command}
built = cli.build_parser
def build_parser():
    parser = built()
    parser.set_defaults(func=func)
    return parser
cli.build_parser = build_parser
atexit.register(lambda: ({before_exit}))
sys.argv = ["refed"]
sys.exit(cli.main())
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_stop_ends_the_process_before_torch_s_threads_can_abort_its_shutdown():
    """A training stopped mid-step left torch's own threads running, and the interpreter's shutdown then aborted
    now and then ('terminate called without an active exception', exit 134 for 130): with torch loaded, a stop ends
    the process at once. The shutdown's abort stands in for torch's; without torch the shutdown runs as before."""
    stopped = _main_in_a_child("raise KeyboardInterrupt", "os.abort()", torch=True)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.strip() == f"refed: stopped by SIGINT; {RESUME}"
    plain = _main_in_a_child("raise KeyboardInterrupt", "os.abort()", torch=False)
    assert plain.returncode == -signal.SIGABRT


def test_a_signal_after_the_command_ended_keeps_its_exit_code():
    """Ctrl-C a moment after an evaluation finished (its verdict printed) met the interpreter's shutdown: a traceback
    from whatever code it interrupted, and exit 130 for a complete result. Now the command's own code."""
    done = _main_in_a_child("print('done'); return 0", "os.kill(os.getpid(), signal.SIGINT), time.sleep(5)", False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")


def test_stdout_closed_by_its_reader_ends_as_sigpipe_would_without_a_traceback():
    """`refed seeds | head -1`: the reader goes away before the command has written all: no traceback, exit 128+13."""
    read, write = os.pipe()
    os.close(read)  # every write to the pipe fails: the reader is gone
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "refed_dspy.cli", "seeds"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.returncode == 128 + signal.SIGPIPE and "Traceback" not in proc.stderr, proc.stderr


LOOP_SCRIPT = """
import asyncio, json, sys
import refed_dspy
from refed_dspy.errors import RunInterrupted

async def main():
    return refed_dspy.synthesize(json.loads(sys.argv[2]))

try:
    if sys.argv[1] == "asyncio.run":
        asyncio.run(main())
    else:  # a loop run by hand, as a notebook's kernel runs one
        asyncio.new_event_loop().run_until_complete(main())
except RunInterrupted as stop:
    print("RunInterrupted", stop.summary.status if stop.summary else None)
"""


def test_ctrl_c_stops_a_run_called_inside_an_event_loop_as_it_stops_one_in_a_script(server_factory, tmp_path):
    """`synthesize` called from a coroutine (a notebook, an async app): Ctrl-C winds the run down, writes its summary and
    raises RunInterrupted, as in a plain script. By hand-run loop the process ended at once with a bare
    KeyboardInterrupt and no summary (an interrupted Thread.join took the run's thread for ended); under asyncio.run
    the first Ctrl-C was held until the run had finished."""
    srv = server_factory(latency_s=0.3)
    for how in ("asyncio.run", "by hand"):
        run = tmp_path / how.replace(" ", "-")
        config = {
            "teacher": {"api_base": srv.api_base, "api_key_env": ""},
            "run": {"dir": str(run), "progress": False},
            "synthesis": {"size": 400, "concurrency": 4},
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", LOOP_SCRIPT, how, json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_in_the_foreground,
        )
        out, err = _interrupt_once(proc, run / "samples.jsonl", 3)
        assert proc.returncode == 0 and out.strip() == "RunInterrupted interrupted", (how, out, err)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "interrupted" and 3 <= summary["samples"] < 400, how


def test_a_run_called_while_its_caller_cleans_up_after_a_cancellation_runs():
    """Code that calls refed while its task is already being cancelled (a TaskGroup's cleanup, a server shutting
    down) is not stopped at once: only a cancellation asked after the run began is a stop."""
    import asyncio

    from refed_dspy.runtime.sync import run_sync

    async def work():
        await asyncio.sleep(0.3)
        return "done"

    said = []

    async def main():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            said.append(run_sync(work()))
            raise

    async def outer():
        task = asyncio.create_task(main())
        await asyncio.sleep(0.1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(outer())
    assert said == ["done"]
