"""`refed status DIR`: the state of any run dir (a synthesis run, online or batch, with its judgments; a filtered
dir; a comparison; an optimization; an evaluation, `refed evaluate`'s folder), read without taking its lock and without
writing anything.

The state says what a user does next:

- running: a process holds the dir's lock (`holder` names it: PID, host, command, since when);
- complete: the run has all its samples;
- exhausted, budget: it finished short (the seeds ran out; a call or cost budget stopped it);
- submitted: batch mode, detached: its batches wait at the provider (run the same command to collect them);
- stopped: stopped by a signal, or killed before it wrote a summary (run the same command to resume);
- failed: aborted by the provider or a streak of failures (see its summary; the same command resumes).

Figures are read from the records on disk and the write-ahead ledgers beside them, so a run that is being written or
was killed shows what it has now: samples, rejects (by stage), paid LM calls and cost, the calls an invocation killed
before had in flight (and a batch run's open requests) counted as paid, up to the most they can cost. The calls the
invocation under way (the process holding the lock) has in flight are counted the same way, and said to be in flight
now (`in_flight`), not lost: "killed" is said only of an invocation that ended without settling its calls.

What it prints of a RunStatus (`format_status`): a few lines a person reads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.config import Config, load_config
from refed_dspy.config.lm import price_of
from refed_dspy.errors import RefedError, RunDirError
from refed_dspy.launch.batch.store import (
    BATCH_DIRS,
    BatchCounts,
    answered_usage,
    batch_counts,
    batch_lines,
    open_requests,
    read_batches,
    with_open,
)
from refed_dspy.ledger.call_log import LOG_NAME, Ledger, unaccounted
from refed_dspy.ledger.lines import BadLine
from refed_dspy.ledger.spend import total_of
from refed_dspy.ledger.usage import Totals, larger_usage, usd, usd_up_to, with_unrecorded
from refed_dspy.store.jsonl import read_json, read_jsonl
from refed_dspy.store.lock import LOCK_NAME, holder
from refed_dspy.store.ownership import KINDS, kind_of, refuse_folder
from refed_dspy.store.results import Optional, Result
from refed_dspy.store.rundir import JUDGE_WORKERS_FILE, WORKERS_FILE, RunDir, last_event
from refed_dspy.text.counts import counted

# summary.json / judge_summary.json status -> state
STATE_OF = {"interrupted": "stopped", "aborted": "failed"}


class Holder(Result):
    """The process holding a dir's lock."""

    pid: int | str
    host: str | None = None
    command: str | None = None
    started: str | None = None


class JudgeStatus(Result):
    """The judgments of a run dir."""

    state: str = Field(
        description="running | complete | partial | budget | submitted | stopped | failed | carried (a filtered dir's "
        "judgments, kept from the run it was filtered from)"
    )
    judged: int = Field(description="Judgment records on disk.")
    samples: int | None
    mean_score: float | None
    improvement_win_rate: float | None
    rejects: dict[str, int] = Field(description="Samples still without a judgment, by the reason of the last failure.")
    calls: int | None = Field(description="Paid judge calls (as of the last judge summary).")
    cost_usd: float | None
    ray: dict[str, Any] | None = Optional(
        "Judged on Ray: its workers as the driver last wrote them (judge_workers.json)."
    )
    made_since: int = Field(0, description="Samples the run made after its last judging ended (not judged yet).")


