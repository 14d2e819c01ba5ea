"""One writer per directory: an exclusive lock for the whole life of a command that writes there.

The lock is `fcntl.flock` on `DIR/.refed.lock`, which also names the holder (PID, host, command, start time).
The kernel drops it when the holder's process ends, however it ends, so a lock left by a dead process
is simply taken over; a live holder makes a second writer stop at once with one line naming it.
`refed report` takes it too (it writes report.html into the run dir). Readers that write elsewhere
(`refed export`, `refed filter` of a run) and `refed status` never take the run's; they ask `holder()` to say
that the run is still being written. `holder()` reads the kernel's table of locks (/proc/locks) and only
probes the lock itself when that cannot tell (no such table, a holder on another host, a live PID the table
does not show), so a reader polling a run never makes a writer starting at that moment find the lock taken.
A lock whose file must not outlive the command (an export's folder) is removed by its holder while it still
holds it; whoever then gets the lock of the removed file sees that the path names another file now, and locks
that one instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from refed_dspy.errors import RunDirError, write_error

LOCK_NAME = ".refed.lock"


def _read(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}


class DirLock:
    """Exclusive lock on `path` (created if needed) for `command`; a context manager.

    keep_file=False removes the lock file on release (while still holding the lock).
    """

    def __init__(self, path: str | Path, command: str, what: str = "directory", *, keep_file: bool = True):
        self.path = Path(path)
        self.command, self.what, self.keep_file = command, what, keep_file
        self._fd: int | None = None

    def _open_locked(self) -> int:
        """A descriptor of the lock file, locked: the file the path names now (a holder may remove it)."""
        while True:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise write_error(f"{self.what} {self.path}", err) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read(fd)
                os.close(fd)
                raise in_use(self.path, info) from None
            try:
                now = os.stat(self.path / LOCK_NAME)
            except FileNotFoundError:
                now = None
            held = os.fstat(fd)
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                return fd
            os.close(fd)  # its holder removed that file as it let go: lock the one the path names now

    def acquire(self) -> DirLock:
        fd = self._open_locked()
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(info).encode())
        except OSError as err:  # a full disk: let the lock go, and say it in one line
            os.close(fd)
            raise write_error(f"{self.what} {self.path}", err) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            if not self.keep_file:  # removed while held, so nobody can lock it in between (see _open_locked)
                (self.path / LOCK_NAME).unlink(missing_ok=True)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _in_lock_table(lock: Path) -> bool | None:
    """Whether the kernel's lock table lists an flock on `lock` (None: no table to read, or no such file)."""
    try:
        st = os.stat(lock)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            table = fh.read()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 5827 fe:00:2148782 0 EOF" (a waiter's line has "->" before its type)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return True
    return False


def _alive_here(info: dict[str, Any]) -> bool:
    """The lock file names a process of this host that is still running (or may be: a PID we may not signal)."""
    if info.get("host", socket.gethostname()) != socket.gethostname():
        return True  # another host's process: only the lock itself can say
    try:
        pid = int(info.get("pid"))
    except (TypeError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _probe(lock: Path) -> bool | None:
    """Whether someone holds the flock on `lock`, found by asking for a shared lock for an instant (None: no file)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_info(lock: Path) -> dict[str, Any] | None:
    """What the lock file says of its last holder ({} when unreadable; None when there is no lock file)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def in_use(path: str | Path, info: dict[str, Any]) -> RunDirError:
    """The one line that says `path` is held by the command `info` (what its lock file says of it) describes."""
    who = f"PID {info.get('pid', '?')}" + (
        f" ({info['command']}, since {info['started']})" if info.get("command") else ""
    )
    return RunDirError(f"{path} is in use by {who}; wait for it to finish or stop it, then run this again")


def refuse_if_held(path: str | Path) -> None:
    """RunDirError (`in_use`) when a command holds the lock on `path` now: asked before work that is slow to start
    (Ray's workers), which the lock taken after it would refuse all the same."""
    info = holder(path)
    if info is not None:
        raise in_use(path, info)


def holder(path: str | Path) -> dict[str, Any] | None:
    """Who holds the lock on `path` now ({pid, host, command, started}; {"pid": "?"} when the file does not say), or
    None when nobody does. Takes no lock when the kernel's lock table can tell (see the module docstring)."""
    lock = Path(path) / LOCK_NAME
    info = _read_info(lock)
    if info is None:
        return None
    held = _in_lock_table(lock)
    if not held and (held is None or _alive_here(info)):
        held = _probe(lock)
    return (info or {"pid": "?"}) if held else None
