"""The JSONL store: a torn last line is dropped and repaired; a failed write is one clear error."""

import json

import pytest

from refed_dspy.errors import RunDirError
from refed_dspy.store.jsonl import JsonlWriter, read_jsonl


def test_torn_line_dropped_and_repaired(tmp_path):
    p = tmp_path / "x.jsonl"
    w = JsonlWriter(p)
    w.append({"a": 1})
    w.append({"a": 2})
    w.close()
    with open(p, "ab") as fh:
        fh.write(b'{"a": 3, "tor')
    assert [r["a"] for r in read_jsonl(p)] == [1, 2]
    list(read_jsonl(p, repair=True))
    assert p.read_bytes().endswith(b'{"a": 2}\n')
    w = JsonlWriter(p)
    w.append({"a": 4})
    w.close()
    assert [json.loads(line)["a"] for line in p.read_text().splitlines()] == [1, 2, 4]


def test_write_failure_is_a_clear_run_error(tmp_path, monkeypatch):
    import os

    w = JsonlWriter(tmp_path / "y.jsonl")

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(RunDirError, match="No space left on device"):
        w.append({"a": 1})
