"""`refed judge run RUN_DIR`: score a run's samples with the judge LM; concurrent, budgeted, resumable.

Writes `judgments.jsonl` (one line per judged sample), `judge_rejects.jsonl` and `judge_summary.json`
into the run dir, next to the synthesis files, which it only reads. Like the runner, one coroutine
owns all state; work items return results.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.config import Config
from refed_dspy.config.load import ConfigLike, given_config
from refed_dspy.config.schema import AS_SENT, AS_SENT_NOTE, PROMPT_FORMAT, endpoint_moved_line, prompt_format_diff
from refed_dspy.engine.execution import Engine
from refed_dspy.engine.failures import Failure
from refed_dspy.engine.progress import Progress
from refed_dspy.engine.stage import StageBase, Started
from refed_dspy.errors import ConfigError, EndpointError, RunDirError
from refed_dspy.launch.batch.store import batches_open_before_online, moves_with_batches_closed
from refed_dspy.launch.plan import launch
from refed_dspy.ledger.call_log import sent_any
from refed_dspy.programs import JudgeSample, PairwiseJudge, PointwiseJudge
from refed_dspy.quality.figures import JudgeSummary, judge_summary
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.jsonl import JsonlWriter, read_json, read_jsonl, write_json_atomic
from refed_dspy.store.ownership import check, owned
from refed_dspy.store.records import final_response
from refed_dspy.store.rundir import JUDGE_WORKERS_FILE, RunDir, check_on_mismatch, incomplete_note, run_config
from refed_dspy.synthesis.program import with_lm_of
from refed_dspy.tracking.mlflow_runs import track_run_dir
from refed_dspy.tracking.traces import run_traces

log = logging.getLogger(__name__)


def judge_fingerprint(config: Config) -> dict[str, Any]:
    """The config values that determine the judgments (changing them makes old judgments stale): the judge's
    temperature and output limit as sent (the model's own where the config sets none), its reasoning effort where set,
    and the prompt format its asks are worded in."""
    j, g = config.judge, config.judging
    return {
        "model": j.model,
        "api_base": j.api_base or j.reached_api_base,
        "temperature": j.temperature_for("judge"),
        "max_tokens": j.output_limit,
        **({"reasoning_effort": j.reasoning_effort} if j.reasoning_effort is not None else {}),
        "adapter": j.adapter,
        "schema_dialect": j.schema_dialect,
        **({"schema_shown": j.schema_shown} if j.schema_shown is not None else {}),
        "criteria": list(g.criteria),
        "pointwise": g.pointwise,
        "pairwise": g.pairwise,
        "prompt_format": PROMPT_FORMAT,
    }


_DEFAULT_JUDGE_FINGERPRINT = judge_fingerprint(Config())


def judge_fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: old -> new` for the judge settings that differ (a key added after `old` was written, at its default,
    does not count; a key left out at its default, as reasoning_effort is, counts when the other side sets it), and
    the prompt format when it differs (a fingerprint without one was made with the first). The endpoint is not among
    them (`judge_endpoint_diff`): a judging whose endpoint alone moved is resumed."""
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" + (AS_SENT_NOTE if k in AS_SENT else "")
        for k in dict.fromkeys([*new, *old])
        if k not in ("prompt_format", "api_base")
        and old.get(k) != new.get(k)
        and not (k not in old and new.get(k) == _DEFAULT_JUDGE_FINGERPRINT.get(k))
    ] + prompt_format_diff(old, new)


def judge_endpoint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`judge.api_base: old -> new` when the judge's endpoint differs between two judge fingerprints ([] when not)."""
    a, b = old.get("api_base"), new.get("api_base")
    return [] if a == b else [f"judge.api_base: {a!r} -> {b!r}"]


def judge_part(config: Config) -> JudgeSample:
    """What judges one sample, as [judging] says (ConfigError when it asks for nothing)."""
    g = config.judging
    if not g.pointwise and not g.pairwise:
        raise ConfigError("judging.pointwise and judging.pairwise are both false: nothing to judge")
    return JudgeSample(PointwiseJudge(g.criteria) if g.pointwise else None, PairwiseJudge() if g.pairwise else None)


