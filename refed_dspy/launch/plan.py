"""An LM-bound command's launch: what it runs with, resolved once, and the one transport its parts run on.

In three steps, so that each mistake is said before what costs more:
1. `launch(...)`, before anything else is read: on Ray, what a run there cannot take (an LM object, batch mode, a key
   for another provider's host); here, the LM (the one handed in, behind the call boundary, or one built from the
   config) with its key checked, or in batch mode the provider's batch API and key.
2. `Launch.workers(...)`, once the inputs are read and before the run dir is touched: on Ray the workers started and
   checked (their keys on their own nodes), and the Ray processes a killed invocation left in the run dir ended.
3. `Launch.start(rundir)`, with the run dir held: its cache, then the stage's LM and batch broker, and the transport:
   the Ray workers loaded with the run's cache, or a LocalTransport.
`close()` (or leaving the `with` block) lets the workers go.

A command with no run dir (`refed judge meta-eval`: a few hundred labelled items, its results kept in memory) takes
step 1 with `here=True` and `Launch.start_here`: it runs online in this process, whatever [ray] and the section's mode
say, with the LM resolved as every other command's is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refed_dspy.cluster.connect import check_ray_run
from refed_dspy.cluster.leftovers import end_left_behind
from refed_dspy.cluster.pool import WorkerPool
from refed_dspy.cluster.start import start_pool
from refed_dspy.config import Config
from refed_dspy.config.lm import LMSpec
from refed_dspy.engine.modes import lm_before_run, lm_in_run
from refed_dspy.engine.transport import LocalTransport, Transport
from refed_dspy.store.cache import use_run_cache
from refed_dspy.store.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class Started:
    """What a stage runs with, once its run dir is held: its LM (None on Ray), its batch broker (batch mode) and its
    transport."""

    lm: Any
    broker: Any
    transport: Transport


class Launch:
    """The plan of one LM-bound command of `role` (teacher, judge) over `section` (synthesis, judging): see the module
    docstring. A context manager: the workers are let go when it is left."""

    def __init__(self, config: Config, role: str, spec: LMSpec, mode: str, lm: Any, here: bool = False):
        self.config, self.role, self.spec, self.mode, self.lm, self.here = config, role, spec, mode, lm, here
        self.pool: WorkerPool | None = None
        self.transport: Transport | None = None

    @property
    def on_ray(self) -> bool:
        return self.config.ray.enabled and not self.here

    def workers(self, parts: dict[str, Any], concurrency: int, run_dir: Path, show_progress: bool) -> None:
        """Before the run dir is touched: the Ray processes a killed invocation left in `run_dir` ended; on Ray the
        workers that run `parts` started and checked (`concurrency` calls in flight each)."""
        end_left_behind(run_dir)
        if not self.on_ray:
            return
        self.pool = start_pool(
            self.config.ray,
            self.spec,
            self.role,
            parts,
            concurrency=concurrency,
            prices=self.config.price_book,
            progress_every_s=self.config.run.progress_every_s if show_progress else None,
            run_dir=run_dir,
        )

    def start(
        self,
        rundir: RunDir,
        parts: dict[str, Any],
        note_path: Path,
        *,
        threads: int = 0,
        detach: bool = False,
        store_name: str = "batches",
    ) -> Started:
        """With the run dir held: its cache in use, then the stage's LM, broker and transport. `note_path`: where the
        workers are noted for `refed status`; `threads`: a LocalTransport's threads for parts with only `forward`."""
        cache = use_run_cache(rundir)
        if self.pool is not None:
            self.pool.load(str(cache))
            self.pool.note_to(note_path)
            return Started(None, None, self.pool)
        lm, broker = lm_in_run(
            self.spec,
            self.role,
            self.mode,
            self.lm,
            rundir.path,
            self.config.batch,
            detach=detach,
            store_name=store_name,
        )
        self.transport = LocalTransport(parts, threads, note_path)
        return Started(lm, broker, self.transport)

    def start_here(self, parts: dict[str, Any]) -> Started:
        """For a command with no run dir (`launch(..., here=True)`): the LM and a LocalTransport running `parts`."""
        self.transport = LocalTransport(parts)
        return Started(self.lm, None, self.transport)

    def close(self) -> None:
        """Let the transport go: its threads here, or the Ray workers."""
        for transport in (self.transport, self.pool):
            if transport is not None:
                transport.close()

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def launch(config: Config, role: str, section: str, lm: Any, build: Callable[[], Any], here: bool = False) -> Launch:
    """Step 1 (see the module docstring): `lm`, a user's LM or None (then `build()` makes one from the config);
    `here`: a command with no run dir, run online in this process (then `Launch.start_here`)."""
    spec: LMSpec = getattr(config, role)
    mode = "online" if here else getattr(config, section).mode
    note = spec.defaults_note(role) if lm is None else None
    if note:  # the model's own settings stand in for what the config leaves unset: said once, as the run starts
        log.info(note)
    if here:
        return Launch(config, role, spec, mode, lm_before_run(spec, role, mode, lm, build), here=True)
    if config.ray.enabled:
        check_ray_run(lm, spec, mode, role, config.ray.address, section)
        return Launch(config, role, spec, mode, None)
    return Launch(config, role, spec, mode, lm_before_run(spec, role, mode, lm, build))
