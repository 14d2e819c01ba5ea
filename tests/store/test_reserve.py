"""A full disk: the run dir's reserve gives room for the last lines, each written whole and once."""

from __future__ import annotations

import errno
import json
import os

import pytest

import refed_dspy.store.jsonl as jsonl
from refed_dspy.errors import RunDirError
from refed_dspy.store.jsonl import RESERVE_BYTES, RESERVE_NAME, JsonlWriter, set_aside


def full_until_reserve_freed(monkeypatch, run, short_first: bool):
    """os.write as on a full disk: the first write lands half its bytes (a short write, as Linux gives when the
    disk fills mid-line); then ENOSPC while the reserve exists."""
    real = os.write
    state = {"short": short_first}

    def write(fd, data):
        if (run / RESERVE_NAME).exists():
            if state["short"]:
                state["short"] = False
                return real(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(jsonl.os, "write", write)


@pytest.mark.parametrize("short_first", [False, True])
def test_the_line_that_fills_the_disk_is_written_whole_and_once(tmp_path, monkeypatch, short_first):
    assert set_aside(tmp_path) and (tmp_path / RESERVE_NAME).stat().st_size == RESERVE_BYTES
    w = JsonlWriter(tmp_path / "samples.jsonl")
    w.append({"n": 1})
    full_until_reserve_freed(monkeypatch, tmp_path, short_first)
    w.append({"n": 2, "text": "x" * 100})
    assert w.full and "No space left on device" in w.full  # the run is told to stop
    assert not (tmp_path / RESERVE_NAME).exists()
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["n"] for r in rows] == [1, 2]


def test_without_a_reserve_a_full_disk_leaves_no_half_line(tmp_path, monkeypatch):
    w = JsonlWriter(tmp_path / "samples.jsonl")
    w.append({"n": 1})
    real = os.write

    def write(fd, data):
        real(fd, bytes(data[:5]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(jsonl.os, "write", write)
    with pytest.raises(RunDirError, match="No space left"):
        w.append({"n": 2})
    assert (tmp_path / "samples.jsonl").read_text() == '{"n": 1}\n'


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullFile:
    """A file opened on a full disk: it is created, and every write fails with ENOSPC."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    write = flush = staticmethod(_no_space)

    def fileno(self):
        return self.fh.fileno()

    @classmethod
    def open(cls, file, mode="r", **kw):
        """`open` on a full disk (a path, or a descriptor as os.fdopen takes it)."""
        return cls(open(file, mode, **kw))  # noqa: SIM115 - closed by __exit__


def test_a_disk_without_room_for_the_reserve_is_refused_before_the_run_writes(tmp_path, monkeypatch):
    """Issue 66: a run dir on a disk full from the start gave a 59-line traceback from the cache's first write. The
    reserve is set aside before the run writes its own files; a disk without room for it is one RunDirError (exit 2)
    that says what to do, and the run dir holds nothing of the run: no fingerprint, no config, no reserve, no probe."""
    from refed_dspy.store.rundir import RunDir

    run = tmp_path / "run"
    monkeypatch.setattr(jsonl, "open", _FullFile.open, raising=False)
    with pytest.raises(RunDirError, match=r"less than 1 MiB free.*free some space there, or choose a run.dir"):
        RunDir(run).prepare({"a": 1}, "[run]\n")
    assert sorted(p.name for p in run.iterdir()) == []
    monkeypatch.undo()
    assert RunDir(run).prepare({"a": 1}, "[run]\n") is False  # room made: the same run dir starts
    assert (run / RESERVE_NAME).stat().st_size == RESERVE_BYTES and (run / "fingerprint.json").exists()


def test_a_full_disk_at_the_marker_the_lock_or_the_cache_is_one_line_and_lets_go(tmp_path, monkeypatch):
    """The first writes of a fresh run dir (its marker, its lock, its cache) on a full disk: one RunDirError each that
    names the directory and says what to do; the lock is let go (a later writer takes it) and the empty marker is
    taken as none."""
    import sqlite3

    from refed_dspy.store import cache, ownership
    from refed_dspy.store.lock import DirLock

    said = r"No space left on device \(its disk or quota is full\); free some space there"
    monkeypatch.setattr(ownership.os, "fdopen", _FullFile.open)
    with pytest.raises(RunDirError, match=f"cannot write to run directory {tmp_path / 'run'}: {said}"):
        ownership.claim(tmp_path / "run", "run")
    monkeypatch.undo()
    assert ownership.claim(tmp_path / "run", "run") and ownership.kind_of(tmp_path / "run") == "run"
    monkeypatch.setattr(os, "write", _no_space)
    with pytest.raises(RunDirError, match=f"cannot write to directory {tmp_path}: {said}"):
        DirLock(tmp_path, "refed synthesize").acquire()
    monkeypatch.undo()
    DirLock(tmp_path, "refed synthesize").acquire().release()  # the failed one let the lock go
    full = sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(cache.dspy, "configure_cache", lambda **kw: (_ for _ in ()).throw(full))
    with pytest.raises(RunDirError, match=f"cannot write to the cache {tmp_path / 'c'}: {said}"):
        cache.use_cache_dir(tmp_path / "c")


def test_a_file_written_whole_is_left_as_it_was_when_the_disk_is_full(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text('{"old": true}\n')
    monkeypatch.setattr(jsonl, "open", _FullFile.open, raising=False)
    with pytest.raises(OSError, match="No space left"):
        jsonl.write_json_atomic(folder / "summary.json", {"new": True})
    assert (folder / "summary.json").read_text() == '{"old": true}\n'
    assert [p.name for p in folder.iterdir()] == ["summary.json"]  # no half-written copy beside it
