"""Loaded at interpreter start-up when this folder is on PYTHONPATH: with REFED_CRASH_AT=<checkpoint>[@<stage>][:<nth>],
the process kills itself with SIGKILL the nth time the run passes that checkpoint (with work, calls or a batch of that
stage, when one is named: feedback, unit, sample, judge for work; generate, improve, judge... for calls; feedback,
synthesize, generate, improve, judge... for batches), as a crash or `kill -9` would. The points are
refed_dspy.runtime.stops's: online, `answer_paid` (a call the provider answered is cached and settled) and
`before_record` (a piece of work is over, nothing of it written); in batch mode, the points of a batch's life. The kill
tests start `refed` this way."""

import os
import signal

_WANT = os.environ.get("REFED_CRASH_AT")

if _WANT:
    from refed_dspy.runtime import stops as _checkpoints

    _where, _, _nth = _WANT.partition(":")
    _point, _, _stage = _where.partition("@")
    if _point not in _checkpoints.CHECKPOINTS:
        raise SystemExit(f"REFED_CRASH_AT={_WANT}: not a checkpoint ({', '.join(_checkpoints.CHECKPOINTS)})")
    _seen = {"n": 0}

    def _crash_at(name: str, stage: str = "") -> None:
        if name == _point and (not _stage or stage == _stage):
            _seen["n"] += 1
            if _seen["n"] >= int(_nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)

    _checkpoints.HOOKS.append(_crash_at)
