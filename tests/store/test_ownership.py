"""Only our own directories (store/ownership.py): what refed may take, the marker, the directories of earlier
versions, the places never taken, and a lock that leaves no file behind."""

import fcntl
import json
from pathlib import Path

import pytest

from refed_dspy.errors import RunDirError
from refed_dspy.store.lock import LOCK_NAME, DirLock, holder
from refed_dspy.store.ownership import MARKER, check, claim, kind_of, owned


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_new_or_empty_directory_is_taken_and_marked_first(tmp_path):
    new = tmp_path / "a" / "new"
    claim(new, "run")
    assert (new / MARKER).read_text() == "run\n" and sorted(p.name for p in new.iterdir()) == [MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / LOCK_NAME).write_text("{}")  # a lock file left by an earlier refed still counts as empty
    claim(empty, "export")
    assert kind_of(empty) == "export"
    claim(new, "run")  # again: its own kind
    with pytest.raises(RunDirError, match="is a refed run directory, not a refed export directory"):
        claim(new, "export", flag="--out")


def test_a_users_folder_is_refused_before_any_write(tmp_path):
    user = tmp_path / "mine"
    (user / "cache").mkdir(parents=True)
    (user / "cache" / "x").write_text("mine")
    (user / "config.toml").write_text('[tool.black]\nline-length = 100\n[run]\ndir = "x"\n')
    (user / "summary.json").write_text('{"mine": true}')
    (user / "fingerprint.json").write_text('{"mine": true}')  # a refed name, not refed's content
    before = _tree(user)
    for kind in ("run", "filter", "export", "compare", "optimize"):
        with pytest.raises(RunDirError, match=r"is not empty and not refed's \(cache, config.toml, fingerprint"):
            claim(user, kind, flag="run.dir")
    with pytest.raises(RunDirError, match="is not a refed run directory"):
        claim(user, "run", existing=True)
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        claim(user / "summary.json", "run")
    assert _tree(user) == before and not (user / MARKER).exists()


def test_empty_path_root_and_home_are_never_taken(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for given, msg in (
        ("", "is empty, which would be the current directory"),
        ("/", "is a filesystem root"),
        (str(home), "is your home directory"),
        (str(home / "." / "x" / ".."), "is your home directory"),
    ):
        for kind in ("run", "export"):
            with pytest.raises(RunDirError, match=msg):
                claim(given, kind, flag="run.dir")
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []
    claim(home / "runs" / "x", "run")  # below home is fine
    assert kind_of(home / "runs" / "x") == "run"


def _old_run(path: Path) -> None:
    """What an earlier refed left in a run dir: its config.toml beside its fingerprint.json, no marker."""
    path.mkdir(parents=True)
    (path / "config.toml").write_text(f'[teacher]\nmodel = "openai/gpt-4o-mini"\n[run]\ndir = "{path}"\n')
    (path / "fingerprint.json").write_text(json.dumps({"teacher": {"model": "openai/gpt-4o-mini"}}))
    (path / "samples.jsonl").write_text("")


def test_a_directory_is_refeds_by_its_marker_alone(tmp_path):
    """What only refed writes (a config.toml beside a fingerprint.json, a dataset card) does not make a directory
    refed's: without its marker it is the user's, and refused."""
    _old_run(tmp_path / "run")
    assert kind_of(tmp_path / "run") is None
    with pytest.raises(RunDirError, match="not empty and not refed's"):
        check(tmp_path / "run", "run")


def test_check_reads_only(tmp_path):
    target = tmp_path / "new"
    assert check(target, "run") == target.resolve()
    assert not target.exists()


def test_an_export_lock_leaves_no_file_and_the_next_holder_locks_the_file_there_now(tmp_path, monkeypatch):
    out = tmp_path / "exp"
    with owned(out, "export", "refed export", keep_lock=False):
        assert holder(out)["command"] == "refed export"
    assert not (out / LOCK_NAME).exists() and holder(out) is None and kind_of(out) == "export"
    # the next holder opened the lock file just before the first removed it, and locks it just after: the file it
    # locked is gone, so it must lock the one the path names now (else a third would get a lock of its own)
    first = DirLock(out, "first", keep_file=False).acquire()
    real_flock = fcntl.flock

    def first_lets_go_in_between(fd, op):
        if first._fd is not None:
            first.release()
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", first_lets_go_in_between)
    second = DirLock(out, "second").acquire()
    monkeypatch.undo()
    try:
        assert (out / LOCK_NAME).exists() and holder(out)["command"] == "second"
        with pytest.raises(RunDirError, match="is in use by PID"):
            DirLock(out, "third").acquire()
    finally:
        second.release()


def test_an_empty_marker_left_by_a_kill_does_not_lock_the_directory_out(tmp_path):
    """A kill (or a full disk) between the marker's creation and its write leaves it empty: the directory is judged
    by what it holds, and the next claim writes the marker."""
    from refed_dspy.store.ownership import MARKER, claim, kind_of

    d = tmp_path / "run"
    d.mkdir()
    (d / MARKER).write_text("")
    assert kind_of(d) is None
    claim(d, "run", flag="run.dir")
    assert kind_of(d) == "run"
