"""A run's own DSPy disk cache: every paid answer is kept in the run dir, so a resumed run never pays twice."""

from __future__ import annotations

import logging
import os

import dspy

from refed_dspy.store.rundir import RunDir

log = logging.getLogger(__name__)


def use_run_cache(rundir: RunDir) -> None:
    """Point DSPy's disk cache at the run's own directory (its key ignores api_base)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    rundir.cache.mkdir(parents=True, exist_ok=True)
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(rundir.cache))
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
