"""An experiment's leaderboard as text: the table's rows, why cells did not finish, the synthesis check's lines and
experiment.md. Pure functions of an ExperimentResult."""

from __future__ import annotations

from typing import Any

from refed_dspy.experiments.result import ExperimentResult
from refed_dspy.experiments.stats import significantly_better, significantly_worse
from refed_dspy.ledger.usage import usd_up_to


def _verdict(d: dict[str, Any]) -> str:
    """Whether a difference is significant, and on which side: a cell that is significantly worse is not a winner."""
    if not d:
        return ""
    return "yes, better" if significantly_better(d) else "yes, worse" if significantly_worse(d) else "no"


def _num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def leaderboard_rows(result: ExperimentResult) -> list[list[str]]:
    """The leaderboard as text cells: one row per cell, then one per baseline."""
    rows = []
    for r in result.cells:
        d = r.get("difference") or {}
        interval = f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" if d else "n/a"
        if d and r.get("kept") == "baseline":  # the baseline's own answers (one cache): a difference of 0 by design
            interval = "kept baseline"
        opt, ev = r.get("optimize_usage") or {}, r.get("eval_usage") or {}
        rows.append(
            [
                r["label"] if r.get("status") == "done" else f"{r['label']} ({r.get('status')}, see below)",
                _score_text(r),
                interval,
                _verdict(d),
                f"{_num(r.get('val_before'))} -> {_num(r.get('val_after'))}",
                _by_role(opt),
                _cost(opt) if opt else "n/a",
                _by_role(ev),
                _cost(ev) if ev else "n/a",
                f"{r.get('wall_s', 0):.0f}",
            ]
        )
    for b in result.baselines:
        ev = b.get("eval_usage") or b.get("usage") or {}
        rows.append(
            [
                f"baseline ({b['target']}, {b['teacher']})",
                _score_text(b),
                "",
                "",
                "",
                "",
                "",
                _by_role(ev),
                _cost(ev),
                f"{b.get('wall_s', 0):.0f}",
            ]
        )
    return rows


def unfinished_lines(result: ExperimentResult) -> list[str]:
    """Why each cell that did not finish stopped, one line each: said below the table, so that an error's length does
    not widen the table's first column. A cell its own optimize limit stopped says that the limit is its own."""
    out = []
    for r in result.cells:
        if r.get("status") == "done":
            continue
        line = f"- {r['label']}: {r.get('status')}: {r.get('error') or 'no detail'}"
        if r.get("stopped_by"):
            line += (
                f" [the cell's own {r['stopped_by']} stopped it, not the experiment's budget: raise it and run the "
                "same command (what the cell paid is in its cache)]"
            )
        out.append(line)
    return out


def kept_lines(result: ExperimentResult) -> list[str]:
    """Why each finished cell kept its baseline, one line each (said below the table, as unfinished_lines are)."""
    return [
        f"- {r['label']}: kept baseline: {r.get('kept_reason') or 'the optimizer changed nothing'}"
        for r in result.cells
        if r.get("status") == "done" and r.get("kept") == "baseline"
    ]


def _score_text(row: dict[str, Any]) -> str:
    """A test score, with how many of its examples the program or the judge failed on (each scored 0)."""
    text, n = _num(row.get("test_mean")), row.get("test_n") or row.get("n")
    failed = [(row.get("program_failures"), "program"), (row.get("judge_failures"), "judge")]
    notes = [f"{who} failed on {k} of {n}" if n else f"{who} failed on {k}" for k, who in failed if k]
    return f"{text} ({'; '.join(notes)})" if notes else text


HEADER = [
    "cell",
    "test score (0-1)",
    "vs baseline [CI]",
    "significant",
    "val before -> after",
    "optimize calls",
    "optimize cost",
    "test calls",
    "test cost",
    "wall s",
]


def _cost(usage: dict[str, Any]) -> str:
    """What `usage` cost, and up to what when some of its calls are of unknown tokens (cut off, lost in flight)."""
    return usd_up_to(usage.get("cost_usd"), usage.get("interrupted_cost_usd"))


def _by_role(usage: dict[str, Any]) -> str:
    """Calls by role ("judge 12, teacher 8"), with any calls of no known role as "other"; the total when none is."""
    roles = {r: int(v.get("calls") or 0) for r, v in (usage.get("by_role") or {}).items()}
    other = int(usage.get("calls") or 0) - sum(roles.values())
    if not roles:
        return str(usage.get("calls", 0))
    return ", ".join([f"{r} {n}" for r, n in roles.items()] + ([f"other {other}"] if other > 0 else []))


def experiment_markdown(result: ExperimentResult) -> str:
    """experiment.md: what was compared, how, and the leaderboard."""
    lines = [
        f"# Experiment {result.name}",
        "",
        f"References: {result.split['train']} train, {result.split['val']} validation, {result.split['test']} test "
        f"(held out from every optimizer); examples: {result.examples['train']} / {result.examples['val']} / "
        f"{result.examples['test']}.",
        f"Intervals: paired bootstrap, {result.level:.0%} simultaneous over {len(result.cells)} cells "
        f"({result.cell_level:.4f} each). The test set detects differences of {result.detectable:.3f} or more "
        f"with 80% power" + (" (underpowered for experiment.min_effect)." if result.underpowered else "."),
        f"Champion: {result.champion or 'none (no cell beat its baseline significantly)'}. "
        f"Total: {result.usage['calls']} LM calls, {_cost(result.usage)}.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in leaderboard_rows(result)]
    kept = kept_lines(result)
    if kept:
        lines += ["", "## Cells that kept their baseline", "", *kept]
    unfinished = unfinished_lines(result)
    if unfinished:
        lines += ["", "## Cells that did not finish", "", *unfinished]
    checks = synthesis_lines(result)
    if checks:
        lines += ["", "## Synthesis check", "", *checks]
    return "\n".join(lines) + "\n"


def synthesis_lines(result: ExperimentResult) -> list[str]:
    """With `synthesize = N`: each program's synthesis run on the test references, judged (1-10), against its
    baseline's (two groups of samples, each resampled on its own)."""
    out = []
    for b in result.baselines:
        syn = b.get("synthesis")
        if syn:
            out.append(
                f"- baseline ({b['target']}, {b['teacher']}): judged mean {_num(syn['mean'], 3)} (1-10, {syn['samples']} samples)"
            )
    for r in result.cells:
        syn, d = r.get("synthesis"), r.get("synthesis_difference")
        if syn and d:
            out.append(
                f"- {r['label']}: judged mean {_num(syn['mean'], 3)} (1-10, {syn['samples']} samples), {d['mean']:+.3f} "
                f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] against the baseline's samples, "
                + (
                    "significantly better"
                    if significantly_better(d)
                    else "significantly worse"
                    if significantly_worse(d)
                    else "not significant"
                )
            )
    return out
