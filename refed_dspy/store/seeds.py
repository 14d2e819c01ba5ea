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

Their splits (`split_by_reference`, `split_three`): train/validation/test sides that keep every item of one reference
on the same side (no reference leaks across).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

from refed_dspy.clients.destination import checking
from refed_dspy.config import SeedsConfig
from refed_dspy.errors import SeedError
from refed_dspy.secrets import first_line
from refed_dspy.store.records import Reference
from refed_dspy.text.counts import counted

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
MAX_ROW_CHARS = 200_000
# the longest line of a JSON-lines seed file read: a row within MAX_ROW_CHARS takes at most 12 bytes a character
# (astral characters escaped as two \uXXXX), 2.4 MB, and this leaves room for other columns; a longer line is skipped
# without being held (a 1 GiB line took 3.2 GB of memory to skip when the file was read whole)
MAX_LINE_BYTES = 16 * 2**20
READ_CHUNK = 2**20
NAMED_LINES = 3  # lines of a JSON-lines file the seeds line names for each reason a row was skipped
WHY = {"oversized": f"instruction and response over {MAX_ROW_CHARS:,} characters"}  # a reason its name does not say
BOM = b"\xef\xbb\xbf"
# extensions of a seed file: the readers' own, and the ones a user may mean (refused as unsupported when they exist);
# a hub name ending in one (owner/name.jsonl) is taken for a missing local file
SEED_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".parquet", ".txt", ".tsv", ".ndjson", ".arrow"})
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
    """A row the file holds that cannot be a reference at all (skipped and counted by `reason`; `line`: where in a
    JSON-lines file, for a reason the seeds line names the lines of: a line too long to read)."""

    reason: str
    line: int | None = None


Row = dict[str, Any] | _Junk


@dataclass
class SeedReport:
    """What loading did: how many rows were read, kept, and skipped by reason."""

    source: str
    shape: str
    rows: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    at: dict[str, list[int]] = field(default_factory=dict)  # reason -> the first NAMED_LINES lines skipped for it

    def skip(self, reason: str, line: int | None = None) -> None:
        """Count one row skipped for `reason` (at `line` of a JSON-lines file, when known)."""
        self.skipped[reason] += 1
        lines = self.at.setdefault(reason, [])
        if line is not None and len(lines) < NAMED_LINES:
            lines.append(line)

    def line(self) -> str:
        return (
            f"loaded {counted(self.kept, 'reference')} from {self.source} ({self.shape} shape, {self.rows} rows); "
            f"skipped: {self.skipped_text() or 'none'}"
        )

    def skipped_text(self) -> str:
        """The rows skipped, by reason, with what a reason means where its name does not say it and the lines of a
        JSON-lines file it names ('' when none was skipped)."""
        return ", ".join(f"{n} {reason}{self._where(reason, n)}" for reason, n in sorted(self.skipped.items()))

    def _where(self, reason: str, count: int) -> str:
        lines = self.at.get(reason) or []
        more = ", ..." if count > len(lines) else ""
        said = [WHY[reason]] if reason in WHY else []
        said += [f"line{'s' if count > 1 else ''} {', '.join(map(str, lines))}{more}"] if lines else []
        return f" ({'; '.join(said)})" if said else ""


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


# the columns a row of a flat shape must have; a row with other names (prompt, completion) is not an empty one
_FLAT_COLUMNS = {"alpaca": ("instruction", "output"), "plain": ("instruction", "response")}


