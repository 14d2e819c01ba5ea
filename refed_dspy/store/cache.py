"""A run's own DSPy disk cache: every paid answer is kept in the run dir, so a resumed run never pays twice.

Work made of several run dirs (an optimization and the synthesis of its examples; an experiment's examples, baselines,
cells and synthesis checks) shares one cache (`shared_cache`): a request any part has paid for is answered from it in
every other part, and on a resume.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dspy
from dspy.clients.cache import Cache

from refed_dspy.errors import write_error
from refed_dspy.secrets import mask_value
from refed_dspy.store.rundir import RunDir

log = logging.getLogger(__name__)


_shared: contextvars.ContextVar[Path | None] = contextvars.ContextVar("refed_shared_cache", default=None)


def use_run_cache(rundir: RunDir, earlier: Sequence[Path] = ()) -> Path:
    """Point DSPy's disk cache at the run's own directory, or at the cache its caller shares (`shared_cache`), and
    return it. The cache key ignores api_base: a shared cache must hold the answers of one set of endpoints.
    `earlier`: the caches of work this run builds on (the optimization whose program it runs), read where the run's
    own has no answer (no answer is put there); an answer found there is copied into the run's own and not paid
    again."""
    path = _shared.get() or rundir.cache
    _use(path)
    dspy.cache.earlier = tuple(_reader(p) for p in earlier if Path(p) != path and any(Path(p).glob("*/cache.db")))
    return path


def _reader(path: Path) -> Cache:
    """A cache another run wrote, opened to read its answers."""
    return Cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(path))


@contextlib.contextmanager
def shared_cache(path: str | Path) -> Iterator[Path]:
    """Within the block, every run dir's cache is `path` (DSPy's cache is pointed there now and by every
    `use_run_cache`). Inside the block of an outer caller (an optimization that is an experiment's cell), the outer
    cache stays the one: the outermost work decides."""
    path = _shared.get() or Path(path)
    token = _shared.set(path)
    try:
        _use(path)
        yield path
    finally:
        _shared.reset(token)


# what a request carries that does not change its answer: how the client reaches the provider, how long it waits, and
# the service tier that serves it (the same model answers: a flex request sent again on the default tier, or a run
# resumed on another tier, finds what was paid for)
_CLIENT_KEYS = ["timeout", "num_retries", "max_retries", "api_version", "service_tier"]


def _same_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request as the provider sees it: DSPy keys a sync and an async call of the same request apart
    (`litellm_completion` / `alitellm_completion`), so a reply the synthesis engine paid for (async) was bought again
    when an optimizer scored the same prompt (sync)."""
    name = request.get("_fn_identifier")
    if not isinstance(name, str):
        return request
    if name.endswith(".async"):
        name = name[: -len(".async")]
    head, _, last = name.rpartition(".")
    if last.startswith("a") and last[1:].startswith(("litellm_", "lm15_")):
        name = f"{head}.{last[1:]}"
    return {**request, "_fn_identifier": name}


def _no_reply(record: Any) -> bool:
    """A stored call that carries no text and no token usage: a server of another format answered (the endpoint check
    stops the run on it). Kept, it would be replayed for the same request after the config was fixed (the cache key
    leaves out api_base), and fail again without a call."""
    if not isinstance(record, dict) or "_dspy_format" not in record:
        return False
    if any(v for v in (record.get("usage") or {}).values() if isinstance(v, (int, float))):
        return False
    texts = [
        o if isinstance(o, str) else (o or {}).get("text") or (o or {}).get("tool_calls")
        for o in record.get("outputs") or []
    ]
    return not any(texts)


class RunCache(Cache):
    """DSPy's cache, keyed by the request as the provider sees it: the same request made synchronously or
    asynchronously, or by LMs that differ only in client settings (timeout, retries), is one entry. Every answer is
    stored with the keys the process holds masked (refed_dspy.secrets.mask_value).

    A request this cache has no answer for is looked up in the caches of work the run builds on (`earlier`, set by
    use_run_cache)."""

    earlier: tuple[Cache, ...] = ()
    opened: tuple[int, int] | None = None  # the folder it was opened in, as (device, inode)

    def cache_key(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> str:
        ignored = [*(ignored_args_for_cache_key or []), *_CLIENT_KEYS]
        return super().cache_key(_same_request(request), ignored)

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        """The answer stored for `request`, else the one a cache of earlier work holds (`earlier`), else None."""
        found = super().get(request, ignored_args_for_cache_key)
        return found if found is not None else self._from_earlier(request, ignored_args_for_cache_key)

    def _from_earlier(self, request: dict[str, Any], ignored: list[str] | None) -> Any:
        """The answer a cache of earlier work holds for `request`, copied into this one (None: none holds it)."""
        if not self.earlier:
            return None
        try:
            key = self.cache_key(request, ignored)
        except Exception:  # noqa: BLE001 - a request DSPy cannot key is not cached
            return None
        for other in self.earlier:
            try:
                value = other.disk_cache.get(key)
            except Exception:  # noqa: BLE001 - an earlier cache that cannot be read answers nothing
                continue
            if value is not None:
                self.disk_cache.set(key, value)
                return self._prepare_cached_response(value)
        return None

    def put(
        self,
        request: dict[str, Any],
        value: Any,
        ignored_args_for_cache_key: list[str] | None = None,
        enable_memory_cache: bool = True,
    ) -> None:
        if not _no_reply(value):  # stored masked: a gateway that echoes the request's key leaves it in no shard
            super().put(request, mask_value(value), ignored_args_for_cache_key, enable_memory_cache)


def use_cache_dir(path: str | Path) -> None:
    """Point DSPy's disk cache at `path` (a Ray worker's cache: the run's own where the worker sees the driver's
    disk, else one on its node)."""
    _use(Path(path))


def _use(path: Path) -> None:
    try:
        _open(path)
    except OSError as err:
        raise write_error(f"the cache {path}", err) from None
    except sqlite3.OperationalError as err:  # SQLite's own word for ENOSPC, from the cache's first write
        if "full" not in str(err):
            raise
        raise write_error(f"the cache {path}", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None


def _folder_id(path: Path) -> tuple[int, int]:
    found = path.stat()
    return found.st_dev, found.st_ino


def _open(path: Path) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    path.mkdir(parents=True, exist_ok=True)
    disk = getattr(dspy.cache, "disk_cache", None)
    current = getattr(disk, "directory", None)
    if isinstance(dspy.cache, RunCache) and current is not None and Path(current) == path:
        if dspy.cache.opened == _folder_id(path) and any(path.glob("*/cache.db")):
            return  # already there: the open cache keeps its connections
        # its files deleted under it, or another folder under its name (a run dir wiped, or what --fresh set aside
        # put back, in this process): its connections write into deleted files, so it is opened afresh
        with contextlib.suppress(Exception):
            disk.close()
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(path))
    dspy.cache.__class__ = RunCache  # the same cache, keyed as the provider sees a request
    dspy.cache.opened = _folder_id(path)
    _bound_cache_memory(dspy.cache)


def _bound_cache_memory(cache) -> None:
    """Keep the disk cache's memory flat: diskcache maps up to 64 MiB of each of its 16 SQLite shards into
    memory and keeps a 32 MiB page cache per shard, so a long run's RSS grew with its cache file
    (bench/memory.py). Calls are read back only on a retry or a resume, so neither is worth memory."""
    disk = getattr(cache, "disk_cache", None)
    for shard in getattr(disk, "_shards", ()):
        try:
            shard.reset("sqlite_mmap_size", 0)
            shard.reset("sqlite_cache_size", 256)  # pages of 4 KiB: 1 MiB per shard
        except Exception as err:  # noqa: BLE001 - an unexpected cache type keeps its settings
            log.debug("cannot bound the disk cache's memory: %s", err)
            return
