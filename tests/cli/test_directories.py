"""Only our own directories, as a user meets them: a command pointed at a folder refed did not make, at the current
directory by an empty path, at the root or at the home directory (`~` included) is refused in one line (exit 2) before it writes a
byte; `--fresh` removes only the run's files; a run dir of an earlier version still resumes; `refed report` does not
write into a run another process holds."""

import json
import os
import shutil
from pathlib import Path

from cli_helpers import lines, refed, run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.store.lock import DirLock
from refed_dspy.store.ownership import MARKER
from refed_dspy.synthesis.api import synthesize

SMALL = {"seeds.limit": 2, "synthesis.instructions_per_feature": 1}


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes (and every directory, as None)."""
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


def _small_run(srv, path: Path, size: int = 4) -> Path:
    synthesize(load_config(None, run_overrides(srv, path, size, **SMALL)))
    return path


def _refused(cmd: tuple[str, ...], says: str, **kw) -> None:
    p = refed(*cmd, **kw)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 2 and says in err, (cmd, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (cmd, err)


def test_every_writing_command_refuses_a_users_folder_and_leaves_it_byte_identical(server_factory, tmp_path):
    srv = server_factory()
    run = _small_run(srv, tmp_path / "run")
    user = tmp_path / "mine"
    (user / "cache").mkdir(parents=True)
    (user / "batches").mkdir()
    (user / "cache" / "x").write_text("my cache")
    (user / "batches" / "y").write_text("my batches")
    (user / "config.toml").write_text("[tool.mine]\nline-length = 100\n")
    (user / "summary.json").write_text('{"my": "summary"}')
    (user / "report.html").write_text("<p>my report</p>")
    (user / "README.md").write_text("# my notes\n")
    shutil.copyfile(run / "samples.jsonl", user / "samples.jsonl")  # samples copied here to look at
    before = _tree(user)
    theirs = "is not empty and not refed's"
    run_config = ("--config", str(run / "config.toml"))
    judge = {"judge.api_base": f"'{srv.api_base}'", "judge.api_key_env": "''"}
    out_is_user = ("--set", f"optimize.out='{user}'")
    for cmd, says in (
        (("synthesize", *sets(run_overrides(srv, user, 4, **SMALL))), theirs),
        (("synthesize", "--fresh", *sets(run_overrides(srv, user, 4, **SMALL))), theirs),
        (("estimate", *sets(run_overrides(srv, user, 4, **SMALL))), theirs),
        (("compare", "--methods", "no_feedback", *sets(run_overrides(srv, user, 4, **SMALL))), theirs),
        (("optimize", *sets(run_overrides(srv, tmp_path / "o", 4, **SMALL, **judge)), *out_is_user), theirs),
        (("export", str(run), "--format", "messages", "--out", str(user), "--overwrite"), theirs),
        (("filter", str(run), "--out", str(user), "--overwrite", "--apply", "dedup"), theirs),
        (("report", str(user), *run_config), "is not a refed run directory"),
        (("judge", "run", str(user), *run_config), "is not a refed run directory"),
        (("repair", str(user)), "is not a refed run directory"),
    ):
        _refused(cmd, says)
        assert _tree(user) == before, cmd
    assert not (tmp_path / "o").exists()
    # a refed directory of another kind is no better
    code, _, err = run_refed("export", str(run), "--format", "messages", "--out", str(tmp_path / "exp"))
    assert code == 0, err
    _refused(
        ("synthesize", *sets(run_overrides(srv, tmp_path / "exp", 4, **SMALL))),
        "is a refed export directory, not a refed run directory",
    )


def test_an_empty_path_the_root_and_home_are_refused(server_factory, tmp_path):
    srv = server_factory()
    run = _small_run(srv, tmp_path / "run")
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {"HOME": str(home)}
    for given, says in (("", "is empty, which would be the current directory"), ("/", "is a filesystem root")):
        _refused(("synthesize", *sets(run_overrides(srv, given, 4, **SMALL))), says, env_extra=env, cwd=str(cwd))
        _refused(("estimate", "--set", f"run.dir='{given}'"), says, env_extra=env, cwd=str(cwd))
        _refused(("export", str(run), "-f", "messages", "--out", given), says, env_extra=env, cwd=str(cwd))
    says = "is your home directory"
    _refused(("synthesize", *sets(run_overrides(srv, home, 4, **SMALL))), says, env_extra=env, cwd=str(cwd))
    _refused(("export", str(run), "-f", "messages", "--out", str(home)), says, env_extra=env, cwd=str(cwd))
    # the home as a quoted ~ (in the config, or an argument the shell left as it is): a folder named ~ was made here
    _refused(("synthesize", *sets(run_overrides(srv, "~", 4, **SMALL))), says, env_extra=env, cwd=str(cwd))
    _refused(("estimate", "--set", "run.dir='~/'"), says, env_extra=env, cwd=str(cwd))
    _refused(("export", str(run), "-f", "messages", "--out", "~"), says, env_extra=env, cwd=str(cwd))
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []


def test_fresh_removes_the_runs_files_and_keeps_a_users_file_inside(server_factory, tmp_path):
    srv = server_factory()
    run = _small_run(srv, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    (run / "data").mkdir()
    (run / "data" / "keep.csv").write_text("a,b\n")
    with (run / "journal.jsonl").open("a") as fh:
        fh.write('{"kind": "planted"}\n')
    summary = synthesize(load_config(None, run_overrides(srv, run, 4, **SMALL)), on_mismatch="fresh")
    assert summary["samples"] == 4 and len(lines(run / "samples.jsonl")) == 4
    assert not any(row.get("kind") == "planted" for row in lines(run / "journal.jsonl"))  # the old journal went
    assert (run / "notes.txt").read_text() == "mine" and (run / "data" / "keep.csv").read_text() == "a,b\n"
    assert (run / MARKER).read_text() == "run\n"


def test_a_run_dir_without_its_marker_is_not_refeds(server_factory, tmp_path):
    """A run dir is refed's by its `.refed-dir` alone: the same files without it are a folder of the user's, refused in
    one line before anything is written (there is no earlier release whose unmarked dirs would need adopting)."""
    srv = server_factory()
    run = _small_run(srv, tmp_path / "run")
    (run / MARKER).unlink()
    before = sorted(p.name for p in run.iterdir())
    served = len(read_log(srv.cfg.log_path))
    code, out, err = run_refed("synthesize", *sets(run_overrides(srv, run, 6, **SMALL)))
    assert code == 2 and "not empty and not refed's" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in run.iterdir()) == before and len(read_log(srv.cfg.log_path)) == served


def test_report_refuses_a_run_another_process_holds(server_factory, tmp_path):
    srv = server_factory()
    run = _small_run(srv, tmp_path / "run")
    with DirLock(run, "refed synthesize", "run directory"):
        _refused(("report", str(run)), f"is in use by PID {os.getpid()} (refed synthesize")
    assert not (run / "report.html").exists() and not (run / "report.json").exists()
    code, _, err = run_refed("report", str(run))
    assert code == 0 and json.loads((run / "report.json").read_text())["counts"]["samples"] == 4, err
