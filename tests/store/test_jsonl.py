"""The JSONL store: a torn last line is dropped and repaired; a failed write is one clear error; every JSON file it
writes is valid JSON, a figure that is not a finite number included."""

import json

import pytest

from refed_dspy.errors import RunDirError
from refed_dspy.store.jsonl import NON_FINITE, JsonlWriter, json_text, read_jsonl, write_json_atomic, write_jsonl_atomic


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


def strict(text: str):
    """json.loads as a strict reader (JavaScript's JSON.parse, jq, most languages' parsers) reads: NaN, Infinity and
    -Infinity are not JSON."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_summary_with_a_figure_that_is_not_finite_is_written_as_valid_json(tmp_path, caplog):
    # what an infinite price made of a run's summary: the cost NaN (inf x 0 cached tokens), its share inf
    summary = {
        "status": "budget",
        "samples": 3,
        "usage": {"calls": 42, "cost_usd": float("nan"), "by_role": {"teacher": {"cost_usd": float("inf")}}},
        "costs": [0.5, float("-inf")],
        "per_sample_usd": 0.25,
    }
    path = tmp_path / "summary.json"
    write_json_atomic(path, summary)
    data = strict(path.read_text())
    # a figure that is not a number is unknown (null), as a cost without a price is; the file says what it was
    assert data["usage"]["cost_usd"] is None and data["usage"]["by_role"]["teacher"]["cost_usd"] is None
    assert data["costs"] == [0.5, None] and data["per_sample_usd"] == 0.25 and data["usage"]["calls"] == 42
    assert data[NON_FINITE] == {
        "usage.cost_usd": "NaN",
        "usage.by_role.teacher.cost_usd": "Infinity",
        "costs.1": "-Infinity",
    }
    assert f"{path}: figures that are not finite numbers written as null: usage.cost_usd was NaN" in caplog.text
    # a summary without such a figure is written as it always was
    write_json_atomic(path, {"cost_usd": 0.1})
    assert strict(path.read_text()) == {"cost_usd": 0.1}


def test_every_json_writer_writes_what_a_strict_reader_parses(tmp_path):
    rows = [{"id": "a", "usage": {"cost_usd": float("nan")}}, {"id": "b", "score": float("inf")}]
    w = JsonlWriter(tmp_path / "records.jsonl")
    for row in rows:
        w.append(row)
    w.close()
    write_jsonl_atomic(tmp_path / "whole.jsonl", rows)
    for name in ("records.jsonl", "whole.jsonl"):
        parsed = [strict(line) for line in (tmp_path / name).read_text().splitlines()]
        assert parsed == [{"id": "a", "usage": {"cost_usd": None}}, {"id": "b", "score": None}]
    assert strict(json_text({"x": float("nan")})) == {"x": None}
    with pytest.raises(ValueError, match="Circular"):  # another fault is not hidden
        loop: dict = {}
        loop["self"] = loop
        json_text(loop)


def test_a_file_is_read_a_line_at_a_time(tmp_path):
    """read_jsonl holds one line at a time, not the file's bytes and all its records (50,000 samples took 367 MiB in
    `refed filter`, 283 MiB read this way): the first record comes before a damaged line further on is reached, and
    a repair truncates the torn last line once every record was read."""
    from refed_dspy.store.jsonl import CorruptRecordError

    path = tmp_path / "samples.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\nnot json\n{"a": 3}\n')
    records = read_jsonl(path)
    assert next(records) == {"a": 1} and next(records) == {"a": 2}
    with pytest.raises(CorruptRecordError, match=r"samples.jsonl:3 is not a JSON record"):
        next(records)
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3')
    assert list(read_jsonl(path, repair=True)) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n\n{"a": 2}\n'