def row_to_pair(row: dict[str, Any], shape: str) -> tuple[str, str]:
    """(instruction, response) of one row in `shape`; raises _Skip for rows to skip."""
    missing = [name for name in _FLAT_COLUMNS.get(shape, ()) if name not in row]
    if missing:
        raise _Skip(f"without {' and '.join(missing)}")
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
    if path.suffix == ".jsonl" or (path.suffix == ".json" and _is_json_lines(path)):
        yield from _jsonl_rows(path)
        return
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise SeedError(f"{path}: not UTF-8 text (bad byte at position {err.start}); re-encode it as UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SeedError(f"{path}: not valid JSON ({_where(err)}, line {err.lineno})") from None
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


def _is_json_lines(path: Path) -> bool:
    """A .json file written one object a line: it starts with `{` and a line further on starts with `{` too (read in
    chunks, so a file of any size is told apart without being held)."""
    with open(path, "rb") as fh:
        head = fh.read(READ_CHUNK)
        if head.removeprefix(BOM).lstrip()[:1] != b"{":
            return False
        before = b""
        while head:
            if b"\n{" in before + head:
                return True
            before, head = head[-1:], fh.read(READ_CHUNK)
    return False


def _jsonl_rows(path: Path) -> Iterator[Row]:
    """The rows of a JSON-lines file, read a line at a time: a line longer than MAX_LINE_BYTES is skipped unread (its
    reason and line number go to the seeds line), one nested too deeply is skipped, one that is not JSON is refused."""
    with open(path, "rb") as fh:
        for n, line in enumerate(_lines(fh, MAX_LINE_BYTES), 1):
            if line is None:
                yield _Junk(f"longer than {_bytes(MAX_LINE_BYTES)}", n)
                continue
            try:
                text = (line.removeprefix(BOM) if n == 1 else line).decode("utf-8")
            except UnicodeDecodeError as err:
                raise SeedError(
                    f"{path}:{n}: not UTF-8 text (bad byte at column {err.start + 1}); re-encode it as UTF-8"
                ) from None
            if text.strip():
                yield _json_line(text, path, n)


def _bytes(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n:,} bytes"


def _where(err: json.JSONDecodeError) -> str:
    """What a JSON error says and the column it is at (Python's own messages of some end in "at")."""
    return f"{err.msg.removesuffix(' at')} at column {err.colno}"


def _json_line(text: str, path: Path, n: int) -> Row:
    """Line `n` of a JSON-lines file as a row (a _Junk when nested too deeply to read); SeedError when not JSON."""
    try:
        return _as_row(json.loads(text))
    except json.JSONDecodeError as err:
        raise SeedError(f"{path}:{n}: not valid JSON ({_where(err)})") from None
    except RecursionError:  # a line of 100,000 "[": this row is junk, the others may be fine
        return _Junk("nested too deeply")
    except ValueError as err:  # an integer of more digits than Python converts
        raise SeedError(f"{path}:{n}: not valid JSON ({err})") from None


def _lines(fh: BinaryIO, limit: int) -> Iterator[bytes | None]:
    """Each line of `fh` (its line break kept), or None for a line of more than `limit` bytes, which is read past in
    chunks of READ_CHUNK bytes: never held whole, so a 1 GiB line costs no more memory than `limit`."""
    while line := fh.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while (rest := fh.readline(READ_CHUNK)) and not rest.endswith(b"\n"):
            pass
        yield None


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
        with checking():  # a request carrying $HF_TOKEN is checked where it goes
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
    if source.count("/") == 1 and not looks_local(source):
        return source, _hub_rows(source, split, subset)
    raise SeedError(
        f"seed source not found: {source} (a local file, a saved dataset directory, or a hub name like GAIR/lima)"
    )


def looks_local(source: str) -> bool:
    """Whether `source` names a local path rather than a hub dataset: it starts with `.`, `/` or `~`, ends with an
    extension a seed file has (`SEED_SUFFIXES`), or its first part is a folder that exists here (`data/x` where
    ./data exists). A missing local path is then "not found" at once instead of a minute of hub retries."""
    if source.startswith((".", "/", "~")):
        return True
    if Path(source).suffix.lower() in SEED_SUFFIXES:
        return True
    first = source.split("/", 1)[0]
    return bool(first) and Path(first).is_dir()


def read_references(
    source: str | None = None, format: str = "auto", split: str = "train", limit: int | None = None
) -> tuple[list[Reference], SeedReport]:
    """Load references and a report of what was kept and skipped.

    Args:
        source: hub name, local file or directory; None for the embedded set.
        format: one of SHAPES, or "auto" to detect from the first row.
        split: split to read from hub datasets and saved DatasetDicts.
        limit: keep at most this many references.

    Returns:
        (references, report): the references kept, and what was read, kept and skipped.

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
            report.skip(row.reason, row.line)
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


def given_references(given: Iterable[Any] | None) -> list[Reference] | None:
    """The references a Python caller hands in, as Reference objects: each a Reference, or a mapping with a non-empty
    `instruction` and `response` (made as a seed row is; `source` "python" unless it names one); None stays None.
    SeedError names the first that is neither (a string, a tuple), before anything runs."""
    if given is None:
        return None
    if isinstance(given, (str, os.PathLike)):
        raise SeedError(f"references= takes the references, not where they are: load_references({str(given)!r})")
    found: list[Reference] = []
    for i, one in enumerate(given):
        if isinstance(one, Reference):
            found.append(one)
            continue
        pair = [one.get(k) for k in ("instruction", "response")] if isinstance(one, Mapping) else []
        if len(pair) != 2 or not all(isinstance(text, str) and text.strip() for text in pair):
            raise SeedError(
                f"references[{i}]: expected a Reference (refed_dspy.load_references) or a mapping with a non-empty "
                f"instruction and response, got {type(one).__name__} {str(one)[:60]!r}"
            )
        found.append(Reference.make(pair[0], pair[1], str(one.get("source") or "python")))
    return found


def load_references(
    source: str | None = None, format: str = "auto", split: str = "train", limit: int | None = None
) -> list[Reference]:
    """Load validated references (see `read_references`); logs a one-line summary.

    Args:
        source: hub name, local file or directory; None for the embedded set.
        format: one of SHAPES, or "auto" to detect from the first row.
        split: split to read from hub datasets and saved DatasetDicts.
        limit: keep at most this many references.

    Returns:
        The references kept.

    Raises:
        SeedError: the source is unreadable, matches no shape, or yields no usable row.
    """
    refs, report = read_references(source, format, split, limit)
    log.info(report.line())
    return refs


def sample_reference(sample: dict[str, Any]) -> str:
    """The group a sample belongs to in a split: its reference (its own id when it has none)."""
    return sample["meta"].get("reference_id") or sample["meta"]["id"]


def _closest_total(sizes: dict[int, int], target: float, total: int) -> dict[int, int]:
    """How many groups of each size (`sizes`: size -> groups of that size) make the total closest to `target` of all
    that lie strictly between 0 and `total` (ties to the larger); {} when none does. Exact: the totals reachable are a
    bitset grown by chunks of 1, 2, 4, ... groups of one size (a bounded knapsack), kept to walk back the choice."""
    reach, chunks = 1, []  # bit t of `reach`: a total of t items can be made
    for size, count in sorted(sizes.items()):
        left, m = count, 1
        while left:
            take = min(m, left)
            chunks.append((size, take, reach))
            reach |= reach << (size * take)
            left, m = left - take, m * 2
    totals = [t for t in range(1, total) if reach >> t & 1]
    if not totals:
        return {}
    best = min(totals, key=lambda t: (abs(t - target), -t))
    chosen: dict[int, int] = {}
    for size, take, before in reversed(chunks):
        if best >= size * take and before >> (best - size * take) & 1 and not before >> best & 1:
            chosen[size] = chosen.get(size, 0) + take
            best -= size * take
    return chosen


def split_by_reference(
    samples: list, val_fraction: float, seed: int = 0, key: Callable[[Any], str] = sample_reference
) -> tuple[list, list]:
    """Train/validation split that keeps all items of one reference (`key`) on the same side.

    Validation takes the share of the items closest to `val_fraction` that whole references allow (at least one
    reference, never all of them; ties to the larger share): which references of each size go there is drawn with
    `seed`. (It used to take references in a shuffled order until the share was met: one large reference drawn first
    made 31-37% of a 10% ask, where 6.25% was possible.) Both sides keep the input order.
    """
    if not samples or val_fraction <= 0:
        return list(samples), []
    groups: dict[str, int] = defaultdict(int)
    for s in samples:
        groups[key(s)] += 1
    refs = sorted(groups)
    random.Random(seed).shuffle(refs)
    sizes: dict[int, int] = defaultdict(int)
    for ref in refs:
        sizes[groups[ref]] += 1
    wanted = _closest_total(sizes, val_fraction * len(samples), len(samples))
    val_refs: set[str] = set()
    for ref in refs:  # of each size, the first drawn
        if wanted.get(groups[ref], 0) > 0:
            val_refs.add(ref)
            wanted[groups[ref]] -= 1
    return [s for s in samples if key(s) not in val_refs], [s for s in samples if key(s) in val_refs]


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def share_note(
    samples: list, val: list, val_fraction: float, key: Callable[[Any], str] = sample_reference
) -> str | None:
    """Why the validation share `split_by_reference` gave is far from `val_fraction` (off by more than half of it), in
    one line; None when it is near enough. Whole references move, so a few large ones make a coarse split: the share
    given is the closest they allow."""
    if not samples or val_fraction <= 0:
        return None
    got = len(val) / len(samples)
    if abs(got - val_fraction) <= val_fraction / 2:
        return None
    groups: dict[str, int] = defaultdict(int)
    for s in samples:
        groups[key(s)] += 1
    head = f"validation holds {len(val)} of {len(samples)} samples ({_percent(got)}), not the {_percent(val_fraction)} asked"
    if len(groups) == 1:
        return f"{head}: the split keeps each reference's samples together, and they all come from one reference"
    smallest = min(groups.values()) / len(samples)
    if val_fraction < smallest:
        return (
            f"{head}: the split keeps each reference's samples together, and with {len(groups)} references the "
            f"smallest nonzero share is {_percent(smallest)}"
        )
    return (
        f"{head}: the split keeps each reference's samples together, and of the shares whole references of its "
        f"{len(groups)} allow, {_percent(got)} is the closest"
    )


def split_three(
    items: list, test_fraction: float, val_fraction: float, seed: int = 0, key: Callable[[Any], str] = sample_reference
) -> tuple[list, list, list]:
    """Train / validation / test with every reference (`key`) on one side: `test_fraction` of the items held out
    first, then `val_fraction` of the rest for validation (split_by_reference's rules, seeds `seed` and `seed + 1`)."""
    rest, test = split_by_reference(items, test_fraction, seed, key)
    train, val = split_by_reference(rest, val_fraction, seed + 1, key)
    return train, val, test


def interleaved(sides: list[list]) -> list:
    """The items of `sides` in one list, taken side by side: the side with the smallest part of it taken goes next
    (ties to the larger side, then the earlier), so each side comes once before any comes twice, and after that each
    side keeps pace with its share. A synthesis that reaches its size before its last references still draws from
    every side."""
    taken = [0] * len(sides)
    out = []
    for _ in range(sum(len(s) for s in sides)):
        i = min(
            (i for i, s in enumerate(sides) if taken[i] < len(s)),
            key=lambda i: (taken[i] / len(sides[i]), -len(sides[i]), i),
        )
        out.append(sides[i][taken[i]])
        taken[i] += 1
    return out
