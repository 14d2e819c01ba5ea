"""The run's cache for workers that cannot open it: one Ray actor beside it answers their lookups and keeps their answers.

A worker on the node that holds the run dir opens the run's cache itself (DSPy's disk cache, SQLite). A worker on
another node must not: it does not see the driver's disk, and SQLite in WAL mode does not work over a network
filesystem. Its LM reads and writes the cache through `CacheServer`, an actor placed on the node whose disk holds it,
so every answer any worker paid for lands in the one cache (written before the worker goes on): a task run again after its worker was lost, or a run
resumed after the driver was killed, finds it there and pays nothing twice.

Where the driver is not a node of the cluster (a `ray://` client), no actor can reach its disk: the server keeps the
cache on the head node instead (`~/.cache/refed-dspy/ray/<run>/`), which a run resumed on Ray finds again.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from dspy.clients.cache import Cache

from refed_dspy.secrets import mask_value
from refed_dspy.store.cache import use_cache_dir

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 30.0  # a lookup the server does not answer in this long is a miss (the call is paid)


class CacheServer:
    """A Ray actor (threaded: lookups of many workers at once) holding one run's cache at `directory`."""

    def __init__(self, directory: str):
        path = Path(directory).expanduser()
        use_cache_dir(path)
        self.cache = dspy.cache
        self.directory = str(path)

    def where(self) -> str:
        """The cache directory it opened (the node is the one it was pinned to)."""
        return self.directory

    def get(self, request: dict[str, Any], ignored: list[str] | None) -> Any:
        return self.cache.get(request, ignored)

    def put(self, request: dict[str, Any], value: Any, ignored: list[str] | None) -> None:
        self.cache.put(request, value, ignored)


class RemoteRunCache(Cache):
    """DSPy's cache in a worker that reaches the run's cache through its CacheServer: a lookup asks the server (a miss
    when it does not answer), an answer is kept once the server has written it. DSPy makes both from a thread of its
    own, never on the worker's event loop. What the cache key leaves out (the key, the endpoint) is not sent: a key
    DSPy puts in a request (Azure's, through LiteLLM) never travels in a Ray object."""

    def __init__(self, server: Any, ray: Any):
        super().__init__(enable_disk_cache=False, enable_memory_cache=False, disk_cache_dir=None)
        self.server, self.ray = server, ray

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        ignored = ignored_args_for_cache_key
        try:
            return self.ray.get(self.server.get.remote(_sent(request, ignored), ignored), timeout=LOOKUP_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - the server lost or slow: the call is made (and paid) instead
            log.debug("run cache lookup failed: %s", err)
            return None

    def put(
        self,
        request: dict[str, Any],
        value: Any,
        ignored_args_for_cache_key: list[str] | None = None,
        enable_memory_cache: bool = True,
    ) -> None:
        ignored = ignored_args_for_cache_key
        try:
            # masked here, where the key is held (the server's process may not hold it)
            sent = mask_value(value)
            self.ray.get(self.server.put.remote(_sent(request, ignored), sent, ignored), timeout=LOOKUP_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - as a full disk is to DSPy's own cache: the answer is not kept
            log.debug("run cache write failed: %s", err)

    def __contains__(self, key: str) -> bool:
        return False


def _sent(request: dict[str, Any], ignored: list[str] | None) -> dict[str, Any]:
    """The request without what its cache key leaves out (the same key on the server)."""
    left_out = set(ignored or ())
    return {k: v for k, v in request.items() if k not in left_out}


@dataclass(frozen=True)
class CachePlan:
    """Where a run's workers find its cache: the server, its node and directory. A worker on that node that sees the
    directory opens it itself (`direct`); the others go through the server."""

    server: Any
    node_id: str
    directory: str
    client: bool  # the driver is a ray:// client: the directory is on the head node, not the driver's disk

    def direct(self, node_id: str, forced_server: bool) -> bool:
        return not forced_server and not self.client and node_id == self.node_id


def start_cache_server(ray: Any, run_cache: str | Path, client: bool) -> tuple[Any, str]:
    """The CacheServer of one run and the node it is pinned to: the driver's, with the run's own cache, or for a ray://
    client the head node, with a directory named for the driver's run dir. Its `where()` says when it is up."""
    if client:
        node = _head_node(ray)
        directory = f"~/.cache/refed-dspy/ray/{_run_key(run_cache)}"
    else:
        node = ray.get_runtime_context().get_node_id()
        directory = str(Path(run_cache).resolve())
    server = (
        ray.remote(CacheServer)
        .options(
            num_cpus=0,
            max_concurrency=16,
            max_restarts=-1,
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id=node, soft=False),
        )
        .remote(directory)
    )
    return server, node


def _head_node(ray: Any) -> str:
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return node["NodeID"]
    return ray.get_runtime_context().get_node_id()


def _run_key(run_cache: str | Path) -> str:
    """A directory name for one run dir of one client machine (its path alone could clash across machines)."""
    where = f"{socket.gethostname()}:{Path(run_cache).resolve()}"
    return f"{Path(run_cache).resolve().parent.name}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"
