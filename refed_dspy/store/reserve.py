"""A run dir's reserve: 1 MiB set aside when a run starts, given back when the disk fills up.

A full disk stops a run, and the lines it must still write are the ones that say what was paid: the record whose
write failed, the calls cut off in flight, the summary. The reserve (`.refed-reserve`, zeros) is freed at the first
ENOSPC or EDQUOT, which leaves room for those lines; the next run of the same command sets it aside again.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

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
