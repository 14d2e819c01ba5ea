"""The summary of a synthesis run (summary.json, a RunSummary, returned by `synthesize`): its figures over every
invocation, counts read back from the run's files and usage from the stage's engine; the one-screen text of a finished
run; and why a run made fewer samples than it was asked for, in one phrase (its dominant reject reason and the setting
to change; an experiment's examples synthesis must not tell a user to raise a budget that did not bind).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.engine.failures import hint_for
from refed_dspy.engine.progress import duration, per_time
from refed_dspy.engine.window import rate_limit_line
from refed_dspy.ledger.usage import prompt_cache_share, tier_text, usd
from refed_dspy.store.jsonl import read_json, read_jsonl
from refed_dspy.store.records import mixed_line, teacher_rows
from refed_dspy.store.results import Optional, Result


@dataclass
class RunStats:
    """Figures of this invocation (the summary adds those of earlier invocations from the files)."""

    started: float = field(default_factory=time.monotonic)
    new_samples: int = 0
    rejects: Counter = field(default_factory=Counter)


def earlier_figures(summary_path: Path) -> tuple[float, int]:
    """Wall time and retries of earlier invocations, from the summary they left (0 when there is none)."""
    old = read_json(summary_path)
    try:
        wall = float(old.get("wall_s_total", old.get("wall_s", 0.0)))
    except (TypeError, ValueError):
        wall = 0.0
    try:
        retries = int((old.get("retries") or {}).get("total", 0))
    except (TypeError, ValueError, AttributeError):
        retries = 0
    return wall, retries


def estimate_error(
    path: Any, chash: str, usage: dict[str, Any], samples: int, size: int, batch: bool, tier: str = "default"
) -> dict[str, Any]:
    """{"estimate": ...}: what `refed estimate` said (its estimate.json in the run dir) and how far off the run is,
    in cost (at the price of the mode and of the service tier asked for) and calls, once the run has all its samples;
    {} without an estimate of this config (`chash`: its hash without its endpoints; an estimate that states none is
    taken as this config's) and size."""
    e = read_json(path)
    total = e.get("total") if isinstance(e, dict) else None
    if not isinstance(total, dict) or e.get("size") != size or e.get("config_hash") not in (None, chash):
        return {}
    key = "batch_cost_usd" if batch else "cost_usd" if tier == "default" else f"{tier}_cost_usd"
    out: dict[str, Any] = {
        "cost_usd": total.get(key),
        "calls": total.get("calls"),
        "cost_range_usd": [
            total.get(key.replace("cost_usd", "cost_low_usd")),
            total.get(key.replace("cost_usd", "cost_high_usd")),
        ],
    }
    if samples >= size:
        cost = usage.get("cost_usd")
        if cost is not None and out["cost_usd"]:
            out["cost_error"] = round((cost - out["cost_usd"]) / out["cost_usd"], 4)
        if out["calls"]:
            out["calls_error"] = round((usage["calls"] - out["calls"]) / out["calls"], 4)
    return {"estimate": out}


def reject_counts(rejects_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Reject records by reason and by stage."""
    by_reason: Counter = Counter()
    by_stage: Counter = Counter()
    for row in read_jsonl(rejects_path):
        by_reason[row.get("reason", "unknown")] += 1
        by_stage[row.get("stage", "unknown")] += 1
    return dict(by_reason), dict(by_stage)


def per_sample(usage: dict[str, Any], samples: int) -> dict[str, Any]:
    """Calls, tokens and cost per sample ({} before the first)."""
    if not samples:
        return {}
    return {
        "calls": round(usage["calls"] / samples, 3),
        "prompt_tokens": round(usage["prompt_tokens"] / samples, 1),
        "completion_tokens": round(usage["completion_tokens"] / samples, 1),
        "reasoning_tokens": round((usage.get("reasoning_tokens") or 0) / samples, 1),
        "cost_usd": round(usage["cost_usd"] / samples, 6) if usage["cost_usd"] is not None else None,
    }


def timing(stats: RunStats, earlier_wall_s: float) -> dict[str, Any]:
    """Wall time of this invocation and of all, samples per second, and when it finished."""
    wall = time.monotonic() - stats.started
    return {
        "wall_s": round(wall, 3),
        "wall_s_total": round(earlier_wall_s + wall, 3),
        "samples_per_s": round(stats.new_samples / wall, 3) if wall > 0 else None,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


class RunSummary(Result):
    """A synthesis run's figures (summary.json), of all its invocations."""

    status: str = Field(description="complete | budget | exhausted | interrupted | aborted | submitted")
    exhausted: str | None = Optional("Why the run stopped short with nothing left worth asking for (status exhausted).")
    run_dir: str = Field(description="The run directory.")
    method: str = Field(description="synthesis.method.")
    teacher: str = Field(description="The teacher's model string.")
    teachers: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The samples' teachers (model, endpoint) with their sample counts; more than one after a resume "
        "onto another teacher.",
    )
    program: str = Field(description="The program the run executed: built-in, a file, an MLflow URI or python:...")
    program_hash: str = Field(description="Content hash of that program.")
    program_origin: dict[str, Any] | None = Optional(
        "When an experiment made the program: the experiment, its dir, the cell, whether it was the champion, and "
        "the cell's test score and difference."
    )
    adapter: dict[str, Any] | None = Field(description="The output format the teacher was asked for, and why.")
    lm_defaults: str | None = Optional(
        "The teacher model's own settings that stood in for what the config left unset, where they are not the usual "
        "ones (a reasoning model's temperature and output limit)."
    )
    config_hash: str = Field(description="A short hash of the config fields that decide the output (fingerprint.json).")
    size: int = Field(description="synthesis.size: the samples asked for.")
    samples: int = Field(description="The samples in samples.jsonl.")
    new_samples: int = Field(description="Samples this invocation added.")
    references: int = Field(description="The references read.")
    feedback_collected: int = Field(description="The references whose feedback was collected (feedback.jsonl).")
    units: int = Field(description="Work units done: (reference, feature, pass) triples (journal.jsonl).")
    instructions_kept: int = Field(description="New instructions kept after deduplication.")
    rejects: dict[str, int] = Field(description="Reject records by reason.")
    rejects_by_stage: dict[str, int] = Field(description="Reject records by stage.")
    retries: dict[str, Any] = Field(description="Retries of all invocations (`total`) and of this one by reason.")
    max_calls: int | None = Field(description="The call budget the run stopped at (None: none).")
    budget_stop: str | None = Optional("Stopped by the budget: which limit, and what had been spent.")
    budget_first_call: str | None = Optional(
        "Under a cost budget: what the first call was reserved at (its worst case), before any call showed what one "
        "costs; later calls are reserved at their expected cost with a learned margin."
    )
    concurrency: dict[str, Any] = Field(
        description="The configured window of calls in flight, how the rate-limit controller moved it, and the 429s it "
        "saw (refed_dspy.engine.window)."
    )
    mode: str = Field(description="online | batch")
    batch: dict[str, Any] | None = Optional("Batch mode: batches, requests, and what the batch price saved.")
    endpoints: dict[str, Any] | None = Optional("Several api_base endpoints: calls and failures per endpoint.")
    usage: dict[str, Any] = Field(description="Calls, tokens and cost, in total and by stage.")
    per_sample: dict[str, Any] = Field(description="Calls, tokens and cost per sample.")
    cost_usd: float | None = Field(description="The cost of every invocation in USD (None: a price is unknown).")
    estimate: dict[str, Any] | None = Optional("What `refed estimate` said, and how far off the run came out.")
    price_known: bool = Field(description="Whether the teacher's price is known.")
    ray: dict[str, Any] | None = Optional(
        "On Ray: the cluster's address and each worker's node, tasks, calls and state."
    )
    wall_s: float = Field(description="Wall time of this invocation, in seconds.")
    wall_s_total: float = Field(description="Wall time of every invocation, in seconds.")
    samples_per_s: float | None = Field(description="Samples this invocation added, per second.")
    finished_at: str = Field(description="When this invocation finished (UTC, ISO 8601).")


def exhausted_because(run: Any) -> str:
    """Why the run stopped short with nothing left to try."""
    if run.next_work.watch.reason is not None:
        return run.next_work.watch.reason
    return (
        "nothing was left to try: every unit the references offer was used, or their feedback failed "
        f"({len(run.next_work.done_units)} units)"
    )


def run_summary(run: Any, status: str) -> RunSummary:
    """The figures of the whole synthesis run `run` (a SynthesisRun; all invocations), read back from its files."""
    rejects, by_stage = reject_counts(run.rundir.rejects)
    usage = run.usage()
    execution = run.execution()
    retries = execution.pop("retries")
    return RunSummary(
        **{
            "status": status,
            "exhausted": exhausted_because(run) if status == "exhausted" else None,
            "run_dir": str(run.rundir.path),
            "method": run.method.name,
            "teacher": run.spec.model,
            "teachers": teacher_rows(run.teachers),
            "program": run.program.identity,
            "program_hash": run.program.hash,
            "program_origin": run.program.origin,
            "adapter": getattr(run.adapter, "choice", None) and run.adapter.choice.as_dict(),
            "lm_defaults": run.spec.defaults_note("teacher"),
            "config_hash": run.chash,
            "size": run.syn.size,
            "samples": run.accepted,
            "new_samples": run.stats.new_samples,
            "references": len(run.refs),
            "feedback_collected": len(run.next_work.feedback),
            "units": len(run.next_work.done_units),
            "instructions_kept": len(run.next_work.dedup),
            "rejects": rejects,
            "rejects_by_stage": by_stage,
            "retries": {"total": run.earlier_retries + sum(retries.values()), "this_invocation": dict(retries)},
            "max_calls": run.max_calls,
            "concurrency": execution.pop("concurrency"),
            **execution,
            "usage": usage,
            "per_sample": per_sample(usage, run.accepted),
            "cost_usd": usage["cost_usd"],
            **estimate_error(
                run.rundir.path / "estimate.json",
                run.estimate_hash,
                usage,
                run.accepted,
                run.syn.size,
                run.report.mode == "batch",
                run.spec.service_tier,
            ),
            "price_known": run.price is not None,
            **timing(run.stats, run.earlier_wall_s),
        }
    )


def _money(value: float | None, unmetered: int = 0) -> str:
    why = "the LM reported no token usage" if unmetered else "no price for this model"
    return usd(value, f"unknown ({why})")


def _cut_off(u: dict[str, Any]) -> str:
    bound = u.get("interrupted_cost_usd")
    return f", and up to {usd(bound)} more for the calls of unknown tokens (cut off or in flight)" if bound else ""


def _unanswered(u: dict[str, Any]) -> str:
    """The paid calls never answered to us, by why: cut off (a stop, the client's timeout), lost with a Ray worker, in
    flight when an earlier invocation was killed (its ledger said so when this one opened it: a summary is written
    when its invocation ends, so none of its own calls is in flight then), or in a batch still open at the provider."""
    lost, killed, open_ = (u.get(k) or 0 for k in ("worker_lost_calls", "lost_in_flight", "in_open_batches"))
    cut = (u.get("interrupted_calls") or 0) - lost - killed - open_
    said = [f"{cut} cut off by a stop or the client's timeout"] if cut > 0 else []
    said += [f"up to {lost} lost with their Ray worker"] if lost else []  # what their tasks were reserved for
    said += [f"{killed} in flight when an earlier invocation was killed"] if killed else []
    said += [f"{open_} in batches still open at the provider"] if open_ else []
    return f"; {', '.join(said)} (counted as paid)" if said else ""


def _written(u: dict[str, Any]) -> str:
    """The prompt tokens written to the provider's cache, and the share read from it (where any were written)."""
    share = prompt_cache_share(u)
    if not share["written_tokens"]:
        return ""
    return (
        f", {share['written_tokens']:,} written to its cache; {share['read_share']:.1%} read, "
        f"{share['written_share']:.1%} written"
    )


def _reasoning(u: dict[str, Any]) -> str:
    """How many of the completion tokens a reasoning model spent thinking ('' when none)."""
    n = u.get("reasoning_tokens") or 0
    return f" ({n:,} of them reasoning, billed as output)" if n else ""


def _raise(why: str) -> str:
    """What to raise for the limit that stopped the run (both when the reason does not say which)."""
    if why.startswith("the cost budget"):
        return "raise synthesis.max_cost_usd"
    if why.startswith("the LM-call budget"):
        return "raise synthesis.max_calls or max_calls_per_sample"
    return "raise synthesis.max_calls or max_calls_per_sample, or max_cost_usd"


def _pace(per_s: float | None, wall_s: float) -> str:
    """Samples a second over the wall time, in units a reader takes in: a local run's 0.0019/s is 6.74/h, its
    1601.7 s 26m41s."""
    return f"{per_time(per_s or 0.0)} over {f'{wall_s:.1f}s' if wall_s < 60 else duration(wall_s)}"


def _this_time(s: dict[str, Any]) -> str:
    """What this invocation added, and how fast ("none new: it was complete already" for a finished run run again)."""
    if not s["new_samples"] and s["samples"] >= s["size"]:
        return "none new: it was complete already"
    return f"+{s['new_samples']} this time, {_pace(s['samples_per_s'], s['wall_s'])}"


def format_summary(s: dict[str, Any]) -> str:
    """Render a summary dict (summary.json) as a short report."""
    u = s["usage"]
    lines = [
        f"run {s['run_dir']}: {s['status']}  ({s['method']}, teacher {s['teacher']})",
        f"  output       {Path(s['run_dir']) / 'samples.jsonl'}  (`refed view {s['run_dir']}` to read it)",
        f"  samples      {s['samples']}/{s['size']}  ({_this_time(s)})",
        f"  references   {s['references']} loaded, feedback on {s['feedback_collected']}, {s['units']} synthesis units, "
        f"{s['instructions_kept']} instructions kept",
        f"  LM calls     {u['calls']} {'sent' if s.get('cost_usd') == 0 else 'paid'}, {u['cached_calls']} from the run cache"
        + (f", {u['failed_calls']} failed requests (no reply)" if u.get("failed_calls") else "")
        + _unanswered(u)
        + (f"; {u['unmetered_calls']} whose LM reported no token usage" if u.get("unmetered_calls") else ""),
        f"  tokens       {u['prompt_tokens']:,} prompt ({u['cached_tokens']:,} cached by the provider{_written(u)}), "
        f"{u['completion_tokens']:,} completion" + _reasoning(u),
        f"  cost         {_money(s['cost_usd'], u.get('unmetered_calls') or 0)}{_cut_off(u)}",
    ]
    tiers = tier_text(u)
    if tiers:
        lines.append(f"  tiers        {tiers}")
    mixed = mixed_line(s.get("teachers"))
    if mixed:
        lines.insert(1, f"  teachers     {mixed}")
    if s.get("lm_defaults"):
        lines.insert(1, f"  settings     {s['lm_defaults']}")
    adapter = s.get("adapter")
    if adapter:
        lines.insert(1, f"  outputs      {adapter['mode']} (schema dialect {adapter['dialect']}): {adapter['reason']}")
    for stage, part in sorted((u.get("by_stage") or {}).items()):
        fixes = ""
        if part.get("parse_failures") or part.get("repairs"):
            fixes = f"  {part.get('parse_failures', 0)} unparseable, {part.get('repairs', 0)} repairs"
        lines.append(
            f"    {stage:<16}{part['calls']:>7} calls {part['prompt_tokens']:>11,} in {part['completion_tokens']:>10,} out  "
            f"{_money(part.get('cost_usd'))}{fixes}"
            + (f"  ({part['reasoning_tokens']:,} out reasoning)" if part.get("reasoning_tokens") else "")
        )
    if s["per_sample"]:
        p = s["per_sample"]
        lines.append(
            f"  per sample   {p['calls']:.1f} calls, {p['prompt_tokens']:,.0f} prompt + {p['completion_tokens']:,.0f} "
            f"completion tokens, {_money(p['cost_usd'])}"
        )
    batch = s.get("batch")
    if batch:
        saved = (
            f", {_money(batch.get('saved_usd'))} saved against online prices"
            if batch.get("saved_usd") is not None
            else ""
        )
        lines.append(
            f"  batch mode   {batch['batches']} batches ({batch['open']} open), "
            f"{batch['submitted_calls_this_invocation']} requests submitted this time, "
            f"{batch['resubmitted']} sent again after an expired/cancelled/failed batch{saved}"
        )
    est = s.get("estimate")
    if est and (est.get("cost_usd") is not None or est.get("calls_error") is not None):  # no price: its calls
        err = (
            f", the run cost {est['cost_error']:+.1%} against it"
            if est.get("cost_error") is not None
            else f", the run made {est['calls_error']:+.1%} calls against it"
            if est.get("calls_error") is not None
            else ""
        )
        cost = f"{_money(est['cost_usd'])} for " if est.get("cost_usd") is not None else ""
        lines.append(f"  estimate     {cost}{est.get('calls')} calls (refed estimate){err}")
    if s["status"] == "budget":
        why = s.get("budget_stop") or (
            f"the call budget ({s.get('max_calls')} LM calls) or synthesis.max_cost_usd would have been passed"
        )
        lines.append(f"  budget       stopped: {why}; {_raise(why)}")
    if s["status"] == "exhausted" and s.get("exhausted"):
        lines.append(f"  exhausted    {s['exhausted']}")
    limited = rate_limit_line(s.get("concurrency") or {})
    if limited:
        lines.append(f"  rate limits  {limited}")
    rejects = s.get("rejects") or {}
    lines.append("  rejects      " + (", ".join(f"{n} {r}" for r, n in sorted(rejects.items())) if rejects else "none"))
    return "\n".join(lines)


# reasons no LM failure explains: instructions the dedup dropped
_DEDUP = "the references give no more distinct instructions: add references (seeds.limit)"
_KNOBS = {"duplicate": _DEDUP, "near_duplicate": _DEDUP}


def shortfall_cause(summary: dict[str, Any], role: str = "teacher") -> str | None:
    """'16 of 64 rejects were truncated: raise teacher.max_tokens, or ask for shorter outputs' (the most frequent
    reason; duplicates and near-duplicates counted as one), or None when nothing was rejected."""
    rejects = dict(summary.get("rejects") or {})
    dropped = rejects.pop("duplicate", 0) + rejects.pop("near_duplicate", 0)
    if dropped:
        rejects["duplicate or near-duplicate"] = dropped
    if not rejects:
        return None
    reason, n = max(rejects.items(), key=lambda kv: kv[1])
    knob = _DEDUP if reason == "duplicate or near-duplicate" else _KNOBS.get(reason) or hint_for(reason, role)
    return f"{n} of {sum(rejects.values())} rejects were {reason}" + (
        f": {knob}" if knob else "; see its rejects.jsonl"
    )
