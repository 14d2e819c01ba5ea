"""A run dir's write-ahead ledgers from the command line: a line refed does not write, a ledger gone, a ledger made a
directory; each is one line on stderr and exit 2 before any request, and a new ledger is started only when asked."""

from __future__ import annotations

import pytest
from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import read_log


def _finished_run(srv, run, size: int) -> list[str]:
    """A run of `size` samples made, and the overrides that resume it to a larger size under a cost budget."""
    extra = {"seeds.limit": 2, "synthesis.instructions_per_feature": 1}
    code, _, err = run_refed("synthesize", *sets(run_overrides(srv, run, size, **extra)))
    assert code == 0, err
    return run_overrides(srv, run, size + 4, **extra, **{"synthesis.max_cost_usd": 0.06})


def _refused(srv, over: list[str], *flags: str) -> str:
    """The resume exits 2 with its error on one line (no traceback), and the server sees no request: that line."""
    before = len(read_log(srv.cfg.log_path))
    code, out, err = run_refed("synthesize", *sets(over), *flags)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert len(read_log(srv.cfg.log_path)) == before
    last = err.strip().splitlines()[-1]
    assert last.startswith("refed: error: ")
    return last.removeprefix("refed: error: ")


@pytest.mark.parametrize(
    "line, named",
    [
        ('{"lost": {"calls": 40, "cost_usd": -0.86}}', "lost.cost_usd is -0.86"),  # gives back budget spent
        ('{"lost": {"calls": 1e308}}', "lost.calls is 1e+308"),
    ],
)
def test_a_ledger_line_refed_does_not_write_stops_the_resume_naming_the_file_and_line(
    server_factory, tmp_path, line, named
):
    srv = server_factory()
    run = tmp_path / "run"
    over = _finished_run(srv, run, 2)
    ledger = run / "ledger.jsonl"
    n = len(ledger.read_text().splitlines())
    with open(ledger, "a") as fh:
        fh.write(line + "\n")
    said = _refused(srv, over)
    assert said.startswith(f"{ledger}:{n + 1}: {named}") and "not believed" in said


def test_a_ledger_gone_is_refused_until_a_new_one_is_asked_for_and_a_directory_is_one_line(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    over = _finished_run(srv, run, 2)
    ledger = run / "ledger.jsonl"
    ledger.unlink()
    said = _refused(srv, over)
    assert said.startswith(f"{ledger} is gone, though {run}") and "--new-ledger" in said

    ledger.mkdir()
    said = _refused(srv, over)
    assert said.startswith(f"{ledger} cannot be read as a write-ahead ledger (Is a directory)")
    ledger.rmdir()

    code, out, err = run_refed("synthesize", *sets(over), "--new-ledger")
    assert code == 0, err
    assert "a new ledger is started (--new-ledger)" in err and ledger.exists()
    code, _, err = run_refed("synthesize", *sets(over))  # the new ledger is the run's from now on
    assert code == 0, err


def test_a_judging_whose_ledger_is_gone_is_refused(run, server_factory):
    srv = server_factory()
    judge = ["judge", "run", str(run), "--set", f"judge.api_base='{srv.api_base}'", "--set", "judge.api_key_env=''"]
    code, _, err = run_refed(*judge)
    assert code == 0, err
    (run / "judge_ledger.jsonl").unlink()
    before = len(read_log(srv.cfg.log_path))
    code, _, err = run_refed(*judge)
    assert code == 2 and f"{run / 'judge_ledger.jsonl'} is gone" in err and "Traceback" not in err
    assert len(read_log(srv.cfg.log_path)) == before
    code, _, err = run_refed(*judge, "--new-ledger")
    assert code == 0, err
