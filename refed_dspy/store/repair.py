"""`refed repair RUN_DIR`: move the damaged and duplicated lines of a run dir's record files aside.

A line that is not a JSON object (a disk error, an editor, a bad copy), a torn last line, and a second
record of the same item (a sample id twice, as two writers at once used to leave) are appended to
`<file>.quarantine`, byte for byte, and the file is rewritten with the rest in order. Nothing is deleted:
the quarantine keeps every line taken out. The run can then be resumed; it makes what the repair removed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refed_dspy.errors import RunDirError
from refed_dspy.store.jsonl import parse_record
from refed_dspy.store.ownership import owned

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
