"""The summary of a synthesis run: its figures over every invocation, read back from the run's files and the
stage's engine (written as summary.json, returned by `synthesize`)."""

from __future__ import annotations

from typing import Any

from refed_dspy.store.teachers import teacher_rows
from refed_dspy.synthesis.summary import RunSummary, estimate_error, per_sample, reject_counts, timing


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
                usage,
                run.accepted,
                run.syn.size,
                run.broker is not None,
                run.spec.service_tier,
            ),
            "price_known": run.price is not None,
            **timing(run.stats, run.earlier_wall_s),
        }
    )
