"""Deeply nested and junk seed rows (issue 27, item 5), through the CLI as a user meets them: each is one line,
skipped and counted, or refused (exit 2), never a traceback."""

from __future__ import annotations

import json
import math

import pytest
from cli_helpers import run_refed

DEEP = "[" * 100_000
GOOD = {"instruction": "Name a prime.", "response": "Seven is prime."}


def seeds_cli(path) -> tuple[int, str, str]:
    """`refed seeds` on `path`: (exit code, stdout, stderr)."""
    return run_refed("seeds", "--show", "0", "--set", f"seeds.source='{path}'", timeout=120)


def refused(code: int, out: str, err: str, says: str) -> None:
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err, err


def counted(code: int, out: str, err: str, says: str) -> None:
    assert code == 0 and err == "", (code, err)
    assert len(out.strip().splitlines()) == 1 and says in out, out


def test_a_deeply_nested_json_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    refused(*seeds_cli(path), "nested too deeply")
    path.write_text(json.dumps([GOOD])[:-1] + ", " + DEEP)  # one good row, then the nesting
    refused(*seeds_cli(path), "nested too deeply")


def test_a_deeply_nested_jsonl_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + DEEP + "\n" + '{"a": ' * 50_000 + "\n")
    counted(*seeds_cli(path), "loaded 1 reference from")
    assert "skipped: 2 nested too deeply" in seeds_cli(path)[1]
    path.write_text(DEEP + "\n")
    refused(*seeds_cli(path), "no usable reference pairs")


def test_rows_whose_text_is_not_text_are_skipped_and_counted(tmp_path):
    path = tmp_path / "junk.jsonl"
    junk = [
        {"instruction": 42, "response": "forty-two"},
        {"instruction": "Say a list.", "response": ["a", "b"]},
        {"instruction": {"text": "q"}, "response": "r"},
        {"instruction": True, "response": "yes"},
        {"instruction": math.nan, "response": "nan"},  # json.dumps writes NaN, which json.loads reads back
        {"instruction": "Anything?", "response": None},
    ]
    rows = [json.dumps(GOOD), *(json.dumps(r) for r in junk), "7", "[1, 2]", '"a string row"', "null"]
    path.write_text("\n".join(rows) + "\n")
    code, out, err = seeds_cli(path)
    counted(code, out, err, "loaded 1 reference from")
    assert "11 rows); skipped: 1 empty, 4 not an object, 5 not text" in out, out


def test_only_junk_rows_are_refused_in_one_line(tmp_path):
    path = tmp_path / "junk.json"
    path.write_text(json.dumps([{"instruction": 1, "response": 2}, {"instruction": [], "response": {}}, 3]))
    refused(*seeds_cli(path), "skipped: 1 not an object, 2 not text")


@pytest.mark.parametrize(
    "column, values",
    [
        ("instruction", [1, 2]),
        ("instruction", [1.5, math.nan]),
        ("response", [["a"], ["b"]]),
        ("response", [True, False]),
    ],
)
def test_wrong_typed_parquet_columns_are_refused_in_one_line(tmp_path, column, values):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{**GOOD, column: v} for v in values]), path)
    refused(*seeds_cli(path), "skipped: 2 not text")


def test_a_parquet_alpaca_input_column_of_nan_is_no_input(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "alpaca.parquet"
    rows = [
        {"instruction": "Name a prime.", "input": math.nan, "output": "Seven."},
        {"instruction": "Add one.", "input": 1.0, "output": "x"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    code, out, err = seeds_cli(path)
    counted(code, out, err, "loaded 1 reference from")
    assert "skipped: 1 not text" in out


def test_csv_list_cells_of_numbers_are_skipped_and_bracketed_text_stays_text(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        'conversations\n"[""Name a prime."", ""Seven is prime.""]"\n"[1, 2]"\n"' + "[" * 5_000 + '"\n',
        encoding="utf-8",
    )
    code, out, err = seeds_cli(path)
    counted(code, out, err, "loaded 1 reference from")
    assert "skipped: 1 malformed, 1 not text" in out, out
    plain = tmp_path / "plain.csv"
    plain.write_text('instruction,response\n"[1, 2, 3]","A list of three numbers."\n', encoding="utf-8")
    counted(*seeds_cli(plain), "loaded 1 reference from")


def test_a_line_longer_than_the_limit_is_skipped_and_named_in_the_seeds_line(tmp_path):
    """A JSONL line longer than MAX_LINE_BYTES (16 MiB) is passed over unread; `refed seeds` says which and why."""
    from refed_dspy.store.seeds import MAX_LINE_BYTES

    path = tmp_path / "long.jsonl"
    with open(path, "w") as fh:
        fh.write(json.dumps(GOOD) + "\n")
        fh.write('{"instruction": "q", "response": "' + "x" * MAX_LINE_BYTES + '"}\n')
    code, out, err = seeds_cli(path)
    counted(code, out, err, "loaded 1 reference from")
    assert out.strip().endswith("(plain shape, 2 rows); skipped: 1 longer than 16 MiB (line 2)"), out


def test_a_row_with_other_column_names_is_counted_as_such_not_as_empty(tmp_path):
    """A prompt/completion row in a file of instruction/response rows was counted 'empty', which it is not."""
    path = tmp_path / "mixed.jsonl"
    rows = [GOOD, {"prompt": "What is 2+2?", "completion": "4"}, {"instruction": "", "response": "r"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, out, err = seeds_cli(path)
    counted(code, out, err, "loaded 1 reference from")
    assert "3 rows); skipped: 1 empty, 1 without instruction and response" in out, out
