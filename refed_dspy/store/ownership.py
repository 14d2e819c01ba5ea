"""Only our own directories: a command writes, replaces or deletes only inside a directory refed may take.

A directory refed may take for a kind of output (run, filter, export, compare, optimize, train, evaluate) is one that does not
exist yet, one that is empty (but for a lock file), or one refed made for that kind. Refed says so in the
directory itself: `claim` writes `.refed-dir`, holding the kind, as the first thing it puts there. Anything else
is the user's: it is refused before any write, with one line. The filesystem root and the home directory are
never taken, nor an empty path (which would be the current directory).

Nor does a command write onto, into, or around its input or any run dir (`check_output_dir`): `refed export` and
`refed filter` take an output directory from the user, and a path equal to the input, inside it, or containing it (or
containing, or inside, any run dir) is refused before anything is written, so no typo of --out can delete or rewrite
data the command did not create.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from refed_dspy.errors import RunDirError, write_error
from refed_dspy.store.lock import LOCK_NAME, DirLock
from refed_dspy.text.counts import counted

MARKER = ".refed-dir"
KINDS = {
    "run": "run directory",
    "filter": "filtered run directory",
    "export": "export directory",
    "compare": "comparison directory",
    "optimize": "optimization directory",
    "train": "training directory",
    "evaluate": "evaluation directory",
}
_OURS = {LOCK_NAME, MARKER}  # entries that still leave a directory empty


def _entries(path: Path) -> set[str]:
    try:
        return {p.name for p in path.iterdir()} - _OURS
    except OSError:
        return set()


def is_empty(path: str | Path) -> bool:
    """Whether `path` holds nothing but refed's lock file and marker (a missing directory is empty)."""
    return not _entries(Path(path))


def kind_of(path: str | Path) -> str | None:
    """The kind `.refed-dir` in `path` names, or None when there is no marker (or an empty one: a kill or a full
    disk between its creation and its write; the directory is then judged as one without a marker)."""
    try:
        return (Path(path) / MARKER).read_text(encoding="utf-8").strip() or None
    except (OSError, ValueError):
        return None


def _describe(kind: str) -> str:
    return f"a refed {KINDS.get(kind, f'directory of kind {kind!r}')}"


def refuse_special(given: str | Path, flag: str) -> Path:
    """`given` resolved, or RunDirError when it is empty (the current directory), a filesystem root or the home
    directory: no command makes those its own, whatever they hold."""
    if not str(given).strip():
        raise RunDirError(f"{flag} is empty, which would be the current directory; name a directory for it")
    target = Path(given).resolve()
    if target == Path(target.anchor) or target.parent == target:
        raise RunDirError(f"{flag} {given} is a filesystem root; choose a new directory below it")
    if target == Path.home().resolve():
        raise RunDirError(f"{flag} {given} is your home directory; choose a new directory below it")
    return target


def check(
    path: str | Path, kind: str, *, also: tuple[str, ...] = (), existing: bool = False, flag: str = "directory"
) -> Path:
    """Refuse (RunDirError, one line) a directory a command of `kind` may not write in; returns it, resolved.

    Taken: a new or empty directory (unless `existing`: the command only adds to one refed made), or one refed made
    for `kind` or one of `also`. `flag` names the setting in the message (run.dir, --out, RUN_DIR). Reads only.
    """
    target = refuse_special(path, flag)
    if target.exists() and not target.is_dir():
        raise RunDirError(f"{flag} {path} is a file, not a directory; choose a directory")
    accepted = (kind, *also)
    found = kind_of(target) if target.is_dir() else None
    if found in accepted:
        return target
    if found is not None:
        raise RunDirError(f"{flag} {path} is {_describe(found)}, not {_describe(kind)}; choose another directory")
    if existing:
        raise RunDirError(f"{path} is not {_describe(kind)} (it has no {MARKER} and was not made by refed)")
    entries = _entries(target)
    if entries:
        shown = ", ".join(sorted(entries)[:4]) + (", ..." if len(entries) > 4 else "")
        raise RunDirError(
            f"{flag} {path} is not empty and not refed's ({shown}); refed writes only into a new or empty "
            "directory or one it made: choose another directory"
        )
    return target


def claim(
    path: str | Path, kind: str, *, also: tuple[str, ...] = (), existing: bool = False, flag: str = "directory"
) -> Path:
    """`check`, then make the directory refed's: create it and write its marker (kept when there is one).

    Returns the directory as given (a Path). RunDirError when it is refused or cannot be written.
    """
    check(path, kind, also=also, existing=existing, flag=flag)
    given = Path(path)
    try:
        given.mkdir(parents=True, exist_ok=True)
        fd = os.open(given / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        found = kind_of(given)  # another command took it between the check and now, or an empty marker
        if found is None:  # empty (cut off between its creation and its write): what `check` allowed, now said
            (given / MARKER).write_text(f"{kind}\n", encoding="utf-8")
            return given
        if found not in (kind, *also):
            raise RunDirError(f"{flag} {path} is {_describe(found or '?')}, not {_describe(kind)}") from None
        return given
    except OSError as err:
        raise write_error(f"{KINDS.get(kind, 'directory')} {path}", err) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{kind}\n")
    except OSError as err:  # a full disk: the marker stays empty, which `check` reads as none
        raise write_error(f"{KINDS.get(kind, 'directory')} {path}", err) from None
    return given


@contextmanager
def owned(
    path: str | Path,
    kind: str,
    command: str,
    *,
    also: tuple[str, ...] = (),
    existing: bool = False,
    flag: str = "directory",
    keep_lock: bool = True,
) -> Iterator[Path]:
    """`claim` the directory, then hold its lock (store/lock.py) for the block; yields the directory.

    keep_lock=False removes the lock file when the block ends (an export's folder keeps only the export).
    """
    given = claim(path, kind, also=also, existing=existing, flag=flag)
    with DirLock(given, command, KINDS.get(kind, "directory"), keep_file=keep_lock):
        yield given


# what `refed synthesize` leaves in every run dir, and nothing else writes
RUN_DIR_MARKERS = ("fingerprint.json", "journal.jsonl")
BATCH_STORES = ("batches", "judge_batches")  # a batch store's folder in the dir of the command that keeps it: its own
_SCAN_LIMIT = 20_000  # directories looked at below an output path before giving up the search for run dirs


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a synthesis run dir (its marker says so, or it holds what only `refed synthesize` writes; a
    batch store's journal, in `refed evaluate`'s folder as in a run dir, is its command's, not a run's)."""
    fingerprint, journal = RUN_DIR_MARKERS
    if kind_of(path) == "run" or (path / fingerprint).is_file():
        return True
    return (path / journal).is_file() and not (path.name in BATCH_STORES and kind_of(path.parent))


def refuse_folder(path: Path, what: str, holds: Callable[[Path], bool], shown: int = 4) -> None:
    """RunDirError saying `path` is not `what` and naming the directories in it `holds` finds (a user's `runs/`
    given for one of its runs); nothing when it holds none."""
    inside = [sub for sub in sorted(path.iterdir()) if sub.is_dir() and holds(sub)] if path.is_dir() else []
    if not inside:
        return
    names = ", ".join(str(sub) for sub in inside[:shown]) + (", ..." if len(inside) > shown else "")
    raise RunDirError(f"{path} is not {what}; it holds {counted(len(inside), 'run dir')}: {names}; give one of them")


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