class JudgeRun(StageBase):
    """Judges every sample of one run dir once, on the execution engine. Use `judge_run`."""

    what = "judging"
    doing = {"judge": "judging"}

    def __init__(self, config: Config, rundir: RunDir, started: Started, show_progress: bool = False):
        super().__init__(
            config.judge,
            "judge",
            started,
            prices=config.price_book,
        )
        self.config = config
        self.cfg = config.judging
        self.rundir = rundir
        self.judge = judge_part(config)
        self.calls_per_sample = (1 if self.judge.pointwise else 0) + (2 if self.judge.pairwise else 0)
        concurrency = self.window(self.cfg.concurrency)  # on Ray, judging.concurrency is per worker
        self.slots = min(self.calls_per_sample, concurrency)
        self.make_engine(
            concurrency=concurrency,
            worst_calls={"judge": self.calls_per_sample},
            max_calls=self.cfg.max_calls,
            max_cost_usd=self.cfg.max_cost_usd,
            max_consecutive_failures=self.cfg.max_consecutive_failures,
            stop_grace_s=config.run.stop_grace_s,
        )
        self.show_progress = show_progress
        self.rejected_now = 0
        self.new = 0
        self.queue: deque[dict[str, Any]] = deque()  # what is still to judge; a refused start puts it back
        self.writers: dict[str, JsonlWriter] = {}
        self.started = time.monotonic()

    # ---- state on disk --------------------------------------------------------------------------
    def prepare(self, on_mismatch: str) -> tuple[set[str], set[str]]:
        """Check the judge fingerprint (`judge_mismatch`); return (judged ids, finally rejected ids); on 'fresh', the
        judging set aside (`RunDir.put_aside`)."""
        rd = self.rundir
        moves = judge_mismatch(rd, self.config, on_mismatch)
        new = judge_fingerprint(self.config)
        if on_mismatch == "fresh":
            # batch mode's record of the judging goes with it (its answers would be billed to the new judging; a link
            # to a store of the user's stays); set aside until the new judging has gone on (`run`)
            batches = rd.path / "judge_batches"
            rd.put_aside([*self.judge_files(), *([] if batches.is_symlink() else [batches])], "judge")
        else:
            rd.drop_replaced("judge")  # what an earlier --fresh replaced and a kill left: the judging it began goes on
            if moves:  # the endpoint alone moved: the judging goes on, the model behind it taken to be the same
                log.warning(endpoint_moved_line(str(rd.path), moves, new["model"]))
        write_json_atomic(rd.judge_fingerprint, new)
        judged, rejected = set(), set()
        totals = self.engine.totals
        for row in read_jsonl(rd.judgments, repair=True):
            judged.add(row["sample_id"])
            totals.add(row.get("usage"))
        for row in read_jsonl(rd.judge_rejects, repair=True):
            totals.add(row.get("usage"))
            if row.get("final", True):
                rejected.add(row["sample_id"])
        return judged, rejected

    # ---- the stage: what to start, one sample, what came back --------------------------------------
    def fill(self, engine: Engine) -> None:
        self.report.note()  # on Ray, a worker lost since: refed status says so
        while engine.slots_free() >= self.slots or not engine.busy:
            if not self.queue:
                return
            sample = self.queue.popleft()
            if not engine.start("judge", sample, self.slots):
                self.queue.appendleft(sample)
                return

    def key(self, kind: str, payload: Any) -> str:
        return payload["meta"]["id"]

    def work(self, kind: str, payload: Any, calls: list):
        inputs = {
            "instruction": payload["instruction"],
            "response": final_response(payload),
            "improved": (payload.get("improved_response") or "").strip(),
            "draft": (payload.get("response") or "").strip(),
        }
        return self.run_part("judge", None, inputs, calls)

    def handle(self, kind: str, payload: Any, result: Any, failure: Failure | None, usage: dict[str, Any]) -> None:
        if self.watch is not None:
            self.watch.work_ended(kind, failure.reason if failure is not None else None)
        if failure is None:
            result = {"sample_id": payload["meta"]["id"], **result}
            result.update(
                judge=self.config.judge.model,
                usage=usage,
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            self.writers["judgments"].append(result)
            self.new += 1
            if self.watch is not None:
                self.watch.written()
            return
        self.writers["rejects"].append(
            {"stage": "judge", **failure.record_fields(), "sample_id": payload["meta"]["id"], "usage": usage}
        )
        self.rejected_now += 1
        if self.watch is not None:
            self.watch.rejected("judge", failure.reason)

    def note_attempt(self, key: str, outcome: str, usage: dict[str, Any]) -> None:
        """An attempt that leaves no judgment (retried, or cut off by a stop): its usage, as a non-final reject."""
        self.writers["rejects"].append(
            {
                "stage": "judge",
                "reason": outcome,
                "detail": "attempt retried or cut off",
                "sample_id": key,
                "final": False,
                "attempt": True,
                "usage": usage,
            }
        )

    # ---- the run ------------------------------------------------------------------------------------
    async def run(self, samples: list[dict[str, Any]], on_mismatch: str = "error") -> JudgeSummary:
        """Judge what is not judged yet; returns the summary (raises KeyboardInterrupt after writing it when stopped
        by a signal, RunAborted when the failure streak or the provider stopped it, EndpointError when its first calls
        found the judge's endpoint wrong: a first judging then leaves no judging files, for the fixed config)."""
        first = not self.rundir.judge_fingerprint.exists()
        judged, rejected = self.prepare(on_mismatch)
        try:
            return await self._judge(samples, judged, rejected)
        except BaseException as err:
            self._undo(err, first)
            raise
        finally:
            self.rundir.drop_replaced("judge")

    def _undo(self, err: BaseException, first: bool) -> None:
        """After a judging that made nothing (its first calls found the endpoint wrong, or a --fresh stopped before
        a request was sent): the run dir as it was, what --fresh replaced back in its place (a first judging: no
        judging files, for the fixed config); unless a batch went out (its record is what collects it)."""
        rd = self.rundir
        if any((rd.path / "judge_batches").glob("*")):
            return
        endpoint = isinstance(err, EndpointError)
        if rd.replaced("judge") and (endpoint or not sent_any(rd.judge_ledger)):
            for path in self.judge_files():
                path.unlink(missing_ok=True)
            rd.restore("judge")
        elif first and endpoint:
            for path in (rd.judge_fingerprint, rd.judge_rejects, rd.judge_summary):
                path.unlink(missing_ok=True)

    async def _judge(self, samples: list[dict[str, Any]], judged: set[str], rejected: set[str]) -> JudgeSummary:
        """The judging, its files prepared: the samples not judged yet judged, the summary written."""
        self.open_log(self.rundir.judge_ledger, self.rundir.shows_judge_ledger, self.config.run.new_ledger)
        rejected_before = len(rejected - judged)  # samples earlier invocations gave up on
        todo = [s for s in samples if s["meta"]["id"] not in judged and s["meta"]["id"] not in rejected]
        self.queue = deque(todo)
        self.writers = {
            "judgments": JsonlWriter(self.rundir.judgments),
            "rejects": JsonlWriter(self.rundir.judge_rejects),
        }
        self.report.note()
        if self.watch is not None:
            found = read_jsonl(self.rundir.judge_rejects)
            self.watch.begin(
                len(samples), len(judged), Counter(("judge", r.get("reason")) for r in found if not r.get("attempt"))
            )
        progress = Progress(
            len(samples),
            len(samples) - len(todo),
            enabled=self.show_progress,
            unit="sample",
            every_s=self.config.run.progress_every_s,
            label="judge",
            cap_usd=self.cfg.max_cost_usd,
        )

        def write_summary(status: str) -> JudgeSummary:
            self.report.note(final=True)
            summary = judge_summary(
                self.rundir,
                samples,
                self.config,
                self.usage(),
                status,
                time.monotonic() - self.started,
                self.new,
                self.price is not None,
                self.adapter.choice.as_dict(),
                self.execution(),
            )
            write_json_atomic(self.rundir.judge_summary, summary.to_json())
            return summary

        return await self.run_to_end(
            progress,
            self.writers.values(),
            lambda: (progress.initial + self.new, rejected_before + self.rejected_now),
            write_summary,
            lambda s: f"{s.judged} judged in {self.rundir.path}",
        )

    def judge_files(self) -> list[Path]:
        """The files of the run dir's judging: its judgments, rejects, summary, fingerprint, ledger and metrics."""
        rd = self.rundir
        return [
            rd.judgments,
            rd.judge_rejects,
            rd.judge_summary,
            rd.judge_fingerprint,
            rd.judge_ledger,
            rd.judge_metrics,
        ]


async def ajudge_run(
    run_dir: str | Path,
    config: Config | None = None,
    *,
    judge_lm: dspy.LM | None = None,
    on_mismatch: str = "error",
    show_progress: bool | None = False,
    detach: bool = False,
) -> JudgeSummary:
    """Judge (or finish judging) the samples of `run_dir`; returns judge_summary.json's content (judging.mode =
    "batch": through the judge provider's batch API; `detach` returns once the batches are submitted;
    `show_progress` None: as the config's `run.progress` says)."""

    rundir = RunDir(run_dir)
    if config is None:
        config = run_config(rundir)
    if not rundir.samples.exists():
        raise RunDirError(f"{rundir.path} has no samples.jsonl; run `refed synthesize` first")
    ours = {"kind": "run", "also": ("filter",), "existing": True, "flag": "RUN_DIR"}
    check(run_dir, **ours)  # before the judge is built: a directory not refed's is refused first
    shown = config.run.progress if show_progress is None else show_progress
    return await judge_in(rundir, config, ours, judge_lm, on_mismatch, shown, detach)


def judge_mismatch(rd: RunDir, config: Config, on_mismatch: str) -> list[str]:
    """The endpoints that moved since `rd` was judged (RunDirError while a batch is open at the old one, or open at all
    when the judging resumes online: `batches_open_before_online`); RunDirError,
    one line, first when its judgments are unreadable or were made with a different judge config and `on_mismatch`
    is "error". Reads, writes nothing: asked before a local model or Ray's workers start, and again when the judging
    prepares its files."""
    check_on_mismatch(on_mismatch)
    if on_mismatch == "fresh":
        return []
    batches_open_before_online(rd.path, "judge_batches", config.judging.mode == "batch", "judging")
    if not rd.judge_fingerprint.exists():
        return []
    try:
        old = json.loads(rd.judge_fingerprint.read_text())
    except (OSError, ValueError) as err:
        raise RunDirError(
            f'{rd.judge_fingerprint} is unreadable ({err}); use on_mismatch="fresh" to judge again',
            cli=f"{rd.judge_fingerprint} is unreadable ({err}); use --fresh to judge again",
        ) from None
    new = judge_fingerprint(config)
    diff = judge_fingerprint_diff(old, new)
    moves = moves_with_batches_closed(rd.path, "judge_batches", judge_endpoint_diff(old, new))
    if diff and on_mismatch != "resume":
        what = f"{rd.path} was judged with a different judge config ({'; '.join(diff + moves)})"
        raise RunDirError(
            f'{what}; use on_mismatch="fresh" to judge again from scratch',
            cli=f"{what}; use --fresh to judge again from scratch",
        )
    return moves


def judged_alike(rd: RunDir, config: Config) -> bool:
    """Whether `rd`'s judgments were made with `config`'s judge config (its fingerprint, read as it is, the same)."""
    old = read_json(rd.judge_fingerprint)  # {} when there is none, or it cannot be read
    return bool(old) and not judge_fingerprint_diff(old, judge_fingerprint(config))


def unjudged(rd: RunDir, samples: list[dict[str, Any]]) -> bool:
    """Whether any of `samples` has neither a judgment in `rd` nor a final reject (read without a repair)."""
    done = {row["sample_id"] for row in read_jsonl(rd.judgments)}
    done |= {row["sample_id"] for row in read_jsonl(rd.judge_rejects) if row.get("final", True)}
    return any(s["meta"]["id"] not in done for s in samples)


async def judge_in(
    rundir: RunDir,
    config: Config,
    ours: dict[str, Any],
    judge_lm: dspy.LM | None,
    on_mismatch: str,
    show_progress: bool,
    detach: bool,
    samples: list[dict[str, Any]] | None = None,
) -> JudgeSummary:
    """Judge the samples of `rundir` (or `samples`, records of that shape another command made: an evaluation's
    answers) into its judgment files, on the launch path; `ours`: how the directory is claimed (store.ownership)."""
    run_dir = rundir.path
    if judge_lm is not None:  # the LM that judges is the one the judging records and prices
        config = with_lm_of(config, "judge", judge_lm)
    parts = {"judge": judge_part(config)}
    judge_mismatch(rundir, config, on_mismatch)  # refused before a local model or Ray's workers start
    if samples is None:
        samples = list(read_jsonl(rundir.samples, repair=False))
    with launch(config, "judge", judge_lm) as plan:
        if plan.local is not None and (on_mismatch == "fresh" or unjudged(rundir, samples)):
            plan.serve()  # [local] serve = true: the local model the judge needs, once the judging is resolved
        plan.workers(parts, config.judging.concurrency, run_dir, show_progress)
        with owned(run_dir, command="refed judge", **ours):
            note = incomplete_note(rundir.path)
            if note:
                log.warning("warning: %s: %s; judging the samples it has", rundir.path, note)
            started = plan.start(
                rundir, parts, rundir.path / JUDGE_WORKERS_FILE, detach=detach, store_name="judge_batches"
            )
            try:
                stage = JudgeRun(config, rundir, started, show_progress)
                with run_traces(config, rundir.path):  # tracking.log_traces: a sample of its DSPy calls in MLflow
                    return await stage.run(samples, on_mismatch)
            finally:
                if config.tracking.enabled and rundir.judge_summary.exists():
                    track_run_dir(
                        config,
                        rundir.path,
                        "judge",
                        read_json(rundir.judge_summary),
                        [rundir.judge_summary, rundir.judge_fingerprint],
                        metric_prefix="judge.",
                    )


def judge_run(
    run_dir: str | Path,
    config: ConfigLike | None = None,
    *,
    judge: dspy.BaseLM | None = None,
    on_mismatch: str = "error",
    show_progress: bool | None = None,
    detach: bool = False,
) -> JudgeSummary:
    """Judge (or finish judging) every sample of `run_dir` into its judgments.jsonl; `refed judge run` from Python.

    Args:
        run_dir: a run dir (or a filtered dir) with a samples.jsonl.
        config: the [judge] and [judging] to use; None: the run dir's own config.toml.
        judge: a dspy.LM (or any dspy.BaseLM) to judge with instead of building one from [judge], as optimize and
            experiment take it.
        on_mismatch: for judgments made with another judge config: "error" (refuse), "resume" (keep them) or
            "fresh" (delete them and judge again).
        show_progress: show progress on stderr (a bar on a terminal, else a line every `run.progress_every_s`);
            None: as the config's `run.progress` says (on unless it is set false).
        detach: judging.mode = "batch" only: return once the batches are submitted.

    Returns:
        What judge_summary.json holds, the status ("complete" when every sample has a judgment, else "partial",
            ...), mean scores by criterion, the improvement's win, tie and loss rates, the position-bias rate, calls
            and cost.

    Raises:
        RunInterrupted (a KeyboardInterrupt): a signal stopped the judging once its summary was written (`summary`).
    """
    return run_sync(
        ajudge_run(
            run_dir,
            given_config(config),
            judge_lm=judge,
            on_mismatch=on_mismatch,
            show_progress=show_progress,
            detach=detach,
        )
    )
