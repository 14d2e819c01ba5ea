"""Append-only JSONL files with line-atomic writes and torn-line recovery.

Every line and file written here masks the keys the process holds (refed_dspy.secrets): a provider's error that
quotes one never reaches a record, a summary or a page."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refed_dspy.errors import RunDirError
from refed_dspy.secrets import mask
from refed_dspy.store.reserve import give_back, is_full


class DiskFull(RunDirError):
    """The disk filled up: the lines were written into the room the run dir's reserve left, and the run stops
    (what it still writes on the way out fits there too)."""


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
    truncated back to its last complete line so that appends stay valid. Any other line that is not a
    JSON object is damage no kill makes: CorruptRecordError names the file and line and the repair command.
    """
    p = Path(path)
    if not p.exists():
        return
    with open(p, "rb") as fh:
        data = fh.read()
    records, end, _ = complete_records(data, p)
    if repair and end < len(data):
        with open(p, "r+b") as fh:
            fh.truncate(end)
    yield from records


def complete_records(data: bytes, path: Path, lines_before: int = 0) -> tuple[list[dict[str, Any]], int, int]:
    """The records of the complete lines of `data` (read from `path` after `lines_before` lines), the bytes those lines
    take, and how many lines they are. A last line without its newline is left out (still being written, or torn
    by a kill); any other line that is not a JSON object raises CorruptRecordError with its file and line."""
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    records = []
    for lineno, raw in enumerate(lines, lines_before + 1):
        if not raw.strip():
            continue
        obj = parse_record(raw)
        if obj is None:
            raise CorruptRecordError(
                f"{path}:{lineno} is not a JSON record (the file was damaged); run `refed repair "
                f"{path.parent}` to move the bad lines to {path.name}.quarantine and keep the rest"
            )
        records.append(obj)
    return records, end, len(lines)


class JsonlWriter:
    """Appends one JSON object per line with a single write(2), so a kill never leaves half a record
    that a reader would accept. Each line is flushed to the OS before `append` returns."""

    def __init__(self, path: str | Path, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
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
        line = (mask(json.dumps(obj, ensure_ascii=False)) + "\n").encode("utf-8")
        try:
            self._write(line)
        except OSError as err:
            if is_full(err) and give_back(self.path):
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


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to a temp file and rename it into place."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_text_atomic(path: str | Path, text: str, durable: bool = False) -> None:
    """Write text to a temp file and rename it into place (`durable`: fsynced before the rename)."""
    p = Path(path)
    tmp = p.with_suffix(p.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(mask(text))
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, p)


def write_jsonl_atomic(path: str | Path, rows: list[dict[str, Any]], durable: bool = False) -> None:
    """Write a whole JSONL file to a temp file and rename it into place."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), durable)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from a file; {} when the file is missing or unreadable (for optional summaries)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
