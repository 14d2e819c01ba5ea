"""Which program an optimization keeps, and the reason it can name when that is the one it started from."""

from __future__ import annotations

from typing import Any

import dspy

SMALL_VALSET = 10  # validation examples below which a score's difference says little (each example moves it 1/n)


def kept_reason(
    unchanged: bool,
    before: float,
    after: float,
    threshold: float | None,
    traces: dict[str, int],
    n_val: int,
    more_val: str = "raise optimize.n_val",
) -> str | None:
    """Why the starting program is the result (None: the compiled one is). `unchanged`: the optimizer gave back the
    program it was given; `before` / `after`: the two programs' validation scores; `threshold` and `traces` (scored,
    passed): what bootstrapping demos met; `more_val`: how to get more validation examples."""
    if unchanged:
        scored, passed = traces.get("scored", 0), traces.get("passed", 0)
        if scored and not passed and threshold is not None:
            why = (
                f"no bootstrapped trace passed the threshold: 0 of {scored} scored {threshold:.4f} or more "
                "(optimize.threshold; unset, it is the starting program's mean on validation), so no demo was added"
            )
        else:
            why = "the optimizer gave back the program it was given"
    elif after < before:
        why = f"the compiled program scored {after:.4f} on validation, below the starting program's {before:.4f}"
    else:
        return None
    if n_val < SMALL_VALSET:
        why += f" ({n_val} validation examples: too few to tell programs apart; {more_val})"
    return why


def kept_line(extra: dict[str, Any]) -> str | None:
    """The one line a command prints when the starting program was kept (None when the compiled one was)."""
    if extra.get("kept") != "baseline":
        return None
    line = f"kept the starting program: {extra.get('kept_reason') or 'the optimizer changed nothing'}"
    if extra.get("candidate_program"):
        line += f"; the compiled one is in {extra['candidate_program']}"
    return line


def same_prompts(a: dspy.Module, b: dspy.Module) -> bool:
    """Whether two programs ask their LMs the same things: of one class, neither with a forward of its own (DSPy's
    KNNFewShot returns the program with a new forward and its predictors as they were), and the same predictors
    with the same signatures (instructions, fields) and demos."""
    if type(a) is not type(b) or "forward" in vars(a) or "forward" in vars(b):
        return False
    return [(n, p.dump_state()) for n, p in a.named_predictors()] == [
        (n, p.dump_state()) for n, p in b.named_predictors()
    ]


def given_back(
    result: dict[str, Any], start: dspy.Module, n_val: int, more_val: str
) -> tuple[dict[str, Any], bool, str | None]:
    """A compile's `result` (see refed_dspy.optimizers.compile.optimize), whether the optimizer gave back the program
    it was given (then `start` is the result, as it scored), and why the starting program is the result (None: the
    compiled one is); `n_val` and `more_val` as kept_reason takes them."""
    unchanged = same_prompts(result["program"], start)
    why_kept = kept_reason(
        unchanged,
        result["score_before"],
        result["score_after"],
        result["threshold"],
        result["traces"],
        n_val,
        more_val,
    )
    if unchanged:  # the optimizer gave back what it was given (GEPA may): that program, as it scored
        unchanged_rows = {"after_rows": result["before_rows"], "score_after": result["score_before"]}
        result = {**result, "program": start, **unchanged_rows}
    return result, unchanged, why_kept
