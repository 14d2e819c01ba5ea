"""Load reference pairs from the hub, local files, saved datasets, or the embedded seed set.

Rows that cannot be a reference are skipped and counted by reason (the report's line says how many):
a row that is not an object, a JSONL line nested too deeply to read, an instruction or response that
is not text (a number, bool, list, object or NaN, as wrong-typed Parquet or JSON columns give), empty,
multi-turn or oversized rows, duplicates. A file that yields no usable row is refused in one line.

Shapes (detected from the first object row's columns, or named in config):
  lima      {"conversations": [user, assistant]}           (2-turn rows only, as the paper did)
  sharegpt  {"conversations": [{"from", "value"}, ...]}
  openai    {"messages": [{"role", "content"}, ...]}
  alpaca    {"instruction", "input", "output"}
  plain     {"instruction", "response"}
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from refed_dspy.config import SeedsConfig
from refed_dspy.errors import SeedError
from refed_dspy.secrets import first_line
from refed_dspy.store.records import Reference

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
MAX_ROW_CHARS = 200_000
SHAPES = ("lima", "sharegpt", "openai", "alpaca", "plain")
_SHAPE_COLUMNS = {
    "lima": "conversations (a list of strings)",
    "sharegpt": "conversations (a list of {from, value})",
    "openai": "messages (a list of {role, content})",
    "alpaca": "instruction, input, output",
    "plain": "instruction, response",
}


class _Skip(Exception):
    def __init__(self, reason: str):
        self.reason = reason


@dataclass(frozen=True)
class _Junk:
    """A row the file holds that cannot be a reference at all (skipped and counted by `reason`)."""

    reason: str


Row = dict[str, Any] | _Junk


@dataclass
class SeedReport:
    """What loading did: how many rows were read, kept, and skipped by reason."""

    source: str
    shape: str
    rows: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def line(self) -> str:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"
        return f"loaded {self.kept} references from {self.source} ({self.shape} shape, {self.rows} rows); skipped: {skipped}"


def detect_shape(row: dict[str, Any]) -> str | None:
    """The shape of one row, or None when it matches none."""
    if "conversations" in row:
        conv = row["conversations"]
        if isinstance(conv, list) and conv and isinstance(conv[0], dict):
            return "sharegpt"
        return "lima"
    if "messages" in row:
        return "openai"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "instruction" in row and "response" in row:
        return "plain"
    return None


def _text(value: Any, parts: bool = False) -> str:
    """`value` as stripped text: None is empty; with `parts`, a list of OpenAI content parts is joined; anything
    else that is not a string (a number, bool, NaN, list, object) raises _Skip("not text")."""
    if value is None:
        return ""
    if parts and isinstance(value, list):
        texts = [p.get("text") if isinstance(p, dict) else p for p in value]
        if all(isinstance(t, str) for t in texts):
            return " ".join(texts).strip()
    if not isinstance(value, str):
        raise _Skip("not text")
    return value.strip()


def _two_turns(turns: list[tuple[str, str]]) -> tuple[str, str]:
    turns = [(role, text) for role, text in turns if role != "system"]
    if len(turns) > 2:
        raise _Skip("multi-turn")
    if len(turns) < 2 or turns[0][0] != "user" or turns[1][0] != "assistant":
        raise _Skip("not a user/assistant pair")
    return turns[0][1], turns[1][1]


_ROLE = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}


def row_to_pair(row: dict[str, Any], shape: str) -> tuple[str, str]:
    """(instruction, response) of one row in `shape`; raises _Skip for rows to skip."""
    try:
        if shape == "lima":
            conv = row["conversations"]
            if not isinstance(conv, list):
                raise _Skip("malformed")
            if len(conv) > 2:
                raise _Skip("multi-turn")
            if len(conv) < 2:
                raise _Skip("empty")
            return _text(conv[0]), _text(conv[1])
        if shape == "sharegpt":
            turns = [
                (_ROLE.get(str(t.get("from", "")).lower(), "other"), _text(t.get("value")))
                for t in row["conversations"]
            ]
            return _two_turns(turns)
        if shape == "openai":
            turns = [(str(m.get("role", "")).lower(), _text(m.get("content"), parts=True)) for m in row["messages"]]
            return _two_turns(turns)
        if shape == "alpaca":
            extra = row.get("input")
            if isinstance(extra, float) and math.isnan(extra):  # an optional column that pandas filled with NaN
                extra = None
            instruction, extra = _text(row.get("instruction")), _text(extra)
            return (f"{instruction}\n\n{extra}" if extra else instruction), _text(row.get("output"))
        return _text(row.get("instruction")), _text(row.get("response"))
    except (KeyError, TypeError, AttributeError):
        raise _Skip("malformed") from None


def _no_shape_error(source: str, columns: Iterable[str]) -> SeedError:
    accepted = "; ".join(f"{name}: {cols}" for name, cols in _SHAPE_COLUMNS.items())
    return SeedError(
        f"{source}: rows match no known shape; columns found: {sorted(columns)}; shapes accepted: {accepted}"
    )


def _as_row(obj: Any) -> Row:
    return obj if isinstance(obj, dict) else _Junk("not an object")


def _json_rows(path: Path) -> Iterator[Row]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise SeedError(f"{path}: not UTF-8 text (bad byte at position {err.start}); re-encode it as UTF-8") from None
    if path.suffix == ".jsonl" or (path.suffix == ".json" and text.lstrip()[:1] == "{" and "\n{" in text):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise SeedError(f"{path}:{n}: not valid JSON ({err.msg})") from None
                except RecursionError:  # a line of 100,000 "[": this row is junk, the others may be fine
                    yield _Junk("nested too deeply")
                    continue
                except ValueError as err:  # an integer of more digits than Python converts
                    raise SeedError(f"{path}:{n}: not valid JSON ({err})") from None
                yield _as_row(obj)
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SeedError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise SeedError(
            f"{path}: JSON nested too deeply to read; a seed file is a list of rows of text (or JSONL, one row a line)"
        ) from None
    except ValueError as err:
        raise SeedError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, dict):  # {"train": [...]} or {"data": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        raise SeedError(f"{path}: expected a list of rows")
    for obj in data:
        yield _as_row(obj)


_LIST_COLUMNS = ("conversations", "messages")  # a CSV cell can only hold these as JSON text


def _csv_rows(path: Path) -> Iterator[Row]:
    csv.field_size_limit(MAX_ROW_CHARS * 4)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                yield {k: _maybe_json(v) if k in _LIST_COLUMNS else v for k, v in row.items() if k is not None}
    except UnicodeDecodeError as err:
        raise SeedError(f"{path}: not UTF-8 text (bad byte at position {err.start}); re-encode it as UTF-8") from None
    except csv.Error as err:
        raise SeedError(f"{path}: not a readable CSV file ({err})") from None


def _maybe_json(value: str | None) -> Any:
    if value and value[:1] == "[":
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply: the row is then malformed
            return value
    return value


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for bad files
        raise SeedError(f"{path}: not a readable Parquet file ({err})") from None
    for batch in table.to_batches(max_chunksize=1024):
        yield from batch.to_pylist()


def _dataset_rows(ds: Any, split: str, source: str, setting: str) -> Iterator[Row]:
    from datasets import DatasetDict

    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise SeedError(f"{source}: no split '{split}'; splits: {sorted(ds)} (set {setting})")
        ds = ds[split]
    yield from ds


def _hub_rows(name: str, split: str, subset: str | None = None) -> Iterator[Row]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, **({"name": subset} if subset else {}))
    except Exception as err:
        raise SeedError(
            f"cannot load '{name}' from the Hugging Face hub: {first_line(err)} "
            "(check the name and your network; gated sets such as GAIR/lima need HF_TOKEN and accepted terms)"
        ) from None
    yield from ds


def _embedded_rows() -> Iterator[Row]:
    text = resources.files("refed_dspy").joinpath("data/seeds.jsonl").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


def source_rows(
    source: str | None, split: str, subset: str | None = None, setting: str = "seeds.split"
) -> tuple[str, Iterator[Row]]:
    """(the source's name, its rows) for a hub name (`subset`: its configuration), a local .json/.jsonl/.parquet/.csv
    file, a saved dataset directory, or None for the embedded set. A row that is not an object comes as a _Junk.
    `setting`: the config field that picks the split, for messages. Raises SeedError when the source cannot be read."""
    if source is None or source == EMBEDDED:
        return EMBEDDED, _embedded_rows()
    path = Path(source).expanduser()
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as err:
            raise SeedError(f"{path}: not a saved Hugging Face dataset directory ({err})") from None
        return str(path), _dataset_rows(ds, split, str(path), setting)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".json", ".jsonl"):
            return str(path), _json_rows(path)
        if suffix == ".csv":
            return str(path), _csv_rows(path)
        if suffix == ".parquet":
            return str(path), _parquet_rows(path)
        raise SeedError(
            f"{path}: unsupported file type '{suffix}'; use .json, .jsonl, .parquet, .csv or a saved dataset directory"
        )
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        return source, _hub_rows(source, split, subset)
    raise SeedError(
        f"seed source not found: {source} (a local file, a saved dataset directory, or a hub name like GAIR/lima)"
    )


def read_references(
    source: str | None = None, format: str = "auto", split: str = "train", limit: int | None = None
) -> tuple[list[Reference], SeedReport]:
    """Load references and a report of what was kept and skipped.

    Args:
        source: hub name, local file or directory; None for the embedded set.
        format: one of SHAPES, or "auto" to detect from the first row.
        split: split to read from hub datasets and saved DatasetDicts.
        limit: keep at most this many references.

    Raises:
        SeedError: the source is unreadable, matches no shape, or yields no usable row.
    """
    name, rows = source_rows(source, split)
    shape = None if format == "auto" else format
    report = SeedReport(source=name, shape=shape or "auto")
    refs: list[Reference] = []
    seen: set[str] = set()
    columns: list[str] = []  # of the last object row, for the messages below
    for row in rows:
        report.rows += 1
        if isinstance(row, _Junk):
            report.skipped[row.reason] += 1
            continue
        columns = list(row.keys())
        if shape is None:
            shape = detect_shape(row)
            if shape is None:
                raise _no_shape_error(name, columns)
            report.shape = shape
        try:
            instruction, response = row_to_pair(row, shape)
            if not instruction or not response:
                raise _Skip("empty")
            if len(instruction) + len(response) > MAX_ROW_CHARS:
                raise _Skip("oversized")
        except _Skip as skip:
            report.skipped[skip.reason] += 1
            continue
        ref = Reference.make(instruction, response, name)
        if ref.id in seen:
            report.skipped["duplicate"] += 1
            continue
        seen.add(ref.id)
        refs.append(ref)
        if limit and len(refs) >= limit:
            break
    report.kept = len(refs)
    if report.rows == 0:
        raise SeedError(f"{name}: no rows")
    if not refs:
        if report.skipped.get("malformed", 0) == report.rows:
            if format != "auto":
                raise SeedError(
                    f"{name}: rows do not have the '{format}' shape ({_SHAPE_COLUMNS[format]}); "
                    f'columns found: {sorted(columns)} (set seeds.format = "auto" to detect it)'
                )
            raise _no_shape_error(name, columns)
        raise SeedError(f"{name}: no usable reference pairs ({report.line()})")
    return refs, report


def read_seeds(seeds: SeedsConfig) -> tuple[list[Reference], SeedReport]:
    """The references a config's [seeds] section names, and the report of their reading (see `read_references`)."""
    return read_references(seeds.source, seeds.format, seeds.split, seeds.limit)


def load_references(
    source: str | None = None, format: str = "auto", split: str = "train", limit: int | None = None
) -> list[Reference]:
    """Load validated references (see `read_references`); logs a one-line summary."""
    refs, report = read_references(source, format, split, limit)
    log.info(report.line())
    return refs
