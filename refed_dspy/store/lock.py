"""One writer per directory: an exclusive lock for the whole life of a command that writes there.

The lock is `fcntl.flock` on `DIR/.refed.lock`, which also names the holder (PID, command, start time).
The kernel drops it when the holder's process ends, however it ends, so a lock left by a dead process
is simply taken over; a live holder makes a second writer stop at once with one line naming it.
Readers (`refed report`, `refed export` of a run) never take it; they ask `holder()` to say that the
run is still being written.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from refed_dspy.errors import RunDirError

LOCK_NAME = ".refed.lock"


def _read(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}


class DirLock:
    """Exclusive lock on `path` (created if needed) for `command`; a context manager."""

    def __init__(self, path: str | Path, command: str, what: str = "directory"):
        self.path = Path(path)
        self.command, self.what = command, what
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunDirError(f"cannot write to {self.what} {self.path}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read(fd)
            os.close(fd)
            who = f"PID {info.get('pid', '?')}" + (
                f" ({info['command']}, since {info['started']})" if info.get("command") else ""
            )
            raise RunDirError(
                f"{self.path} is in use by {who}; wait for it to finish or stop it, then run this again"
            ) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(
            fd,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "command": self.command,
                    "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
            ).encode(),
        )
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking it would race a new holder)
            self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def holder(path: str | Path) -> dict[str, Any] | None:
    """Who holds the lock on `path` now ({pid, command, started}), or None when nobody does."""
    lock = Path(path) / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
