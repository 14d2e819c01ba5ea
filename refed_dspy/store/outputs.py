"""Where a command may write: never onto, into, or around its input or any run dir.

`refed export` and `refed filter` take an output directory from the user. A path equal to the input,
inside it, or containing it (or containing, or inside, any run dir) is refused before anything is
written, so no typo of --out can delete or rewrite data the command did not create.
"""

from __future__ import annotations

import os
from pathlib import Path

from refed_dspy.errors import RunDirError
from refed_dspy.store.ownership import marked_kind, refuse_special

# what `refed synthesize` leaves in every run dir, and nothing else writes
RUN_DIR_MARKERS = ("fingerprint.json", "journal.jsonl")
_SCAN_LIMIT = 20_000  # directories looked at below an output path before giving up the search for run dirs


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a synthesis run dir (its marker says so, or it holds what only `refed synthesize` writes)."""
    return marked_kind(path) == "run" or any((path / marker).is_file() for marker in RUN_DIR_MARKERS)


def _run_dir_below(path: Path) -> Path | None:
    for looked, (root, dirs, _) in enumerate(os.walk(path)):
        dirs[:] = [d for d in dirs if d not in ("cache", ".git")]
        if is_run_dir(Path(root)):
            return Path(root)
        if looked >= _SCAN_LIMIT:
            return None
    return None


def check_output_dir(out: str | Path, inputs: list[str | Path], flag: str = "--out") -> Path:
    """`out` resolved, or RunDirError when it is, holds or lies inside an input or any run dir (or is empty, a
    filesystem root or the home directory: see store/ownership.py)."""
    target = refuse_special(out, flag)
    for given in inputs:
        source = Path(given).resolve()
        if target == source:
            raise RunDirError(
                f"{flag} {out} is the input {given}: the input is never written to; choose another {flag}"
            )
        if source in target.parents:
            raise RunDirError(f"{flag} {out} lies inside the input {given}; choose a directory outside it")
        if target in source.parents:
            raise RunDirError(f"{flag} {out} contains the input {given}; choose a new directory for the output")
    for parent in target.parents:
        if is_run_dir(parent):
            raise RunDirError(f"{flag} {out} lies inside the run dir {parent}; choose a directory outside it")
    if target.is_dir():
        found = _run_dir_below(target)
        if found is not None:
            raise RunDirError(f"{flag} {out} holds the run dir {found}; choose a new directory for the output")
    return target
