"""The one-screen text summary of a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refed_dspy.ledger.usage import prompt_cache_share, tier_text, usd
from refed_dspy.store.teachers import mixed_line


def _money(value: float | None, unmetered: int = 0) -> str:
    why = "the LM reported no token usage" if unmetered else "no price for this model"
    return usd(value, f"unknown ({why})")


def _cut_off(u: dict[str, Any]) -> str:
    bound = u.get("interrupted_cost_usd")
    return f", and up to {usd(bound)} more for the calls of unknown tokens (cut off or in flight)" if bound else ""


def _unanswered(u: dict[str, Any]) -> str:
    """The paid calls never answered to us, by why: cut off (a stop, the client's timeout), lost with a Ray worker, in
    flight when an invocation was killed, or in a batch still open at the provider."""
    lost, killed, open_ = (u.get(k) or 0 for k in ("worker_lost_calls", "lost_in_flight", "in_open_batches"))
    cut = (u.get("interrupted_calls") or 0) - lost - killed - open_
    said = [f"{cut} cut off by a stop or the client's timeout"] if cut > 0 else []
    said += [f"up to {lost} lost with their Ray worker"] if lost else []  # what their tasks were reserved for
    said += [f"{killed} in flight when an invocation was killed"] if killed else []
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


def format_summary(s: dict[str, Any]) -> str:
    """Render a summary dict (summary.json) as a short report."""
    u = s["usage"]
    lines = [
        f"run {s['run_dir']}: {s['status']}  ({s['method']}, teacher {s['teacher']})",
        f"  output       {Path(s['run_dir']) / 'samples.jsonl'}  (`refed view {s['run_dir']}` to read it)",
        f"  samples      {s['samples']}/{s['size']}  (+{s['new_samples']} this time, {s['samples_per_s'] or 0:.2f}/s over {s['wall_s']:.1f}s)",
        f"  references   {s['references']} loaded, feedback on {s['feedback_collected']}, {s['units']} synthesis units, "
        f"{s['instructions_kept']} instructions kept",
        f"  LM calls     {u['calls']} paid, {u['cached_calls']} from the run cache"
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
            f"  per sample   {p['calls']} calls, {p['prompt_tokens']} prompt + {p['completion_tokens']} completion tokens, {_money(p['cost_usd'])}"
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
    if est and est.get("cost_usd") is not None:
        err = f", the run cost {est['cost_error']:+.1%} against it" if est.get("cost_error") is not None else ""
        lines.append(f"  estimate     {_money(est['cost_usd'])} for {est.get('calls')} calls (refed estimate){err}")
    if s["status"] == "budget":
        why = s.get("budget_stop") or (
            f"the call budget ({s.get('max_calls')} LM calls) or synthesis.max_cost_usd would have been passed"
        )
        lines.append(f"  budget       stopped: {why}; {_raise(why)}")
    if s["status"] == "exhausted" and s.get("exhausted"):
        lines.append(f"  exhausted    {s['exhausted']}")
    rejects = s.get("rejects") or {}
    lines.append("  rejects      " + (", ".join(f"{n} {r}" for r, n in sorted(rejects.items())) if rejects else "none"))
    return "\n".join(lines)