class RunStatus(Result):
    """What `refed status` reports of one dir (see the module docstring for the states)."""

    run_dir: str
    kind: str = Field(description="synthesis | filtered | comparison | optimization | evaluation")
    state: str
    summary_status: str | None = Field(description="The status its summary file states (None: no summary).")
    holder: Holder | None = Field(description="Who holds the dir's lock now (None: nobody).")
    method: str | None = None
    teacher: str | None = None
    mode: str | None = None
    size: int | None = None
    samples: int
    rejects: int = Field(description="Reject records on disk.")
    rejects_by_stage: dict[str, int]
    calls: int | None = Field(
        description="Paid LM calls (answers from the run's cache are apart; None: none made): those its records hold, "
        "and those its write-ahead ledgers say were paid or may have been (in flight when an invocation was killed, "
        "answered in a batch whose work a kill cut off, in a batch still open)."
    )
    cached_calls: int | None = None
    cost_usd: float | None = Field(description="What the paid calls cost (None: unknown price, or none made).")
    lost_in_flight: int = Field(
        0,
        description="Of `calls`: those whose tokens are unknown because they were in flight when an invocation was "
        "killed, or are in a batch still open at the provider (counted as paid, at the most they can cost).",
    )
    in_flight: int = Field(
        0,
        description="Of `calls`: those the invocation under way (the lock's holder) has in flight now, their tokens "
        "not known yet (counted as paid, at the most they can cost).",
    )
    cost_up_to_usd: float | None = Field(
        None,
        description="The most the paid calls can have cost: `cost_usd` and the most the calls of unknown tokens (cut "
        "off, lost in flight, in open batches) can cost; None when that is nothing more.",
    )
    projected_cost_usd: float | None = Optional("The cost at the run's size, at its cost per sample so far.")
    batches: dict[str, BatchCounts] | None = Optional("Batch mode: the batches of synthesis and judging.")
    judge: JudgeStatus | None = Optional("Its judgments, when it has some.")
    ray: dict[str, Any] | None = Optional(
        "Run on Ray: the cluster's address and each worker's node, pid, tasks, calls and whether it is alive, as the "
        "driver last wrote them (workers.json)."
    )
    source_run: str | None = Optional("A filtered dir: the run it was filtered from.")
    verdict: str | None = Optional(
        "An evaluation (`refed evaluate`'s folder): its verdict, as evaluation.json says it."
    )
    runs: list[RunStatus] | None = Optional("A comparison: each method's run.")


STATUS_KINDS = ("run", "filter", "compare", "optimize", "evaluate")  # the dirs whose status this reads, by marker


def is_run_dir(path: Path) -> bool:
    """`path` is a dir a refed command made whose status this reads (its `.refed-dir` says so; one being made may have
    only its lock): a folder of the user's holding files of the same names is not, nor an export or a training."""
    if not path.is_dir():
        return False
    marked = kind_of(path)
    return marked in STATUS_KINDS or (marked is None and (path / LOCK_NAME).exists())


def _state(status: str | None, who: Holder | None) -> str:
    if who is not None:
        return "running"
    return "stopped" if status is None else STATE_OF.get(status, status)


def live_pid(who: Holder | None) -> int | None:
    """The PID of the process holding a dir's lock (`who`), whose invocation under way is live (None: nobody holds it,
    or the lock file does not say who)."""
    return who.pid if who is not None and isinstance(who.pid, int) else None


def lock_holder(path: Path) -> Holder | None:
    """Who holds the lock of the dir `path` now (None: nobody)."""
    who = holder(path)
    if who is None:
        return None
    fields = {k: who.get(k) for k in ("host", "command", "started") if isinstance(who.get(k), str)}
    pid = who.get("pid", "?")
    return Holder(pid=pid if isinstance(pid, int) else str(pid), **fields)


