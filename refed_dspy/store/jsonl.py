"""Append-only JSONL files with line-atomic writes and torn-line recovery, and the JSON files written whole.

Every JSON text refed writes goes through `json_text`, which any strict reader parses: a float that is not finite
(NaN, an infinity) is written as `null`, the value a figure refed does not know has (a cost without a price), and
is said in a warning; a document written whole (a summary) also lists such figures under `non_finite`, with what
each was. Every line and file written here masks the keys the process holds (refed_dspy.secrets): a provider's error
that quotes one never reaches a record, a summary or a page.

A run dir's reserve: 1 MiB set aside when a run starts, given back when the disk fills up. A full disk stops a run, and the lines it must still write are the ones that say what was paid: the record whose
write failed, the calls cut off in flight, the summary. The reserve (`.refed-reserve`, zeros) is freed at the first
ENOSPC or EDQUOT, which leaves room for those lines; the next run of the same command sets it aside again. It is set
aside before the run writes its own files: a disk without room for it is full from the start, and the run stops there
in one line (store/rundir.py).

Repair (`refed repair RUN_DIR`): move the damaged and duplicated lines of a run dir's record files aside.

A line that is not a JSON object (a disk error, an editor, a bad copy), a torn last line, and a second
record of the same item (a sample id twice, as two writers at once used to leave) are appended to
`<file>.quarantine`, byte for byte, and the file is rewritten with the rest in order. Nothing is deleted:
the quarantine keeps every line taken out. The run can then be resumed; it makes what the repair removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from refed_dspy.errors import RunDirError
from refed_dspy.secrets import mask
from refed_dspy.store.ownership import owned

log = logging.getLogger(__name__)
NON_FINITE = "non_finite"  # the key of a document written whole that lists its figures that were not finite


class DiskFull(RunDirError):
    """The disk filled up: the lines were written into the room the run dir's reserve left, and the run stops
    (what it still writes on the way out fits there too)."""


def stop_if_full(writers: list[Any]) -> None:
    """DiskFull when one of `writers` found the disk full (and wrote its line into the run dir's reserve)."""
    full = next((w.full for w in writers if getattr(w, "full", None)), None)
    if full is not None:
        raise DiskFull(full)


class CorruptRecordError(RunDirError):
    """A complete line of a JSONL record file is not a JSON object (damaged by something other than a kill)."""


def parse_record(raw: bytes) -> dict[str, Any] | None:
    """The JSON object on one line, or None when the line is not one."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def read_jsonl(path: str | Path, repair: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the records (JSON objects, one per line) of `path`.

    A last line without its newline (a write torn by a kill) is skipped; with `repair` the file is
    truncated back to its last complete line so that appends stay valid (once every record was read). Any other line
    that is not a JSON object is damage no kill makes: CorruptRecordError names the file and line and the repair
    command, when the reading reaches it. The file is read a line at a time.
    """
    p = Path(path)
    if not p.exists():
        return
    end = lineno = 0
    with open(p, "rb") as fh:
        for raw in fh:  # a line at a time: neither the file's bytes nor all its records are held at once
            if not raw.endswith(b"\n"):
                break  # the last line, torn or still being written
            end, lineno = end + len(raw), lineno + 1
            if not raw.strip():
                continue
            obj = parse_record(raw)
            if obj is None:
                raise CorruptRecordError(_corrupt(p, lineno))
            yield obj
    if repair and end < p.stat().st_size:
        with open(p, "r+b") as fh:
            fh.truncate(end)


def _corrupt(path: Path, lineno: int) -> str:
    return (
        f"{path}:{lineno} is not a JSON record (the file was damaged); run `refed repair "
        f"{path.parent}` to move the bad lines to {path.name}.quarantine and keep the rest"
    )


def complete_records(data: bytes, path: Path, lines_before: int = 0) -> tuple[list[dict[str, Any]], int, int]:
    """The records of the complete lines of `data` (read from `path` after `lines_before` lines), the bytes those lines
    take, and how many lines they are. A last line without its newline is left out (still being written, or torn
    by a kill); any other line that is not a JSON object raises CorruptRecordError with its file and line."""
    end = data.rfind(b"\n") + 1
    records = []
    for lineno, raw in complete_lines(data):
        obj = parse_record(raw)
        if obj is None:
            raise CorruptRecordError(_corrupt(path, lines_before + lineno))
        records.append(obj)
    return records, end, data.count(b"\n", 0, end)


def complete_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Each complete line of `data` that is not blank, with its number (from 1), one at a time: a list of every line
    would hold the file's bytes a second time. A last line without its newline is left out."""
    end = data.rfind(b"\n") + 1
    start, lineno = 0, 0
    while start < end:
        stop = data.index(b"\n", start)
        raw, start, lineno = data[start:stop], stop + 1, lineno + 1
        if raw.strip():
            yield lineno, raw


class JsonlWriter:
    """Appends one JSON object per line with a single write(2), so a kill never leaves half a record
    that a reader would accept. Each line is flushed to the OS before `append` returns. `reserve`: a full disk may
    take the run dir's reserve for the line (a record's writer); a file the run can do without (its events) may not."""

    def __init__(self, path: str | Path, fsync: bool = False, reserve: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.reserve = reserve
        self.full: str | None = None  # set when the disk filled up (what to say); the line was written all the same
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def append(self, obj: dict[str, Any]) -> None:
        """Append one line. A full disk frees the run dir's reserve and writes the line there, then marks this
        writer `full` (the engine stops the run once the work at hand is written); any other failure raises
        RunDirError with the line unwritten."""
        line = (mask(json_text(obj, where=self.path)) + "\n").encode("utf-8")
        try:
            self._write(line)
        except OSError as err:
            if is_full(err) and self.reserve and give_back(self.path):
                try:
                    self._write(line)
                except OSError:
                    pass
                else:
                    self.full = self.full or self._failed(err)
                    return
            raise RunDirError(self._failed(err)) from None

    def _write(self, line: bytes) -> None:
        """Write `line` whole (a short write goes on with the rest, so a full disk shows as ENOSPC); on any failure
        the file is cut back to where the line began, so a retry never leaves half a line or the line twice."""
        fd = self._open()
        start = os.fstat(fd).st_size  # one writer per run dir: the end of the file is where this line goes
        try:
            done = 0
            while done < len(line):
                n = os.write(fd, line[done:])
                if n <= 0:
                    raise OSError(f"short write to {self.path}")
                done += n
            if self.fsync:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise

    def _failed(self, err: OSError) -> str:
        return (
            f"cannot write {self.path}: {err.strerror or err}; the records written so far are kept "
            "(fix the disk, then run the same command to resume)"
        )

    def sync(self) -> None:
        """Make what was appended so far durable (fsync), for a writer that does not sync each line."""
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def json_text(obj: Any, indent: int | None = None, where: str | Path = "", document: bool = False) -> str:
    """`obj` as JSON text that a strict reader parses (see the module docstring): a float that is not finite becomes
    null, and a warning names it and `where` it was written. `document` (a JSON object written as a whole file): the
    object also gets a `non_finite` table, {"cost_usd": "NaN", "by_role.teacher.cost_usd": "Infinity"}."""
    try:
        return json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        try:
            clean, found = finite_only(obj)
        except RecursionError:  # a circular reference: as json.dumps says
            raise err from None
        if not found:
            raise
    log.warning(
        "%s: figures that are not finite numbers written as null: %s",
        where or "JSON",
        ", ".join(f"{name or 'the value'} was {what}" for name, what in found.items()),
    )
    if document and isinstance(clean, dict):
        clean = {**clean, NON_FINITE: found}
    return json.dumps(clean, indent=indent, ensure_ascii=False, allow_nan=False)


def finite_only(obj: Any, at: str = "") -> tuple[Any, dict[str, str]]:
    """`obj` with every float that is not finite replaced by None (in objects, arrays and tuples, at any depth), and
    where each was (its dotted path: `by_role.teacher.cost_usd`, `costs.2`) with what it was (NaN, Infinity,
    -Infinity, as JSON's non-standard extension spells them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None, {at: "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")}
    found: dict[str, str] = {}
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            out[key], inner = finite_only(value, f"{at}.{key}" if at else str(key))
            found.update(inner)
        return out, found
    if isinstance(obj, (list, tuple)):
        items = []
        for i, value in enumerate(obj):
            item, inner = finite_only(value, f"{at}.{i}" if at else str(i))
            items.append(item)
            found.update(inner)
        return items, found
    return obj, found


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to a temp file and rename it into place (a figure that is not finite as null: see json_text)."""
    write_text_atomic(path, json_text(obj, indent=2, where=path, document=True) + "\n")


def write_text_atomic(path: str | Path, text: str, durable: bool = False) -> None:
    """Write text to a temp file and rename it into place (`durable`: fsynced before the rename)."""
    _write_atomic(path, (text,), durable)


def write_jsonl_atomic(path: str | Path, rows: list[dict[str, Any]], durable: bool = False) -> None:
    """Write a whole JSONL file to a temp file and rename it into place, a line at a time: the file's text is never
    held whole (100,000 samples would take about three times their size in memory as one string, masked, encoded)."""
    _write_atomic(path, (json_text(r, where=path) + "\n" for r in rows), durable)


def _write_atomic(path: str | Path, chunks: Iterable[str], durable: bool) -> None:
    p = Path(path)
    tmp = p.with_suffix(p.suffix + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for chunk in chunks:  # masked one by one: no key spans two lines
                fh.write(mask(chunk))
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:  # a full disk, a stop: the file in place stays whole, and no half-written copy is left
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, p)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from a file; {} when the file is missing or unreadable (for optional summaries)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


RESERVE_NAME = ".refed-reserve"
RESERVE_BYTES = 1 << 20
FULL = (errno.ENOSPC, errno.EDQUOT)


def set_aside(run_dir: str | Path) -> bool:
    """Write the reserve into `run_dir` unless it is there; False when the disk has not even that much room."""
    path = Path(run_dir) / RESERVE_NAME
    if path.exists() and path.stat().st_size >= RESERVE_BYTES:
        return True
    try:
        with open(path, "wb") as fh:
            fh.write(bytes(RESERVE_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        return True
    except OSError:
        path.unlink(missing_ok=True)
        return False


def give_back(near: str | Path) -> bool:
    """Free the reserve of the run dir that holds `near` (a file of it, or of a folder of it); True if one was freed."""
    for folder in list(Path(near).parents)[:3]:
        path = folder / RESERVE_NAME
        if path.exists():
            path.unlink(missing_ok=True)
            return True
    return False


def is_full(err: OSError) -> bool:
    """The error is a full disk (or a used-up quota)."""
    return err.errno in FULL


Key = Callable[[dict[str, Any]], Any]


def _unit(row: dict[str, Any]) -> Any:
    return ("unit", row.get("unit")) if row.get("kind") == "unit" else None


# record files of a run dir, and what identifies one record in each (None: every line is its own)
RECORD_FILES: dict[str, Key | None] = {
    "feedback.jsonl": lambda r: r.get("reference_id"),
    "samples.jsonl": lambda r: (r.get("meta") or {}).get("id"),
    "journal.jsonl": _unit,
    "rejects.jsonl": None,
    "judgments.jsonl": lambda r: r.get("sample_id"),
    "judge_rejects.jsonl": None,
}


def split_lines(data: bytes, key: Key | None) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    """(kept lines, quarantined lines, counts by cause) of a file's bytes; pure."""
    lines = data.split(b"\n")
    torn = lines.pop()  # what follows the last newline: empty unless a write was torn
    kept, bad, seen = [], [], set()
    counts = {"corrupt": 0, "duplicate": 0, "torn": 0}
    for raw in lines:
        if not raw.strip():
            continue
        row = parse_record(raw)
        if row is None:
            bad.append(raw)
            counts["corrupt"] += 1
            continue
        ident = key(row) if key is not None else None
        if ident is not None and ident in seen:
            bad.append(raw)
            counts["duplicate"] += 1
            continue
        if ident is not None:
            seen.add(ident)
        kept.append(raw)
    if torn.strip():
        bad.append(torn)
        counts["torn"] += 1
    return kept, bad, counts


def repair_run(run_dir: str | Path) -> dict[str, dict[str, int]]:
    """Quarantine the bad lines of every record file in `run_dir`; {file: counts} for the files it changed."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{path} is not a directory")
    changed: dict[str, dict[str, int]] = {}
    with owned(run_dir, "run", "refed repair", also=("filter",), existing=True, flag="RUN_DIR"):
        for name, key in RECORD_FILES.items():
            file = path / name
            if not file.is_file():
                continue
            kept, bad, counts = split_lines(file.read_bytes(), key)
            if not bad:
                continue
            with open(path / f"{name}.quarantine", "ab") as fh:
                fh.write(b"".join(line + b"\n" for line in bad))
            tmp = file.with_suffix(".jsonl.tmp")
            tmp.write_bytes(b"".join(line + b"\n" for line in kept))
            os.replace(tmp, file)
            changed[name] = {**counts, "kept": len(kept)}
    return changed
