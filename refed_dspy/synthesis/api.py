"""Public entry point of a synthesis run: config in, summary out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dspy

from refed_dspy.config import Config, SeedsConfig, fingerprint, fingerprint_diff, to_toml
from refed_dspy.config.load import ConfigLike, as_config
from refed_dspy.config.schema import endpoint_diff
from refed_dspy.config.section import expand_home
from refed_dspy.errors import ConfigError, EndpointError
from refed_dspy.launch.batch.store import batches_open_before_online, moves_with_batches_closed
from refed_dspy.launch.plan import launch
from refed_dspy.ledger.call_log import sent_any
from refed_dspy.methods import METHODS
from refed_dspy.runtime.sync import off_loop, run_sync
from refed_dspy.store.jsonl import read_json, write_jsonl_atomic
from refed_dspy.store.ownership import check, owned
from refed_dspy.store.records import Reference
from refed_dspy.store.rundir import WORKERS_FILE, OnMismatch, RunDir, check_on_mismatch
from refed_dspy.store.seeds import given_references, read_seeds
from refed_dspy.synthesis.estimate import eta_line
from refed_dspy.synthesis.next_work import parts_of
from refed_dspy.synthesis.program import resolve_program, with_lm_of
from refed_dspy.synthesis.run import SynthesisPlan, SynthesisRun
from refed_dspy.synthesis.summary import RunSummary
from refed_dspy.tracking.mlflow_runs import track_run_dir
from refed_dspy.tracking.traces import run_traces

log = logging.getLogger(__name__)


async def arun_synthesis(
    config: Config,
    *,
    teacher: dspy.LM | None = None,
    references: list[Reference] | None = None,
    program: dspy.Module | None = None,
    respond: dspy.Module | None = None,
    answers_from: str | Path | None = None,
    on_mismatch: OnMismatch = "error",
    show_progress: bool = False,
    detach: bool = False,
) -> RunSummary:
    """Run (or resume) a synthesis run inside an existing event loop; returns the summary dict.

    See `synthesize` for the arguments. In batch mode (synthesis.mode = "batch"), `detach` returns once every
    request the run can make so far is submitted (summary status 'submitted'); the same call again collects
    and goes on. With `[local] serve = true`, the local model the teacher needs is started when nothing serves it
    yet, and stopped when the run ends (refed_dspy.clients.local_server), and one line says how long the run takes
    there. The config and what is handed in are resolved once into a SynthesisPlan (the teacher of record, the
    program, the LM and its transport, the references), which `run_plan` runs."""
    check_on_mismatch(on_mismatch)
    check(config.run.dir, "run", flag="run.dir")  # before anything else: a directory not ours is refused at once
    if config.synthesis.mode == "batch" and teacher is not None:
        raise ConfigError(
            "batch mode builds its teacher from the config (its calls go to the provider's batch API): "
            'leave teacher= out, or set synthesis.mode = "online"'
        )
    # the config of record: the teacher that runs (one handed in is described by its own settings), the program
    record = with_lm_of(config, "teacher", teacher) if teacher is not None else config
    run_program, record = resolve_program(record, METHODS.get(record.synthesis.method), program, respond)
    rundir = RunDir(record.run.dir)
    earlier = _answers_from(answers_from, record)  # before anything is read or started
    # handed in where the config names no seeds: kept in the run dir, where its reports, exports and viewer read them
    # (a compare or an experiment hands in the references its config's own [seeds] names)
    given = references is not None and record.seeds.source is None
    with launch(record, "teacher", teacher) as launched:
        if references is None:  # a seed file that is not there is said as such, before the run dir is compared
            references, report = read_seeds(record.seeds)
            log.info(report.line())
        # refused before a local model or Ray's workers start
        _mismatch(rundir, fingerprint(record, run_program.fingerprint_hash), on_mismatch, launched.mode)
        left = record.synthesis.size - (rundir.samples_kept() if launched.local and on_mismatch != "fresh" else 0)
        # once the config is checked: the local model the teacher needs, if any, when samples are left to make
        servers = launched.serve() if left > 0 else []
        if servers:  # off the loop: a stop (Ctrl-C, SIGTERM) is not held up by the estimate or the speed check
            line = await off_loop(eta_line, config, servers[0], references, log.info, left)
            if line:
                log.info(line)
        plan = SynthesisPlan(
            run_dir=Path(record.run.dir),
            settings=record.synthesis,
            teacher=record.teacher,
            program=run_program,
            references=references,
            launch=launched,
            run=record.run,
            record=record,
            on_mismatch=on_mismatch,
            show_progress=show_progress,
            detach=detach,
            answers_from=earlier,
            references_given=given,
        )
        return await run_plan(plan)


def keep_references(rundir: RunDir, references: list[Reference]) -> None:
    """The references handed in written to the run dir (with those an earlier invocation kept): its seeds, for the
    commands that read the run (`kept_seeds`)."""
    kept = (
        {r.id: r for r in read_seeds(SeedsConfig(source=str(rundir.references)))[0]}
        if rundir.references.exists()
        else {}
    )
    kept.update((r.id, r) for r in references)
    write_jsonl_atomic(
        rundir.references, [{"instruction": r.instruction, "response": r.response} for r in kept.values()]
    )


def _mismatch(rundir: RunDir, found: dict[str, Any], on_mismatch: str, mode: str) -> list[str]:
    """The endpoints that moved since the run dir was made (RunDirError while a batch is open at the old one); a
    RunDirError first when another config made it (`RunDir.mismatch`, against the run's fingerprint `found`), and when
    the run resumes online (`mode`) while batches it sent are still open."""

    def moved(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        return moves_with_batches_closed(rundir.path, "batches", endpoint_diff(old, new))

    moves = rundir.mismatch(found, on_mismatch, fingerprint_diff, moved)
    if on_mismatch != "fresh":
        batches_open_before_online(rundir.path, "batches", mode == "batch", "synthesis")
    return moves


def _answers_from(where: str | Path | None, config: Config) -> tuple[Path, ...]:
    """The cache of the work at `where` (an optimization's out dir, a run dir), to read answers from; ConfigError when
    it holds none, or when the run is on Ray (its workers read only the run's own cache)."""
    if where is None:
        return ()
    if config.ray.enabled:
        why = "does not reach Ray's workers (they read only the run's own cache): leave it out"
        raise ConfigError(f"answers_from {why}", cli=f"--answers-from {why}")
    cache = RunDir(expand_home(str(where))).cache
    if not cache.is_dir():
        why = f"{where} holds no cache of answers ({cache} does not exist)"
        raise ConfigError(f"answers_from: {why}", cli=f"--answers-from: {why}")
    return (cache,)


async def run_plan(plan: SynthesisPlan) -> RunSummary:
    """Run a resolved synthesis in its run dir: on Ray its workers started first, then with the run dir held, its
    records prepared, the stage run on the plan's transport, and the run tracked (tracking.enabled)."""
    rundir = RunDir(plan.run_dir)
    parts = parts_of(plan.program.program)
    # on Ray, the workers are started and their keys checked before the run dir is touched
    plan.launch.workers(parts, plan.settings.concurrency, rundir.path, plan.show_progress)
    with owned(rundir.path, "run", "refed synthesize", flag="run.dir"):
        found = fingerprint(plan.record, plan.program.fingerprint_hash)
        moves = _mismatch(rundir, found, plan.on_mismatch, plan.launch.mode)  # again, with the run dir held
        resumed = rundir.prepare(found, to_toml(plan.record), plan.on_mismatch, moves)
        try:
            return await _run_prepared(plan, rundir, parts, resumed)
        except BaseException as err:
            if not resumed and _made_nothing(rundir, err):  # left as it was (what --fresh replaced back in its place)
                rundir.wipe()
                rundir.restore("run")
            raise
        finally:
            rundir.drop_replaced("run")


def _made_nothing(rundir: RunDir, err: BaseException) -> bool:
    """The new run ended by `err` made nothing: its first calls found the endpoint wrong (EndpointError), or a --fresh
    stopped before a request was sent; unless a batch went out (it is billed when it ends: its record collects it)."""
    if any((rundir.path / "batches").glob("*")):
        return False
    return isinstance(err, EndpointError) or (rundir.replaced("run") and not sent_any(rundir.ledger))


async def _run_prepared(plan: SynthesisPlan, rundir: RunDir, parts: dict[str, Any], resumed: bool) -> RunSummary:
    """The run in its prepared run dir: the stage's LM and transport started, the stage run, the run tracked."""
    if plan.references_given:
        keep_references(rundir, plan.references)
    threads = plan.settings.concurrency if plan.program.threaded else 0
    started = plan.launch.start(
        rundir, parts, rundir.path / WORKERS_FILE, threads=threads, detach=plan.detach, earlier=plan.answers_from
    )
    run = SynthesisRun(plan, rundir, started)
    try:
        with run_traces(plan.record, rundir.path):  # tracking.log_traces: a sample of its DSPy calls in MLflow
            return await run.run(resumed)
    finally:
        if plan.record.tracking.enabled and rundir.summary.exists():
            summary = read_json(rundir.summary)
            track_run_dir(plan.record, rundir.path, "synthesize", summary, [rundir.summary, rundir.fingerprint])


def synthesize(
    config: ConfigLike | None = None,
    overrides: list[str] | None = None,
    *,
    teacher: dspy.LM | None = None,
    references: list[Reference] | None = None,
    program: dspy.Module | None = None,
    respond: dspy.Module | None = None,
    answers_from: str | Path | None = None,
    on_mismatch: OnMismatch = "error",
    show_progress: bool | None = None,
    detach: bool = False,
) -> RunSummary:
    """Run (or resume) synthesis and return its summary; works in scripts and inside a running event loop (Jupyter).

    Args:
        config: a Config, a TOML path, a mapping of its tables, or None for the defaults.
        overrides: `section.key=value` strings, as `--set` takes them (not with a Config).
        teacher: a dspy.LM to use instead of building one from [teacher]; its model, api_base, temperature and
            max_tokens replace the config's in the run's fingerprint, config.toml and every record.
        references: the references to use instead of reading [seeds].
        program: a whole pipeline (ReferenceSynthesis, ReflectionTuning, a compiled one, or your own module with
            parts `collect`, `synthesizer`, `respond`) to run instead of the method's built-in one.
        respond: only the per-instruction part (e.g. a compiled RespondAndImprove); the rest is built in.
        answers_from: the directory of work this run builds on (an optimization's `out_dir`, another run dir): a
            request its cache holds an answer for is answered from there (copied into this run's cache, counted as
            from the cache, not paid again), as the feedback an optimization's examples run collected on the same
            references. Not on Ray (a ConfigError: its workers read only the run's own cache).
        on_mismatch: for a run dir made by another config or program: "error" (refuse), "resume" (continue it
            anyway) or "fresh" (delete its records and start over).
        show_progress: show progress on stderr (a bar on a terminal, else a line every `run.progress_every_s`);
            None: as the config's `run.progress` says (on unless it is set false).
        detach: batch mode only: return once the requests are submitted.

    Returns:
        The run's summary (what summary.json holds): its status, samples made and wanted, calls, tokens and cost.

    Raises:
        ConfigError, SeedError, MissingKeyError, RunDirError: the input is unusable (nothing is paid).
        KeyProviderError: a key would reach a host that is not its provider's (refused before the request is sent).
        EndpointError (a ConfigError): the first calls found the endpoint wrong: not found, the key refused, a reply
            in another format (a call or two is paid; a run dir that held nothing is left empty).
        RunAborted: the provider or the machine stopped the run (resumable).
        RunInterrupted (a KeyboardInterrupt): a signal stopped the run once its summary was written (`summary`).
    """
    config = as_config(config, overrides)
    run = arun_synthesis(
        config,
        teacher=teacher,
        references=given_references(references),
        program=program,
        respond=respond,
        answers_from=answers_from,
        on_mismatch=on_mismatch,
        show_progress=config.run.progress if show_progress is None else show_progress,
        detach=detach,
    )
    return run_sync(run)
