"""The processes of a local Ray a command started, written down in its directory, so that the next command there ends
what a driver killed with -9 left behind (Ray's dashboard and runtime-env agents outlive it).

Each process is known by its id, its start time and its command name, so that an id the system has since given to
another process is never signalled; nothing here runs `ray stop`, which would end every Ray cluster on the machine,
other people's included. Entries of a driver that still runs are left alone. It reads /proc: on a system without it
nothing is written down and nothing ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from refed_dspy.store.jsonl import write_json_atomic

log = logging.getLogger(__name__)

FILE = "ray_processes.json"
_PROC = Path("/proc")
TERM_GRACE_S = 5.0  # what a process gets to end after SIGTERM before SIGKILL


@dataclass(frozen=True)
class Process:
    """One process as /proc shows it: its id, its start (clock ticks after boot) and its command name."""

    pid: int
    started: int
    command: str


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent id, start time, state) of a process, or None when it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command in parentheses may hold spaces
    return int(fields[1]), int(fields[19]), fields[0]


def _process(pid: int) -> Process | None:
    """The process `pid` while it runs (a zombie has ended: its parent has not read its exit yet)."""
    stat = _stat(pid)
    if stat is None or stat[2] in ("Z", "X"):
        return None
    try:
        command = (_PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return None
    return Process(pid, stat[1], command)


def _running(recorded: Process) -> bool:
    """`recorded` still runs: the same id, the same start time and the same command (not an id given again)."""
    return _process(recorded.pid) == recorded


def _boot() -> str:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _argv(pid: int) -> list[str]:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def ray_processes_of(root: int, ray_dir: str) -> list[Process]:
    """The running descendants of `root` that are Ray's: a program or script under Ray's package (`ray_dir`: raylet,
    gcs_server, the log monitor, the agents' scripts) or a process Ray named `ray::...` (its workers and agents)."""
    prefix = ray_dir.rstrip("/") + "/"
    out = []
    for pid in _descendants(root):
        argv = _argv(pid)
        ours = any(a.startswith(prefix) for a in argv[:2]) or (argv and argv[0].startswith("ray::"))
        if ours and (found := _process(pid)) is not None:
            out.append(found)
    return out


def _read(path: Path) -> list[dict]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def _processes(entry: dict, key: str) -> list[Process]:
    rows = entry.get(key) or []
    rows = [rows] if isinstance(rows, dict) else rows
    try:
        return [Process(int(r["pid"]), int(r["started"]), str(r["command"])) for r in rows]
    except (KeyError, TypeError, ValueError):
        return []


def record(directory: Path, ray_dir: str) -> int:
    """Write down, in `directory`, this process (the driver) and the Ray processes it started (see
    `ray_processes_of`); entries of other drivers are kept. Returns how many were written down."""
    me = _process(os.getpid())
    if me is None or not _PROC.is_dir():
        return 0
    processes = ray_processes_of(me.pid, ray_dir)
    path = directory / FILE
    entries = [e for e in _read(path) if _processes(e, "driver") != [me]]
    entries.append({"boot": _boot(), "driver": asdict(me), "processes": [asdict(p) for p in processes]})
    try:
        write_json_atomic(path, entries)
    except OSError as err:  # the run goes on: only a later clean-up after a kill is lost
        log.warning("warning: cannot write %s: %s", path, err.strerror or err)
    return len(processes)


def forget(directory: Path) -> None:
    """Remove this driver's entry from `directory` (its local Ray ended with it)."""
    path = directory / FILE
    if not path.exists():
        return
    me = _process(os.getpid())
    entries = [e for e in _read(path) if _processes(e, "driver") != [me]]
    with contextlib.suppress(OSError):
        if entries:
            write_json_atomic(path, entries)
        else:
            path.unlink()


def end_left_behind(directory: Path) -> int:
    """End the Ray processes written down in `directory` by drivers that no longer run, those still running as the
    same processes; one line says how many. Entries of a driver still running stay. Returns how many were ended."""
    path = directory / FILE
    entries = _read(path)
    if not entries:
        return 0
    boot, keep, left = _boot(), [], []
    for entry in entries:
        if entry.get("boot") != boot:
            continue  # the machine started again since: they are all gone
        if any(_running(d) for d in _processes(entry, "driver")):
            keep.append(entry)
            continue
        left.extend(p for p in _processes(entry, "processes") if _running(p))
    ended = _end(left)
    with contextlib.suppress(OSError):
        if keep:
            write_json_atomic(path, keep)
        else:
            path.unlink()
    if ended:
        names = sorted({p.command for p in ended})
        log.info(
            "ended %d Ray process%s that a killed run left behind in %s (%s)",
            len(ended),
            "" if len(ended) == 1 else "es",
            directory,
            ", ".join(names),
        )
    return len(ended)


def _signal(processes: list[Process], signum: int) -> None:
    for p in processes:
        if _running(p):  # checked right before: an id is never signalled once it names another process
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p.pid, signum)


def _wait(processes: list[Process], seconds: float) -> list[Process]:
    deadline = time.monotonic() + seconds
    alive = [p for p in processes if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _running(p)]
    return alive


def _end(processes: list[Process]) -> list[Process]:
    """SIGTERM, then SIGKILL for those still running after TERM_GRACE_S; returns those that ended."""
    if not processes:
        return []
    _signal(processes, signal.SIGTERM)
    stubborn = _wait(processes, TERM_GRACE_S)
    _signal(stubborn, signal.SIGKILL)
    still = _wait(stubborn, 2.0)
    for p in still:
        log.warning("warning: cannot end the Ray process %s (%s) a killed run left behind", p.pid, p.command)
    return [p for p in processes if p not in still]
