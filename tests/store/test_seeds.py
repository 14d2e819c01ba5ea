import csv
import json
import re

import pytest

from refed_dspy.errors import SeedError
from refed_dspy.store.seeds import read_references

PAIRS = [("What is 2+2?", "It is 4."), ("Name a prime.", "Seven is prime.")]


def shaped(shape):
    rows = []
    for q, a in PAIRS:
        if shape == "lima":
            rows.append({"conversations": [q, a], "source": "x"})
        elif shape == "sharegpt":
            rows.append(
                {
                    "conversations": [
                        {"from": "system", "value": "be nice"},
                        {"from": "human", "value": q},
                        {"from": "gpt", "value": a},
                    ]
                }
            )
        elif shape == "openai":
            rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        elif shape == "alpaca":
            rows.append({"instruction": q, "input": "", "output": a})
        else:
            rows.append({"instruction": q, "response": a})
    return rows


def bad_rows(shape):
    """A multi-turn row, an empty row and a duplicate, in the given shape."""
    dup = shaped(shape)[0]
    if shape == "lima":
        return [{"conversations": ["a", "b", "c", "d"]}, {"conversations": ["", "x"]}, dup]
    if shape == "sharegpt":
        return [
            {
                "conversations": [
                    {"from": "human", "value": "a"},
                    {"from": "gpt", "value": "b"},
                    {"from": "human", "value": "c"},
                    {"from": "gpt", "value": "d"},
                ]
            },
            {"conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": "x"}]},
            dup,
        ]
    if shape == "openai":
        return [
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                    {"role": "assistant", "content": "d"},
                ]
            },
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
            dup,
        ]
    if shape == "alpaca":
        return [{"instruction": "", "input": "", "output": "x"}, dup]
    return [{"instruction": "q", "response": "  "}, dup]


def write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        keys = list(rows[0])
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return path


