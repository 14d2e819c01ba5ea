"""Only our own directories, as a user meets them: a command pointed at a folder refed did not make, at the current
directory by an empty path, at the root or at the home directory (`~` included) is refused in one line (exit 2) before it writes a
byte; `--fresh` removes only the run's files; a run dir of an earlier version still resumes; `refed report` does not
write into a run another process holds."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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


DISK = "/tmp/refed-2mb"  # where the test's own mount namespace mounts its 2 MB filesystem (private to it)


def _on_a_2mb_disk(script: str) -> subprocess.CompletedProcess:
    """`script` (sh) run with a fresh 2 MB tmpfs mounted at DISK, in a mount namespace of its own (as root, or in a user
    namespace where the kernel allows one); skips the test where neither is possible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux) to mount a 2 MB filesystem")
    mount = f"mkdir -p {DISK} && mount -t tmpfs -o size=2m tmpfs {DISK} || exit 97\n"
    args = [unshare, "--mount", *(() if os.geteuid() == 0 else ("--user", "--map-root-user")), "sh", "-c"]
    p = subprocess.run([*args, mount + script], capture_output=True, text=True, timeout=300)
    if p.returncode == 97 or p.stderr.startswith("unshare:"):
        pytest.skip(f"cannot mount a 2 MB filesystem here: {p.stderr.strip()[:200]}")
    return p


@pytest.mark.parametrize("filled", [False, True])
def test_a_run_dir_on_a_full_disk_is_one_line_and_exit_2(server_factory, filled):
    """Issue 66: a run dir on a 2 MB filesystem gave a 59-line traceback and exit 1 (from the cache's first write; on a
    disk with no byte free, from the marker's). Now one line that says what to do, exit 2, no request sent, and a
    user's file that fills the disk as it was."""
    srv = server_factory()
    refed = [sys.executable, "-m", "refed_dspy.cli", "synthesize", "--quiet"]
    refed += sets(run_overrides(srv, f"{DISK}/run", 4, **SMALL))
    fill = f"head -c 3000000 /dev/zero > {DISK}/mine 2>/dev/null\n" if filled else f"echo mine > {DISK}/mine\n"
    script = f"{fill}before=$(cksum < {DISK}/mine)\n{shlex.join(refed)}\ncode=$?\necho $before; cksum < {DISK}/mine\nexit $code"
    p = _on_a_2mb_disk(script)
    errors = [line for line in p.stderr.splitlines() if line.startswith("refed: error:")]
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(errors) == 1 and "free some space there, or choose a" in errors[0], p.stderr
    assert p.stderr.strip().splitlines()[-1] == errors[0]  # the last line: nothing follows it
    before, after = p.stdout.strip().splitlines()[-2:]
    assert before == after  # the user's file, untouched
    assert not read_log(srv.cfg.log_path)  # stopped before a request


def test_a_full_disk_met_past_our_writers_is_still_one_line(monkeypatch, capsys):
    """ENOSPC from a write no writer of refed's turned into its own error (another library's file): the CLI says it in
    one line, exit 2; any other OSError is still the traceback of an error nobody foresaw (exit 1)."""
    import errno

    from refed_dspy.cli import main, settings

    def fails(err: OSError):
        def command(args):
            raise err

        return command

    monkeypatch.setattr(settings, "_cmd_seeds", fails(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/d/out.bin")))
    assert main(["seeds"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "refed: error: cannot write to /d/out.bin: No space left on device (its disk or quota is full); free some "
        "space there, or choose a directory on another disk"
    ]
    monkeypatch.setattr(settings, "_cmd_seeds", fails(OSError(errno.EIO, os.strerror(errno.EIO))))
    assert main(["seeds"]) == 1 and "Traceback" in capsys.readouterr().err