def _by_stage(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        stage = row.get("stage") or ("filter" if row.get("filter") else "unknown")
        out[stage] = out.get(stage, 0) + 1
    return out


def _judge(
    rundir: RunDir, who: Holder | None, kept_for: int | None = None, samples: int | None = None
) -> JudgeStatus | None:
    """The judgments of `rundir`; `kept_for`: a filtered dir's samples, whose judgments came with them; `samples`: the
    run's now (more than its last judging saw: made since)."""
    summary = read_json(rundir.judge_summary)
    judged = sum(1 for _ in read_jsonl(rundir.judgments))
    if not summary and not judged:
        return None
    judging = who is not None and "judge" in (who.command or "")
    usage = summary.get("usage") or {}
    carried = not summary and kept_for is not None
    return JudgeStatus(
        state="running" if judging else "carried" if carried else _state(summary.get("status"), None),
        judged=judged,
        samples=kept_for if carried else summary.get("samples"),
        mean_score=summary.get("mean_score"),
        improvement_win_rate=summary.get("improvement_win_rate"),
        rejects=summary.get("rejects") or {},
        calls=usage.get("calls"),
        cost_usd=summary.get("cost_usd"),
        ray=read_json(rundir.path / JUDGE_WORKERS_FILE) or None,
        made_since=max(0, (samples or 0) - (summary.get("samples") or 0)) if summary and not judging else 0,
    )


def _batches(path: Path, now: float) -> dict[str, BatchCounts] | None:
    found = {stage: read_batches(path, name) for stage, name in BATCH_DIRS.items()}
    counts = {stage: batch_counts(store, now) for stage, store in found.items() if store is not None}
    return counts or None


def _config_of(rundir: RunDir) -> Config | None:
    """The run's config as its config.toml holds it (None: none, or one that no longer loads)."""
    if not rundir.config.exists():
        return None
    try:
        return load_config(rundir.config, [], record=True)
    except RefedError:
        return None


def _configured(config: Config | None) -> dict[str, Any]:
    """Method, teacher, size and mode from the run's config, for a run that has no summary yet ({}: none)."""
    if config is None:
        return {}
    syn = config.synthesis
    return {"method": syn.method, "teacher": config.teacher.model, "size": syn.size, "mode": syn.mode}


def paid_usage(rundir: RunDir, recorded: Totals, config: Config | None, pid: int | None = None) -> dict[str, Any]:
    """What the synthesis of `rundir` has paid, as a reader sees it (nothing changed, no lock taken): what its records
    hold (`recorded`), what its write-ahead ledger says was paid and no record holds (calls of invocations killed
    before they ended, those in flight then at their bound: `lost_in_flight`; those the invocation under way in the
    process `pid`, the lock's holder, has in flight now: `in_flight`), and in batch mode what the provider answered
    that no record holds and the requests of batches still open (at their bound: `in_open_batches`), priced at the
    teacher's batch price of `config` (unknown without one)."""
    totals = Totals()
    totals.add(recorded.as_dict())
    found = unaccounted(rundir.ledger, pid)
    totals.add(found)
    usage = {**totals.as_dict(), "in_flight": int((found or {}).get("in_flight") or 0)}
    store = read_batches(rundir.path, BATCH_DIRS["synthesis"])
    if store is None:
        return usage
    price = price_of(config.teacher, batch=True) if config is not None else None
    return with_open(with_unrecorded(usage, answered_usage(store), price), open_requests(store))


def _synthesis(rundir: RunDir, who: Holder | None, now: float) -> RunStatus:
    summary = read_json(rundir.summary)
    if summary and who is None and _begun_since(rundir):
        summary = {}  # an earlier invocation's: the last one began after it and never ended (a kill)
    try:
        recorded = Totals()
        state = rundir.load(repair=False, tally=recorded.add)  # a reader: a torn last line is skipped, never cut off
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # a record that is not one of ours
        raise RunDirError(
            f"{rundir.path} has a record refed cannot read ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            f"`refed repair {rundir.path}` moves damaged lines aside"
        ) from None
    config = _config_of(rundir)
    usage = paid_usage(rundir, recorded, config, live_pid(who))
    known = {k: summary.get(k) for k in ("method", "teacher", "size", "mode")} if summary else _configured(config)
    calls = usage["calls"]
    cost = usage["cost_usd"] if calls or usage["cached_calls"] else None
    bound = float(usage.get("interrupted_cost_usd") or 0.0)
    size = known.get("size")
    projected = None
    if cost and state.samples and size and state.samples < size:
        projected = round(cost / state.samples * size, 6)
    return RunStatus(
        run_dir=str(rundir.path),
        kind="synthesis",
        state=_state(summary.get("status"), who),
        summary_status=summary.get("status"),
        holder=who,
        **known,
        samples=state.samples,
        rejects=state.rejects,
        rejects_by_stage=_by_stage(list(read_jsonl(rundir.rejects))),
        calls=calls,
        cached_calls=usage["cached_calls"],
        cost_usd=None if cost is None else round(cost, 6),
        lost_in_flight=int(usage.get("lost_in_flight") or 0) + int(usage.get("in_open_batches") or 0),
        in_flight=int(usage.get("in_flight") or 0),
        cost_up_to_usd=round(cost + bound, 6) if cost is not None and bound else None,
        projected_cost_usd=projected,
        batches=_batches(rundir.path, now),
        judge=_judge(rundir, who, samples=state.samples),
        ray=read_json(rundir.path / WORKERS_FILE) or None,
    )


def _begun_since(rundir: RunDir) -> bool:
    """Whether the run's last invocation began after its summary.json was written and never ended (a kill): its
    events say "started" last, stamped later than the summary (a summary written where the events could not be, a
    full disk, is its own invocation's)."""
    last = last_event(rundir.path, "teacher", ("started", "ended"))
    if last is None or last.get("event") != "started":
        return False
    try:
        return float(last.get("t") or 0.0) > rundir.summary.stat().st_mtime
    except OSError:
        return False


def _filtered(rundir: RunDir, who: Holder | None) -> RunStatus:
    summary = read_json(rundir.path / "filter_summary.json")
    rejects = list(read_jsonl(rundir.rejects))
    samples = sum(1 for _ in read_jsonl(rundir.samples))
    return RunStatus(
        run_dir=str(rundir.path),
        kind="filtered",
        state="running" if who is not None else "complete",
        summary_status=None,
        holder=who,
        samples=samples,
        rejects=len(rejects),
        rejects_by_stage=_by_stage(rejects),
        calls=None,
        cost_usd=None,
        judge=_judge(rundir, who, kept_for=samples),
        source_run=summary.get("source_run"),
    )


def _container(path: Path, kind: str, who: Holder | None, now: float) -> RunStatus:
    """A comparison (one run dir per method) or an optimization's output dir."""
    runs = [run_dir_status(sub, now) for sub in sorted(path.iterdir()) if sub.is_dir() and is_run_dir(sub)]
    done = (path / ("compare.json" if kind == "comparison" else "optimize_summary.json")).exists()
    state = "complete" if done else "stopped"
    if done and kind == "optimization":  # an optimization that stopped says so in its summary (a budget: "budget")
        state = _state(read_json(path / "optimize_summary.json").get("status", "complete"), None)
    return RunStatus(
        run_dir=str(path),
        kind=kind,
        state="running" if who is not None else state,
        summary_status=None,
        holder=who,
        samples=sum(r.samples for r in runs),
        rejects=sum(r.rejects for r in runs),
        rejects_by_stage={},
        **_container_spend(path, kind, runs),
        runs=runs if kind == "comparison" else None,
    )


def _paid_by_log(log: Path, summary: Path) -> dict[str, Any] | None:
    """The larger of the usage `summary` states and what the write-ahead `log` says was paid (a command resumed, under
    way or killed has paid more than its last summary says); the summary's alone when the log cannot be believed."""
    stated = read_json(summary).get("usage") or None
    try:
        return larger_usage(Ledger.read(log).paid() if log.exists() else None, stated)
    except (BadLine, RefedError, OSError):
        return stated


def _container_spend(path: Path, kind: str, runs: list[RunStatus]) -> dict[str, Any]:
    """What a comparison or an optimization paid in all, as `calls` and `cost_usd`: an optimization's own ledger (the
    larger of its summary's usage and its write-ahead log: the examples, the compiling and the judge's calls together),
    else its runs' syntheses and their judgings."""
    usage = _paid_by_log(path / LOG_NAME, path / "optimize_summary.json") if kind == "optimization" else None
    if usage:  # else the runs inside
        return {"calls": usage.get("calls"), "cost_usd": usage.get("cost_usd")}
    parts = [*runs, *(r.judge for r in runs if r.judge is not None)]
    costs = [p.cost_usd for p in parts if p.cost_usd is not None]
    return {"calls": sum(p.calls or 0 for p in parts) if runs else None, "cost_usd": sum(costs) if costs else None}


def run_dir_status(run_dir: str | Path, now: float | None = None) -> RunStatus:
    """The status of `run_dir` (see the module docstring); RunDirError when it is not a dir refed wrote."""
    path = Path(run_dir)
    now = time.time() if now is None else now
    if not path.is_dir():
        raise RunDirError(f"{path} is not a run directory ({'not a directory' if path.exists() else 'no such path'})")
    # a comparison or an optimization not yet summed up is known by the marker its command wrote first
    marked = kind_of(path)
    if not is_run_dir(path):
        refuse_folder(path, "a run directory", is_run_dir)
        why = f"it is a refed {KINDS.get(marked, marked)}" if marked else "refed did not make it: it has no .refed-dir"
        raise RunDirError(f"{path} is not a run directory ({why})")
    rundir, who = RunDir(path), lock_holder(path)
    if (path / "filter_summary.json").exists():
        return _filtered(rundir, who)
    if (path / "optimize_summary.json").exists() or marked == "optimize":
        return _container(path, "optimization", who, now)
    if (path / "compare.json").exists() or marked == "compare":
        return _container(path, "comparison", who, now)
    if marked == "evaluate":
        return _evaluation(rundir, who, now)
    return _synthesis(rundir, who, now)


def _evaluation(rundir: RunDir, who: Holder | None, now: float) -> RunStatus:
    """`refed evaluate`'s folder: the instructions judged of those asked, and what it paid: its judge (the larger of its
    last summary's usage and its write-ahead log: a killed or running evaluation has paid more than it says) and a
    students' server's answers (`spent.json`, as of their last call while they are made)."""
    found = read_json(rundir.path / "evaluation.json")  # training.evaluate.EVALUATION, not imported: 0.3 s a status
    usage = _paid_by_log(rundir.judge_ledger, rundir.judge_summary) or {}
    spent = read_json(rundir.path / "spent.json")  # training.served.SPENT
    answered = [(spent.get(k) or {}).get("answering") or {} for k in ("parts", "live")]
    if any(answered):
        usage = total_of([usage, *answered])
    return RunStatus(
        run_dir=str(rundir.path),
        kind="evaluation",
        state=_state(found.get("status"), who),
        summary_status=found.get("status"),
        holder=who,
        size=found.get("instructions"),
        samples=found.get("pairs") or 0,
        rejects=0,
        rejects_by_stage={},
        calls=usage.get("calls"),
        cost_usd=usage.get("cost_usd"),
        batches=_batches(rundir.path, now),
        verdict=found.get("verdict"),
    )


NEXT = {
    "stopped": "run the same command to resume",
    "failed": "aborted by the provider or a streak of failures (its summary says why); run the same command to resume",
    "submitted": "its batches wait at the provider; run the same command to collect them and go on",
    "exhausted": "finished short: the seeds ran out before its size",
    "budget": "finished short: a budget stopped it (raise it and run the same command to go on)",
    "partial": "finished short: some samples have no judgment",
}


# what a run dir that ended before its first call (its config or endpoint refused, or a stop then) asks for next
FIRST_CALL_NEXT = "fix what stopped it and run the command again"


def holder_text(who: Holder) -> str:
    """'PID 123 on host h (refed synthesize, since ...)'."""
    text = f"PID {who.pid}" + (f" on host {who.host}" if who.host else "")
    details = [d for d in (who.command, f"since {who.started}" if who.started else None) if d]
    return text + (f" ({', '.join(details)})" if details else "")


def _state_line(s: RunStatus) -> str:
    if s.holder is not None:
        return f"state: running: {holder_text(s.holder)}"
    line = f"state: {s.state}"
    if s.summary_status and STATE_OF.get(s.summary_status, s.summary_status) != s.state:  # not the same state named
        line += f" (summary status {s.summary_status})"
    if s.kind == "synthesis" and s.summary_status is None and s.state == "stopped":
        if not s.samples and not s.calls:  # a config or an endpoint refused before its first call, or a stop then
            return f"{line} (nothing made yet: it ended before its first call); {FIRST_CALL_NEXT}"
        line += " (its last invocation wrote no summary: it ended by an error, a stop or a kill)"
    return line + (f"; {NEXT[s.state]}" if s.state in NEXT else "")


def _judge_line(j: JudgeStatus) -> str:
    state = "carried from the run it was filtered from" if j.state == "carried" else j.state
    parts = [state, f"{j.judged}/{j.samples if j.samples is not None else '?'} judged"]
    if j.mean_score is not None:
        parts.append(f"mean score {j.mean_score:.2f}")
    if j.improvement_win_rate is not None:
        parts.append(f"improvement win rate {j.improvement_win_rate:.2f}")
    if j.rejects:
        parts.append("unjudged: " + ", ".join(f"{n} {reason}" for reason, n in sorted(j.rejects.items())))
    if j.calls is not None:
        parts.append(f"{j.calls} paid calls, {usd(j.cost_usd)}")
    if j.made_since:
        parts.append(f"{j.made_since} samples made since, not judged yet (`refed judge run` judges them)")
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


def _unsettled(s: RunStatus) -> str:
    """The paid calls of unknown tokens, by why: in flight now (the invocation under way), or in flight when an
    invocation was killed (or in a batch still open); "" when none."""
    whys = (
        (s.in_flight, "in flight now"),
        (s.lost_in_flight, "in flight when an invocation was killed or in a batch still open"),
    )
    said = [f"{n} {why}" for n, why in whys if n]
    return f" ({'; '.join(said).replace(' ', ' of them ', 1)}, counted as paid)" if said else ""


def format_status(s: RunStatus) -> str:
    """The human text of `refed status`."""
    what = [x for x in (s.method, f"teacher {s.teacher}" if s.teacher else None, s.mode) if x]
    out = [f"{s.run_dir}: {s.kind}" + (f" ({', '.join(what)})" if what else ""), _state_line(s)]
    if s.source_run:
        out.append(f"filtered from {s.source_run}")
    if s.kind == "evaluation":
        out.append(f"instructions judged: {s.samples}" + (f"/{s.size}" if s.size is not None else ""))
    else:
        made = " (the examples it was optimized on)" if s.kind == "optimization" else ""
        out.append(f"samples: {s.samples}" + (f"/{s.size}" if s.size is not None else "") + made)
        stages = ", ".join(f"{stage} {n}" for stage, n in sorted(s.rejects_by_stage.items()))
        out.append(f"rejects: {s.rejects}" + (f" ({stages})" if stages else ""))
    if s.calls is None:
        out.append("paid LM calls: none")
    else:
        cached = f" (+{s.cached_calls} answered from the run's cache)" if s.cached_calls else ""
        projected = (
            f", projected {usd(s.projected_cost_usd)} at {s.size} samples" if s.projected_cost_usd is not None else ""
        )
        cost = usd_up_to(s.cost_usd, (s.cost_up_to_usd or 0.0) - (s.cost_usd or 0.0) if s.cost_up_to_usd else None)
        if not s.calls and not s.cost_up_to_usd:
            cost = usd(0.0)  # nothing paid: nothing to price
        out.append(f"paid LM calls: {s.calls}{cached}{_unsettled(s)}, {cost}{projected}")
    for stage, counts in (s.batches or {}).items():
        first, *table = batch_lines(counts)
        out.append(f"{stage} batches: {first}")
        out.extend(table)
    if s.verdict:
        out.append(f"verdict: {s.verdict}")
    if s.judge is not None:
        out.append(_judge_line(s.judge))
        if s.judge.ray:
            out.append(_ray_line(s.judge.ray, running=s.judge.state == "running", what="judge's Ray workers"))
    if s.ray:
        out.append(_ray_line(s.ray, running=s.state == "running"))
    for run in s.runs or []:
        out.append(
            f"  {run.run_dir}: {run.state}, {run.samples}/{run.size}, {counted(run.rejects, 'reject')}, {usd(run.cost_usd)}"
        )
    return "\n".join(out)
