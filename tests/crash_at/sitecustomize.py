"""Loaded at interpreter start-up when this folder is on PYTHONPATH: with REFED_CRASH_AT=<checkpoint>[@<stage>][:<nth>],
the process kills itself with SIGKILL the nth time the batch broker passes that checkpoint (with a batch of that stage,
when one is named: feedback, synthesize, generate, improve, judge...) (refed_dspy.engine.batch), as a crash or
`kill -9` would. The kill tests of batch mode start `refed` this way."""

import os
import signal

_WANT = os.environ.get("REFED_CRASH_AT")

if _WANT:
    import refed_dspy.engine.batch as _batch

    _where, _, _nth = _WANT.partition(":")
    _point, _, _stage = _where.partition("@")
    if _point not in _batch.CHECKPOINTS:
        raise SystemExit(f"REFED_CRASH_AT={_WANT}: not a checkpoint ({', '.join(_batch.CHECKPOINTS)})")
    _seen = {"n": 0}

    def _crash_at(name: str, stage: str = "") -> None:
        if name == _point and (not _stage or stage == _stage):
            _seen["n"] += 1
            if _seen["n"] >= int(_nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)

    _batch.checkpoint = _crash_at
