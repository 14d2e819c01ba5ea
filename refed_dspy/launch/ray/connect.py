"""Ray itself: imported only here, when a run asks for it, and joined or started with errors a user can act on."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any

from refed_dspy.errors import ConfigError

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