@pytest.mark.parametrize("shape", ["lima", "sharegpt", "openai", "alpaca", "plain"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_every_shape_from_every_file_type(tmp_path, shape, suffix):
    path = write(tmp_path / f"seeds{suffix}", shaped(shape) + bad_rows(shape))
    refs, report = read_references(str(path))
    assert [(r.instruction, r.response) for r in refs] == PAIRS
    assert report.shape == shape and report.kept == 2
    assert report.skipped["duplicate"] == 1
    assert sum(report.skipped.values()) == len(bad_rows(shape))
    assert refs[0].id == read_references(str(path))[0][0].id  # stable content-hash id
    assert "loaded 2 references" in report.line() and "skipped" in report.line()


def test_multi_turn_and_empty_are_counted(tmp_path):
    path = write(tmp_path / "s.jsonl", shaped("lima") + bad_rows("lima"))
    _, report = read_references(str(path))
    assert report.skipped == {"multi-turn": 1, "empty": 1, "duplicate": 1}


def test_saved_dataset_directory_and_split(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict(
        {"train": Dataset.from_list(shaped("openai")), "test": Dataset.from_list(shaped("plain")[:1])}
    ).save_to_disk(tmp_path / "ds")
    refs, report = read_references(str(tmp_path / "ds"))
    assert len(refs) == 2 and report.shape == "openai"
    refs, _ = read_references(str(tmp_path / "ds"), split="test")
    assert len(refs) == 1
    with pytest.raises(SeedError, match="no split 'dev'"):
        read_references(str(tmp_path / "ds"), split="dev")


def test_hub_path_goes_through_load_dataset(monkeypatch):
    import datasets

    seen = {}

    def fake_load_dataset(name, split):
        seen["args"] = (name, split)
        return datasets.Dataset.from_list(shaped("lima"))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    refs, report = read_references("GAIR/lima")
    assert seen["args"] == ("GAIR/lima", "train") and len(refs) == 2 and report.source == "GAIR/lima"


def test_hub_failure_is_one_clear_line(monkeypatch):
    import datasets

    def boom(name, split):
        raise ConnectionError("Couldn't reach 'GAIR/lima' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(SeedError) as err:
        read_references("GAIR/lima")
    assert "cannot load 'GAIR/lima' from the Hugging Face hub" in str(err.value) and "\n" not in str(err.value)


def test_no_shape_names_columns_and_shapes(tmp_path):
    path = write(tmp_path / "s.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(SeedError) as err:
        read_references(str(path))
    msg = str(err.value)
    assert "['answer', 'question']" in msg and "lima" in msg and "alpaca: instruction, input, output" in msg


def test_bad_inputs(tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes('{"instruction": "caf\xe9", "response": "x"}\n'.encode("latin-1"))
    with pytest.raises(SeedError, match="not UTF-8"):
        read_references(str(tmp_path / "latin1.jsonl"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SeedError, match="no rows"):
        read_references(str(tmp_path / "empty.jsonl"))
    (tmp_path / "broken.jsonl").write_text('{"instruction": "a", "response": "b"}\n{"instruction": \n')
    with pytest.raises(SeedError, match=r"broken.jsonl:2: not valid JSON"):
        read_references(str(tmp_path / "broken.jsonl"))
    # a line break inside a string: Python's message ends in "at", and the line said "(Invalid control character at)"
    (tmp_path / "cut.jsonl").write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c", "response": "d\n')
    with pytest.raises(SeedError, match=r"cut.jsonl:2: not valid JSON \(Invalid control character at column 36\)$"):
        read_references(str(tmp_path / "cut.jsonl"))
    with pytest.raises(SeedError, match="seed source not found"):
        read_references(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(SeedError, match="unsupported file type"):
        read_references(str(tmp_path / "x.txt"))
    huge = [{"instruction": "q", "response": "x" * 300_000}, {"instruction": "ok", "response": "fine"}]
    refs, report = read_references(str(write(tmp_path / "huge.jsonl", huge)))
    assert len(refs) == 1 and report.skipped["oversized"] == 1


def test_limit_and_explicit_format(tmp_path):
    path = write(tmp_path / "s.jsonl", shaped("plain"))
    assert len(read_references(str(path), limit=1)[0]) == 1
    with pytest.raises(
        SeedError, match=r"rows do not have the 'lima' shape .*columns found: \['instruction', 'response'\]"
    ):
        read_references(str(path), format="lima")
    (tmp_path / "blank.jsonl").write_text('{"instruction": " ", "response": "x"}\n')
    with pytest.raises(SeedError, match="no usable reference pairs"):
        read_references(str(tmp_path / "blank.jsonl"))


def test_embedded_set():
    refs, report = read_references(None)
    assert report.source == "embedded" and 38 <= len(refs) <= 45 and not report.skipped
    words = [len(re.findall(r"\S+", r.response)) for r in refs]
    assert min(words) >= 150 and max(words) <= 500
    assert len({r.id for r in refs}) == len(refs)


def _line(pair: tuple[str, str]) -> bytes:
    return json.dumps({"instruction": pair[0], "response": pair[1]}).encode() + b"\n"


def test_a_line_over_the_limit_is_skipped_without_being_held_and_named(tmp_path, monkeypatch):
    """Issue 66: a seed file with a 1 GiB line took 3.2 GB of memory to skip it (the file was read whole). A line is
    read up to MAX_LINE_BYTES and the rest of a longer one passed over in chunks: with the limit at 1 MiB, a 40 MB line
    costs a few MiB at most, and the seeds line names it; the rows around it are read."""
    import tracemalloc

    import refed_dspy.store.seeds as seeds

    monkeypatch.setattr(seeds, "MAX_LINE_BYTES", 1 << 20)
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as fh:
        fh.write(_line(PAIRS[0]))
        fh.write(b'{"instruction": "q", "response": "' + b"x" * (40 << 20) + b'"}\n')
        fh.write(_line(PAIRS[1]))
    tracemalloc.start()
    try:
        refs, report = read_references(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # far below the 40 MB line
    assert [(r.instruction, r.response) for r in refs] == PAIRS
    assert report.rows == 3 and report.line().endswith("skipped: 1 longer than 1 MiB (line 2)")


def test_the_line_limit_counts_bytes_before_the_line_break(tmp_path, monkeypatch):
    """A line of exactly the limit is read, one byte more is skipped (at the end of the file, without its line break,
    too); a byte-order mark is dropped; a .json file of JSON lines is told apart across its read chunks."""
    import refed_dspy.store.seeds as seeds

    def padded(pair: tuple[str, str], size: int) -> bytes:  # JSON takes the blanks after the object
        return _line(pair)[:-1].ljust(size)

    monkeypatch.setattr(seeds, "MAX_LINE_BYTES", 80)
    monkeypatch.setattr(seeds, "READ_CHUNK", 4)
    path = tmp_path / "s.jsonl"
    path.write_bytes(
        seeds.BOM
        + _line(PAIRS[0])
        + padded(PAIRS[1], 80)
        + b"\n"
        + padded(("Third?", "Yes."), 81)
        + b"\n"
        + padded(("Fourth?", "No."), 81)
    )
    refs, report = read_references(str(path))
    assert [(r.instruction, r.response) for r in refs] == PAIRS
    assert report.line().endswith("skipped: 2 longer than 80 bytes (lines 3, 4)")
    (tmp_path / "lines.json").write_bytes(b"  " + _line(PAIRS[0]) + _line(PAIRS[1]))
    assert len(read_references(str(tmp_path / "lines.json"))[0]) == 2
    rows = [{"instruction": q, "response": a} for q, a in PAIRS]
    (tmp_path / "list.json").write_text(json.dumps(rows, indent=2))  # a JSON document, over lines and chunks
    assert len(read_references(str(tmp_path / "list.json"))[0]) == 2
