"""Waiting on a run's Ray workers while they start and load: each worker's answer taken on its own (a worker lost on
the way is the pool's to leave out, not the end of the run), a progress line every interval while the wait lasts, and
what the cluster reports as the one line a user can act on."""

from __future__ import annotations

import re
import time
from typing import Any, NoReturn

from refed_dspy.engine.progress import Heartbeat, rough_duration
from refed_dspy.errors import ConfigError, KeyProviderError, MissingKeyError, RunAborted
from refed_dspy.secrets import first_line

START_TIMEOUT_S = 300.0  # a cluster that cannot place the workers in this long will not


class Waiting:
    """What the pool waits on (connecting, starting, loading) and how far it got, said every `every_s` seconds on the
    progress stream while it waits (None: progress is off, nothing said): 'ray: 1 of 2 workers loaded (their LMs,
    their caches), waiting 1m'."""

    def __init__(self, workers: int, every_s: float | None):
        self.workers, self.every_s = workers, every_s
        self.began = time.monotonic()
        self.doing, self.done, self.lost = "connecting", 0, 0
        self._beat: Heartbeat | None = None

    def now(self, doing: str) -> None:
        """From here on the wait is for `doing` ('started', 'loaded (...)'), counted from none done."""
        self.doing, self.done = doing, 0

    def line(self) -> str:
        waited = rough_duration(time.monotonic() - self.began)
        if self.doing == "connecting":
            return f"connecting to Ray to start {self.workers} workers, waiting {waited}"
        lost = f", {self.lost} lost" if self.lost else ""
        return f"{self.done} of {self.workers} workers {self.doing}{lost}, waiting {waited}"

    def waited(self) -> str:
        return rough_duration(time.monotonic() - self.began)

    def __enter__(self) -> Waiting:
        if self.every_s is not None:
            self._beat = Heartbeat("ray", self.line, self.every_s).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._beat is not None:
            self._beat.stop()


def answers(ray: Any, refs: list, doing: str, waiting: Waiting | None = None) -> list[Any]:
    """Each ref's value as it comes, in the order of `refs`; in place of a value, the RayActorError of a worker lost
    before it answered (its process died, its node went). Anything else stops the wait as `raise_for` says; so does
    START_TIMEOUT_S passing with a worker still unanswered."""
    out: list[Any] = [None] * len(refs)
    pending = {ref: i for i, ref in enumerate(refs)}
    deadline = time.monotonic() + START_TIMEOUT_S
    while pending:
        left = deadline - time.monotonic()
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, left))
        if not ready:
            _timed_out(doing)
        for ref in ready:
            i = pending.pop(ref)
            try:
                out[i] = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                if err.actor_init_failed:  # it never ran: the same for every worker, not a loss
                    raise_for(ray, err, doing)
                out[i] = err
                if waiting is not None:
                    waiting.lost += 1
                continue
            except ray.exceptions.RayError as err:
                raise_for(ray, err, doing)
            if waiting is not None:
                waiting.done += 1
    return out


def get(ray: Any, refs: list, doing: str) -> list:
    """ray.get, with what the cluster reports as `raise_for` says (a worker lost is an error here)."""
    try:
        return ray.get(refs, timeout=START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        _timed_out(doing)
    except ray.exceptions.RayError as err:
        raise_for(ray, err, doing)


def _timed_out(doing: str) -> NoReturn:
    raise ConfigError(
        f"the Ray cluster could not {doing} in {START_TIMEOUT_S:.0f} s: does it have a CPU free for each of "
        "ray.workers?"
    ) from None


def raise_for(ray: Any, err: BaseException, doing: str) -> NoReturn:
    """A worker's own error (a key it lacks, a program it cannot load) as the one line it is; what the cluster cannot
    give the workers as asked (ray.workers, the runtime_env) as the config's; anything else as the cluster's state
    (RunAborted, exit 3: nothing was paid)."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None)
        if isinstance(cause, ConfigError | MissingKeyError | KeyProviderError):
            raise type(cause)(str(cause)) from None
        raise ConfigError(f"the Ray cluster could not {doing}: {first_line(cause or err)}") from None
    if isinstance(err, ray.exceptions.ActorUnschedulableError | ray.exceptions.RuntimeEnvSetupError):
        raise ConfigError(f"the Ray cluster could not {doing}: {first_line(err)}") from None
    raise RunAborted(
        f"the Ray cluster could not {doing}: {first_line(err)} (`ray status` and the cluster's logs say why; "
        "nothing was paid: run the same command again once the cluster is well)"
    ) from None


def where_lost(err: BaseException) -> tuple[str, int]:
    """The node (its address) and process id Ray names in the error of an actor that died, '?' and 0 when it names
    none: what is known of a worker lost before it said where it runs."""
    text = str(err)
    ip, pid = re.search(r"\bip: ?(\S+)", text), re.search(r"\bpid: ?(\d+)", text)
    return (ip.group(1) if ip else "?"), (int(pid.group(1)) if pid else 0)
