"""Ray itself: imported only here, when a run asks for it, and joined or started with errors a user can act on; and the
processes of a local Ray a command started, written down in its directory, so that the next command there ends
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
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refed_dspy.errors import ConfigError
from refed_dspy.store.jsonl import write_json_atomic

log = logging.getLogger(__name__)

EXTRA = "pip install 'refed-dspy[ray]'"
LOCAL_CPUS = 4  # logical CPUs of a local Ray: fewer deadlock small pools even on 2 cores


def import_ray() -> Any:
    """The `ray` module; ConfigError naming the extra when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"running on Ray needs the [ray] extra, which is not installed: {EXTRA}") from None
    return ray


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """A host:port address (a GCS, or ray://host:port) that takes no connection fails here in seconds, not after
    Ray's own minutes of retries."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # 'auto', 'local': Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {err.strerror or err} (ray.address, --ray ADDRESS)"
        ) from None


def refuse_on_ray(lm: Any, mode: str, role: str, section: str) -> None:
    """What a run on Ray cannot take, said before anything else: an LM object (each worker builds its own from the
    config: the object would carry its key to the cluster) and batch mode (its requests go from this machine to the
    provider's batch API). `section`: the config section of `mode` (synthesis, judging). The launch checks the key
    and calls `preflight` next."""
    if lm is not None:
        raise ConfigError(
            f"on Ray each worker builds the {role} from the config ([{role}]), with the key of its own node: leave "
            f"{role}= out (give its model and settings in [{role}]), or set ray.enabled = false"
        )
    if mode == "batch":
        raise ConfigError(
            "batch mode sends its requests from this machine to the provider's batch API: set "
            f'{section}.mode = "online" to run on Ray, or ray.enabled = false'
        )


def preflight(address: str | None) -> None:
    """What can be checked of Ray in a moment, before anything else of a run: the extra is installed, and a host:port
    address takes connections."""
    import_ray()
    if address is not None:
        _reachable(address)


def joins(address: str | None) -> str:
    """What `connect(address)` joins, for a line: the Ray this process is connected to already, the cluster at
    `address`, or a local Ray it starts."""
    if import_ray().is_initialized():
        return "the Ray this process is connected to"
    return f"the Ray cluster at {address}" if address else "a local Ray"


def connect(address: str | None, workers: int) -> tuple[Any, bool]:
    """Join the Ray cluster at `address` (what ray.init takes), or start a local one (None); a process already
    connected stays as it is. Returns (ray, whether this call started it). ConfigError for an address that cannot
    be reached."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    # a local Ray of ours needs no token (ray start --head turns one on for a cluster users start themselves)
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": False,
    }
    if address is None:
        kwargs["num_cpus"] = max(LOCAL_CPUS, workers + 1)
    else:
        _reachable(address)
    try:
        ray.init(address=address, **kwargs)
        _ray_notes_to_log(ray)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        where = address or "a local Ray"
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"cannot reach the Ray cluster at {where}: {text[:200]} (ray.address, --ray ADDRESS)"
        ) from None
    return ray, True


def disconnect(ray: Any) -> None:
    """Leave the cluster `connect` joined (and end the local Ray it started); Ray's notes print as they did before."""
    with contextlib.suppress(Exception):
        ray.shutdown()
    worker = _ray_worker_module(ray)
    original = getattr(getattr(worker, "print_to_stdstream", None), "refed_replaced", None)
    if original is not None:
        worker.print_to_stdstream = original


def _ray_worker_module(ray: Any) -> Any:
    return getattr(getattr(ray, "_private", None), "worker", None)


def _ray_notes_to_log(ray: Any) -> None:
    """What the cluster reports to the driver ('(raylet) A worker died or was killed ...', several lines) goes to this
    module's log at debug level (`--debug` shows it on stderr), never to stdout: Ray's driver prints those notes to
    sys.stdout from a thread of its own, log_to_driver or not, into the middle of a command's output. The pool says a
    lost worker in one line of its own. Undone by `disconnect`."""
    worker = _ray_worker_module(ray)
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or hasattr(printer, "refed_replaced"):
        if printer is None:  # another Ray than the range we test: its notes go where it prints them
            log.debug("cannot route Ray's own notes to the log: ray._private.worker.print_to_stdstream is gone")
        return

    def to_log(data: dict, *args: Any, **kwargs: Any) -> None:
        source = data.get("pid") or "ray"
        for line in data.get("lines") or ():
            log.debug("(%s) %s", source, line)

    to_log.refed_replaced = printer  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_log


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
