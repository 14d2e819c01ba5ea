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
