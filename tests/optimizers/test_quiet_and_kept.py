"""What an optimization says and does not say: other libraries' output (DSPy's bars and bootstrapping lines,
MIPROv2's proposed programs) kept off the terminal and in the run's dspy.log, refed's own lines still shown; a kept
baseline named with the reason it can name; the trace threshold following the metric's scale."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from cli_helpers import run_refed as refed
from conftest import run_overrides

from refed_dspy.experiments.outputs import ExperimentResult, kept_lines, leaderboard_rows
from refed_dspy.optimizers.outputs import kept_line, kept_reason

ROOT = Path(__file__).resolve().parents[2]

# what DSPy and its optimizers print while MIPROv2 runs, none of which is the user's to read
NOISE = ("Bootstrapped ", "Bootstrapping set", "it/s]", "Average Metric", "(dspy.Signature)", "PROPOSED INSTRUCTION")


def _optimize_from_python(srv, judge, tmp_path: Path, verbose: bool) -> subprocess.CompletedProcess:
    """MIPROv2 light from Python in a fresh interpreter with no logging set up (as a notebook or a script has it)."""
    over = run_overrides(
        srv,
        tmp_path / "run",
        8,
        **{
            "judge.api_base": f"'{judge.api_base}'",
            "judge.api_key_env": "''",
            "optimize.out": f"'{tmp_path / 'opt'}'",
            "optimize.optimizer": "'miprov2'",
            "optimize.n_train": 6,
            "optimize.n_val": 4,
            "optimize.num_threads": 2,
            "seeds.limit": 6,
        },
    )
    script = textwrap.dedent(
        f"""
        from refed_dspy.optimizers.run import optimize
        result = optimize(None, {over!r}, verbose={verbose})
        print("score", result.score_before, result.score_after)
        """
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_miprov2_from_python_prints_only_what_is_refed_s(server_factory, tmp_path):
    teacher, judge = server_factory(signal=True), server_factory(signal=True)
    quiet = _optimize_from_python(teacher, judge, tmp_path / "quiet", verbose=False)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not [n for n in NOISE if n in quiet.stderr + quiet.stdout], quiet.stderr[:2000]
    assert len(quiet.stderr.splitlines()) <= 3, quiet.stderr
    kept = (tmp_path / "quiet" / "opt" / "dspy.log").read_text()
    assert "Bootstrapping set" in kept and "(dspy.Signature)" in kept and "\r" not in kept
    # verbose: the same run shows it all (the test above can fail)
    loud = _optimize_from_python(teacher, judge, tmp_path / "loud", verbose=True)
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "Bootstrapping set" in loud.stdout + loud.stderr and "it/s]" in loud.stderr
    assert not (tmp_path / "loud" / "opt" / "dspy.log").exists()


def test_quieted_keeps_refed_s_warnings_and_restores_the_streams(tmp_path):
    """In a fresh interpreter (no logging set up: warnings go through logging's last resort), a refed warning and a
    progress line on console() reach stderr inside the block; a print and a bar do not; after it, print is back."""
    script = textwrap.dedent(
        f"""
        import logging
        from pathlib import Path
        from tqdm import tqdm
        from refed_dspy.runtime.quiet import console, quieted
        with quieted(Path({str(tmp_path / "lib.log")!r})):
            print("a library's line")
            for _ in tqdm(range(3)):
                pass
            print("refed: progress", file=console())
            logging.getLogger("refed_dspy.x").warning("warning: refed's own")
            logging.getLogger("optuna").info("Trial 0 finished")
        print("after the block")
        """
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "after the block\n"
    assert "refed: progress" in p.stderr and "warning: refed's own" in p.stderr
    assert "a library's line" not in p.stderr and "it/s" not in p.stderr and "Trial 0" not in p.stderr
    assert (tmp_path / "lib.log").read_text() == "a library's line\n"


def test_a_kept_baseline_names_its_reason():
    no_trace = kept_reason(True, 0.39, 0.39, 0.39, {"scored": 3, "passed": 0}, 12)
    assert no_trace.startswith("no bootstrapped trace passed the threshold: 0 of 3 scored 0.3900 or more")
    assert "validation examples" not in no_trace
    lower = kept_reason(False, 0.5, 0.42, 0.5, {"scored": 6, "passed": 2}, 4)
    assert lower.startswith("the optimized program scored 0.4200 on the validation set, below the baseline's 0.5000")
    assert lower.endswith("; 4 validation examples are too few to tell programs apart: raise optimize.n_val")
    assert kept_reason(False, 0.5, 0.5, 0.5, {"scored": 6, "passed": 2}, 12) is None  # a tie keeps the compiled one
    line = kept_line("baseline", lower, 0.5, 0.42, "opt/program.candidate.json")
    assert line.startswith("kept: the baseline program (the optimized program scored 0.4200 on the validation set")
    assert line.endswith("); the optimized one is in opt/program.candidate.json")
    # the optimizer changed nothing: nothing is "kept in None"
    assert "None" not in kept_line("baseline", no_trace, 0.39, 0.39, None)
    # the optimized program kept says so too, with both scores (it used to say nothing)
    won = "kept: the optimized program (it scored 0.6120 on the validation set, above the baseline's 0.5658)"
    assert kept_line("compiled", None, 0.5658, 0.612) == won
    tie = kept_line("compiled", None, 0.5, 0.5)
    assert tie == "kept: the optimized program (it scored 0.5000 on the validation set, equal to the baseline's 0.5000)"
    # too few validation examples are said whichever program is kept (it was said only of a kept baseline)
    few = kept_line("compiled", None, 0.0828, 0.0906, None, n_val=2)
    assert few.endswith("above the baseline's 0.0828; 2 validation examples are too few to tell programs apart)")
    assert "too few" not in kept_line("compiled", None, 0.5, 0.6, None, n_val=12)


def test_the_result_says_which_program_it_kept():
    """The Python API's result carries which program it kept and why, typed, and its summary file says the same."""
    import dspy

    from refed_dspy.optimizers.outputs import OptimizeResult

    def result(**kept) -> OptimizeResult:
        return OptimizeResult(
            dspy.Predict("q -> a"), "bootstrap", 0.5658, 0.4777, [], Path("o"), Path("o/p"), {}, 4, 4, **kept
        )

    why = "the optimized program scored 0.4777 on the validation set, below the baseline's 0.5658"
    kept = result(kept="baseline", kept_reason=why, candidate_path=Path("o/program.candidate.json"))
    assert kept.kept_line == f"kept: the baseline program ({why}); the optimized one is in o/program.candidate.json"
    summary = kept.summary()
    assert (summary["kept"], summary["kept_reason"]) == ("baseline", why)
    assert summary["candidate_program"] == "o/program.candidate.json"
    assert result().kept == "compiled" and result().summary()["candidate_program"] is None


def test_a_cell_that_kept_its_baseline_reads_kept_baseline_not_a_zero_width_interval():
    zero = {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "significant": False, "level": 0.95}
    row = {
        "id": "b",
        "label": "optimizer=bootstrap, repeat 0",
        "status": "done",
        "test_mean": 0.5,
        "test_n": 5,
        "difference": zero,
        "kept": "baseline",
        "kept_reason": "no bootstrapped trace passed the threshold: 0 of 3 scored 0.7000 or more",
        "val_before": 0.39,
        "val_after": 0.39,
    }
    result = ExperimentResult.model_validate(
        {
            "name": "e",
            "status": "complete",
            "out": "x",
            "split": {"train": 1, "val": 1, "test": 1},
            "examples": {"train": 1, "val": 1, "test": 5},
            "level": 0.95,
            "cell_level": 0.95,
            "detectable": 0.3,
            "underpowered": True,
            "cells": [row],
            "baselines": [],
            "champion": None,
            "estimate": {},
            "usage": {"calls": 1, "cost_usd": 0.0},
            "wall_s": 1.0,
            "finished_at": "now",
        }
    )
    table = leaderboard_rows(result)[0]
    assert table[2] == "kept baseline" and "+0.0000" not in " ".join(table)
    assert kept_lines(result) == [f"- optimizer=bootstrap, repeat 0: kept baseline: {row['kept_reason']}"]


def test_a_threshold_that_no_trace_reaches_keeps_the_baseline_and_says_why(server_factory, tmp_path):
    """`refed optimize` with bootstrap and optimize.threshold = 1.0: no trace is kept, the program is given back, and
    the one line says so (it used to say "the compiled one is kept in None"). Unset (the default), the threshold is
    the starting program's validation mean, and on the signal mode the traces it keeps make a better program."""
    teacher, judge = server_factory(signal=True), server_factory(signal=True)

    def run(out: Path, *extra: str) -> tuple[int, str, str]:
        over = run_overrides(
            teacher,
            tmp_path / "run",
            8,
            **{
                "judge.api_base": f"'{judge.api_base}'",
                "judge.api_key_env": "''",
                "optimize.out": f"'{out}'",
                "optimize.optimizer": "'bootstrap'",
                "optimize.n_train": 8,
                "optimize.n_val": 8,
                "optimize.num_threads": 1,
                "seeds.limit": 8,
            },
        )
        return refed("optimize", *[x for o in [*over, *extra] for x in ("--set", o)])

    code, out, err = run(tmp_path / "strict", "optimize.threshold=1.0")
    assert code == 0, err
    assert "kept: the baseline program (no bootstrapped trace passed the threshold: 0 of" in out, out
    assert "None" not in out
    summary = json.loads((tmp_path / "strict" / "optimize_summary.json").read_text())
    assert summary["kept"] == "baseline" and summary["traces"]["passed"] == 0 and summary["threshold"] == 1.0
    code, out, err = run(tmp_path / "default")
    assert code == 0, err
    summary = json.loads((tmp_path / "default" / "optimize_summary.json").read_text())
    assert summary["threshold"] == summary["score_before"] and summary["traces"]["passed"] > 0
    assert summary["kept"] == "compiled" and summary["score_after"] > summary["score_before"]
    assert "kept: the baseline program" not in out
    assert "kept: the optimized program (it scored " in out and "above the baseline's" in out, out


def test_a_block_inside_a_verbose_one_changes_nothing_and_a_late_write_is_not_lost(tmp_path, capsys):
    """`refed experiment --verbose`: the cells' optimizations (quieted blocks inside it) show their output too; and
    what reaches the sink after its block (a thread that outlived it, a handler made inside it) goes to the stream it
    replaced, not to an old log file."""
    import sys

    from refed_dspy.runtime.quiet import quieted

    with quieted(tmp_path / "outer.log", verbose=True), quieted(tmp_path / "inner.log"):
        print("a library's line")
    assert "a library's line" in capsys.readouterr().out and not (tmp_path / "inner.log").exists()
    with quieted(tmp_path / "a.log"):
        print("kept in the log")
        late = sys.stdout
    late.write("after the block\n")
    assert "after the block" in capsys.readouterr().out
    assert (tmp_path / "a.log").read_text() == "kept in the log\n"


def test_a_write_racing_the_close_goes_to_the_terminal_and_reopens_no_log(tmp_path):
    """A writer that found the sink open and then waited for its lock while the block closed it: its line goes to
    the stream the sink replaced, and the closed log file is not opened again (a leaked handle, a line in a finished
    block's log)."""
    import io
    import threading

    from refed_dspy.runtime.quiet import _Sink

    class Announced:
        """The sink's lock, saying when a writer asks for it."""

        def __init__(self):
            self.lock, self.asked = threading.Lock(), threading.Event()

        def __enter__(self):
            if threading.current_thread() is not threading.main_thread():
                self.asked.set()
            return self.lock.__enter__()

        def __exit__(self, *exc):
            return self.lock.__exit__(*exc)

    after = io.StringIO()
    sink = _Sink(tmp_path / "a.log", after)
    sink.write("in the block\n")
    sink._write_lock = Announced()
    with sink._write_lock:  # the block is closing: the writer waits here
        writer = threading.Thread(target=sink.write, args=("late\n",))
        writer.start()
        assert sink._write_lock.asked.wait(10)  # it found the sink open and waits for the lock
        sink._closed = True
        sink._file.close()
        sink._file = None
    writer.join(5)
    assert after.getvalue() == "late\n" and sink._file is None
    assert (tmp_path / "a.log").read_text() == "in the block\n"


def test_a_line_ending_in_crlf_is_kept_and_a_bar_redraw_is_dropped(tmp_path):
    import io

    from refed_dspy.runtime.quiet import _Sink

    sink = _Sink(tmp_path / "a.log", io.StringIO())
    for text in ("a line\r\n", "\r 10%|#    |", "\r 100%|#####|", "\n", "next\n"):
        sink.write(text)
    sink.close()
    assert (tmp_path / "a.log").read_bytes() == b"a line\r\nnext\n"
