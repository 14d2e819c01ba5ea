"""What `refed status` prints of a RunStatus: a few lines a person reads."""

from __future__ import annotations

from refed_dspy.launch.batch.store import batch_lines
from refed_dspy.ledger.usage import usd, usd_up_to
from refed_dspy.view.status.run import Holder, JudgeStatus, RunStatus

NEXT = {
    "stopped": "run the same command to resume",
    "failed": "aborted by the provider or a streak of failures (its summary says why); run the same command to resume",
    "submitted": "its batches wait at the provider; run the same command to collect them and go on",
    "exhausted": "finished short: the seeds ran out before its size",
    "budget": "finished short: a budget stopped it (raise it and run the same command to go on)",
    "partial": "finished short: some samples have no judgment",
}


def holder_text(who: Holder) -> str:
    """'PID 123 on host h (refed synthesize, since ...)'."""
    text = f"PID {who.pid}" + (f" on host {who.host}" if who.host else "")
    details = [d for d in (who.command, f"since {who.started}" if who.started else None) if d]
    return text + (f" ({', '.join(details)})" if details else "")


def _state_line(s: RunStatus) -> str:
    if s.holder is not None:
        return f"state: running: {holder_text(s.holder)}"
    line = f"state: {s.state}"
    if s.summary_status and s.summary_status != s.state:
        line += f" (summary status {s.summary_status})"
    if s.kind == "synthesis" and s.summary_status is None and s.state == "stopped":
        line += " (no summary.json: stopped or killed before it wrote one)"
    return line + (f"; {NEXT[s.state]}" if s.state in NEXT else "")


def _judge_line(j: JudgeStatus) -> str:
    parts = [j.state, f"{j.judged}/{j.samples if j.samples is not None else '?'} judged"]
    if j.mean_score is not None:
        parts.append(f"mean score {j.mean_score:.2f}")
    if j.improvement_win_rate is not None:
        parts.append(f"improvement win rate {j.improvement_win_rate:.2f}")
    if j.rejects:
        parts.append("unjudged: " + ", ".join(f"{n} {reason}" for reason, n in sorted(j.rejects.items())))
    if j.calls is not None:
        parts.append(f"{j.calls} paid calls, {usd(j.cost_usd)}")
    return "judge: " + ", ".join(parts)


def _ray_line(ray: dict, running: bool, what: str = "Ray workers") -> str:
    workers = ray.get("workers") or []
    alive = [w for w in workers if w.get("alive")]
    where = ", ".join(f"{w.get('node')} pid {w.get('pid')} ({w.get('tasks', 0)} tasks)" for w in alive) or "none"
    lost = len(workers) - len(alive)
    head = f"{what} active" if running else f"{what} at the end"
    return f"{head}: {len(alive)} of {len(workers)} ({ray.get('address', '?')}): {where}" + (
        f"; {lost} lost" if lost else ""
    )


def format_status(s: RunStatus) -> str:
    """The human text of `refed status`."""
    what = [x for x in (s.method, f"teacher {s.teacher}" if s.teacher else None, s.mode) if x]
    out = [f"{s.run_dir}: {s.kind}" + (f" ({', '.join(what)})" if what else ""), _state_line(s)]
    if s.source_run:
        out.append(f"filtered from {s.source_run}")
    out.append(f"samples: {s.samples}" + (f"/{s.size}" if s.size is not None else ""))
    stages = ", ".join(f"{stage} {n}" for stage, n in sorted(s.rejects_by_stage.items()))
    out.append(f"rejects: {s.rejects}" + (f" ({stages})" if stages else ""))
    if s.calls is None:
        out.append("paid LM calls: none")
    else:
        cached = f" (+{s.cached_calls} answered from the run's cache)" if s.cached_calls else ""
        projected = (
            f", projected {usd(s.projected_cost_usd)} at {s.size} samples" if s.projected_cost_usd is not None else ""
        )
        lost = (
            f" ({s.lost_in_flight} of them in flight when an invocation was killed or in a batch still open, counted "
            "as paid)"
            if s.lost_in_flight
            else ""
        )
        cost = usd_up_to(s.cost_usd, (s.cost_up_to_usd or 0.0) - (s.cost_usd or 0.0) if s.cost_up_to_usd else None)
        out.append(f"paid LM calls: {s.calls}{cached}{lost}, {cost}{projected}")
    for stage, counts in (s.batches or {}).items():
        first, *table = batch_lines(counts)
        out.append(f"{stage} batches: {first}")
        out.extend(table)
    if s.judge is not None:
        out.append(_judge_line(s.judge))
        if s.judge.ray:
            out.append(_ray_line(s.judge.ray, running=s.judge.state == "running", what="judge's Ray workers"))
    if s.ray:
        out.append(_ray_line(s.ray, running=s.state == "running"))
    for run in s.runs or []:
        out.append(
            f"  {run.run_dir}: {run.state}, {run.samples}/{run.size}, {run.rejects} rejects, {usd(run.cost_usd)}"
        )
    return "\n".join(out)
