"""The run directory: its files, the config check on reuse, the state a resume starts from, and the config it was
made with (its config.toml, read as a record of what ran: `run_config`).

Its events (`EventLog`): one JSON line per state change its scheduler makes, bounded in size.

`events.jsonl` in the run dir holds what the engine decided and when (the window moved, a piece of work scheduled to
run again, a budget refusal, a Ray worker lost, a provider batch submitted or ended, the run started or ended), each
line with its time, the role whose engine made it and the event's own fields. It is written through the run dir's
masked writer (refed_dspy.store.jsonl), one line at a time, so a reader such as `refed view` follows it while the
run writes it. Bounded: once it holds `max_bytes`, it is moved to `events.1.jsonl` (replacing the one there) and
begun anew, so the two take at most twice `max_bytes` and a line. A file that cannot be written (a full disk) ends
the events (never taking the run dir's reserve, which is the records'): the records' writers say the problem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from refed_dspy.config import Config, SeedsConfig, config_from_dict
from refed_dspy.config.schema import endpoint_moved_line
from refed_dspy.config.section import tomllib
from refed_dspy.errors import ConfigError, RunDirError, write_error
from refed_dspy.store.jsonl import (
    RESERVE_BYTES,
    RESERVE_NAME,
    JsonlWriter,
    parse_record,
    read_json,
    read_jsonl,
    set_aside,
    write_json_atomic,
    write_text_atomic,
)
from refed_dspy.store.lock import holder
from refed_dspy.store.ownership import is_run_dir, refuse_folder
from refed_dspy.store.records import ReferenceFeedback, teacher_key

log = logging.getLogger(__name__)
ON_MISMATCH = ("error", "resume", "fresh")
REPLACED = ".replaced"  # what --fresh replaced, by command, kept in the run dir until the new work has gone on
OnMismatch = Literal["error", "resume", "fresh"]


def check_on_mismatch(value: str) -> str:
    """`value` when it is one of ON_MISMATCH; ConfigError (naming the Python values) otherwise."""
    if value not in ON_MISMATCH:
        raise ConfigError(
            f"on_mismatch={value!r} is not one of {', '.join(repr(v) for v in ON_MISMATCH)} "
            "(refuse a run dir made by another config, continue it anyway, or start it over)"
        )
    return value


WORKERS_FILE = "workers.json"  # a synthesis on Ray: its workers as the driver last saw them (refed status reads it)
JUDGE_WORKERS_FILE = "judge_workers.json"  # the same of a judging on Ray


@dataclass
class ResumeState:
    """What earlier invocations of this run already did."""

    feedback: dict[str, ReferenceFeedback] = field(default_factory=dict)
    feedback_failed: set[str] = field(default_factory=set)
    units: dict[str, dict[str, Any]] = field(default_factory=dict)
    sample_ids: set[str] = field(default_factory=set)
    final_reject_ids: set[str] = field(default_factory=set)
    reject_keys: set[str] = field(default_factory=set)
    samples: int = 0
    teachers: Counter = field(default_factory=Counter)  # samples by (teacher model, endpoint)
    rejects: int = 0  # reject records on file (a summary counts them all)
    reject_reasons: Counter = field(default_factory=Counter)  # those records by (stage, reason)


class RunDir:
    """Files of one run (see DESIGN.md, "The run directory is the unit of resumption")."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.toml"
        self.fingerprint = self.path / "fingerprint.json"
        self.feedback = self.path / "feedback.jsonl"
        self.samples = self.path / "samples.jsonl"
        self.references = self.path / "references.jsonl"  # references handed in from Python: the run's seeds
        self.rejects = self.path / "rejects.jsonl"
        self.journal = self.path / "journal.jsonl"
        self.ledger = self.path / "ledger.jsonl"  # the write-ahead log of the synthesis's calls (ledger/call_log.py)
        self.judge_ledger = self.path / "judge_ledger.jsonl"  # the same of the judging's
        self.cache = self.path / "cache"
        self.summary = self.path / "summary.json"
        self.judgments = self.path / "judgments.jsonl"
        self.judge_rejects = self.path / "judge_rejects.jsonl"
        self.judge_fingerprint = self.path / "judge_fingerprint.json"
        self.judge_summary = self.path / "judge_summary.json"
        # records written only once a ledger is open: one of them without its ledger shows the ledger is gone
        self.shows_ledger = (self.feedback, self.samples, self.rejects, self.journal)
        self.shows_judge_ledger = (self.judgments, self.judge_rejects)
        # what a run shows while it works (refed_dspy.engine.watch): its figures, by stage, and its events
        self.metrics = self.path / "metrics.json"
        self.judge_metrics = self.path / "judge_metrics.json"
        self.events = self.path / EVENTS_FILE

    def prepare(
        self,
        fingerprint: dict[str, Any],
        config_toml: str,
        on_mismatch: str = "error",
        moves: list[str] | None = None,
    ) -> bool:
        """Create or reuse the run dir, once `mismatch` has found it was made by this config. Returns True when earlier
        work exists (a resume).

        fingerprint: the values that decide what the run produces (refed_dspy.config.schema); config_toml: the
        resolved config, written as config.toml. on_mismatch: "fresh" deletes its records and starts over; a folder
        of the run that is a symbolic link (a cache shared between runs) is left as it is, and said in one line (see
        `wipe`). `moves`: the endpoints that moved (`mismatch`), said in one line (the model behind the new endpoint
        taken to be the same).
        """
        check_on_mismatch(on_mismatch)
        self._probe()
        existing = self.fingerprint.exists() or self.samples.exists() or self.feedback.exists()
        if on_mismatch == "fresh":
            if existing:
                self.put_aside([self.config, *self.records()], "run")
                existing = False
            for link in self.linked_folders():
                log.warning(kept_link_line(link))
        else:
            self.drop_replaced("run")  # what an earlier --fresh replaced and a kill left: the work it began goes on
            if moves:
                model = fingerprint.get("teacher", {}).get("model", "?")
                log.warning(endpoint_moved_line(str(self.path), moves, model))
        try:
            self._keep_room()
            write_json_atomic(self.fingerprint, fingerprint)
            write_text_atomic(self.config, config_toml)
        except OSError as err:
            self.restore("run")  # nothing begun: what --fresh set aside is back
            raise write_error(f"run directory {self.path}", err) from None
        except RunDirError:
            self.restore("run")
            raise
        return existing

    def mismatch(
        self,
        fingerprint: dict[str, Any],
        on_mismatch: str = "error",
        diff: Callable[[dict[str, Any], dict[str, Any]], list[str]] | None = None,
        moved: Callable[[dict[str, Any], dict[str, Any]], list[str]] | None = None,
    ) -> list[str]:
        """The endpoints that moved since the run dir's `fingerprint` was written; RunDirError, one line, when it is
        unreadable or a different config made the run dir and `on_mismatch` is "error" ("resume" continues it anyway,
        "fresh" starts over). `diff(old, new)` names the differences (without it, any difference is one); `moved(old,
        new)` the endpoints that differ (refed_dspy.config.schema.endpoint_diff), which `diff` leaves out: alone they
        resume the dir, with other differences they are named in the refusal. Reads, writes nothing: a command asks it
        before it starts anything (a local model, Ray's workers), then `prepare`s the run dir."""
        if on_mismatch == "fresh" or not self.fingerprint.exists():
            return []
        try:
            old = json.loads(self.fingerprint.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunDirError(
                f'{self.fingerprint} is unreadable ({err}); use on_mismatch="fresh" to start over',
                cli=f"{self.fingerprint} is unreadable ({err}); use --fresh to start over",
            ) from None
        found = diff(old, fingerprint) if diff is not None else (["fingerprint"] if old != fingerprint else [])
        moves = moved(old, fingerprint) if moved is not None else []
        if found and on_mismatch != "resume":
            what = f"{self.path} was made by a different config ({'; '.join(found + moves)})"
            raise RunDirError(
                f'{what}; use another run.dir, on_mismatch="resume" to continue it, or on_mismatch="fresh" to start '
                "over",
                cli=f"{what}; use another run.dir, --resume-anyway to continue it, or --fresh to start over",
            )
        return moves

    def samples_kept(self) -> int:
        """The samples samples.jsonl holds (distinct ids), read without a repair: what a resume starts from."""
        return len({row["meta"]["id"] for row in read_jsonl(self.samples)})

    def _probe(self) -> None:
        """RunDirError, one line, when the run dir cannot be made or written (a full disk says what to do)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            try:
                probe.write_text("ok")
            finally:
                probe.unlink(missing_ok=True)
        except OSError as err:
            raise write_error(f"run directory {self.path}", err) from None

    def _keep_room(self) -> None:
        """Set the reserve aside (store/jsonl.py: room for the last lines when the disk fills up) before the run
        writes its own files: a disk without that much room is full from the start, and the run stops here, in one
        line, before a call is paid for (it gave a traceback from the cache's first write)."""
        if not set_aside(self.path):
            raise RunDirError(
                f"cannot write to run directory {self.path}: its disk has less than {RESERVE_BYTES >> 20} MiB free, "
                "which a run sets aside for its last lines should the disk fill up; free some space there, or "
                "choose a run.dir on another disk"
            )

    def linked_folders(self) -> list[Path]:
        """The run's own folders (cache/, batches/, judge_batches/) that are symbolic links: a user's deliberate
        link, to a cache shared between runs for one."""
        return [p for p in (self.cache, self.path / "batches", self.path / "judge_batches") if p.is_symlink()]

    def wipe(self) -> None:
        """Delete the run's records, journal, cache and batch records (what --fresh replaces; its config.toml, which
        says what was tried, stays). A folder of those that is a symbolic link is left as it is, and so is what it
        points to: the link is the user's (a cache shared between runs), and its target holds what other runs paid
        for."""
        for p in self.records():
            _remove(p)

    def records(self) -> list[Path]:
        """The run's records, journal, cache and batch records (`wipe`): its folders that are links left out."""
        files = [
            self.references,
            self.feedback,
            self.samples,
            self.rejects,
            self.journal,
            self.ledger,
            self.judge_ledger,
            self.summary,
            self.fingerprint,
            self.judgments,
            self.judge_rejects,
            self.judge_fingerprint,
            self.judge_summary,
            self.metrics,
            self.judge_metrics,
            self.events,
            self.path / OLDER_EVENTS_FILE,
            self.path / RESERVE_NAME,
        ]
        linked = self.linked_folders()
        # batch mode's records go with the cache (a batch still open is left to expire)
        return files + [f for f in (self.cache, self.path / "batches", self.path / "judge_batches") if f not in linked]

    def put_aside(self, paths: list[Path], who: str) -> None:
        """What --fresh of command `who` (run, judge) replaces (`paths`, in the run dir), moved into REPLACED/<who>:
        `restore` brings it back when the new work made nothing (its first calls found the endpoint or model wrong, or
        it stopped before sending a request); `drop_replaced` deletes it once the new work has gone on. What an earlier
        --fresh of `who` set aside and a kill left is kept (it is what a restore brings back): `paths` are then
        deleted. The disk's reserve is deleted, never set aside (a new one is taken)."""
        aside = self.path / REPLACED / who
        kept = aside.is_dir()
        aside.mkdir(parents=True, exist_ok=True)
        for p in paths:
            if kept or p.name == RESERVE_NAME:
                _remove(p)
            elif p.exists() or p.is_symlink():
                p.rename(aside / p.name)

    def replaced(self, who: str) -> bool:
        """Whether what --fresh of `who` replaced is set aside now."""
        return (self.path / REPLACED / who).is_dir()

    def restore(self, who: str) -> None:
        """What `put_aside` moved for `who`, back in its place (what the new work made there deleted first by the
        caller)."""
        aside = self.path / REPLACED / who
        if not aside.is_dir():
            return
        for kept in aside.iterdir():
            _remove(self.path / kept.name)
            kept.rename(self.path / kept.name)
        self.drop_replaced(who)

    def drop_replaced(self, who: str) -> None:
        """What `put_aside` moved for `who`, deleted: the new work went on."""
        shutil.rmtree(self.path / REPLACED / who, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.path / REPLACED).rmdir()  # when it holds nothing more

    def load(
        self, repair: bool = True, tally: Callable[[dict[str, Any] | None], object] = lambda usage: None
    ) -> ResumeState:
        """Read what is done, repairing any line torn by a kill (`repair=False`: a reader's view, which skips such a
        line and writes nothing); `tally` is handed the usage of every call a record holds (the ledger's totals)."""
        state = ResumeState()
        for row in read_jsonl(self.feedback, repair=repair):
            fb = ReferenceFeedback.model_validate(row)
            state.feedback[fb.reference_id] = fb
            tally(record_usage("feedback", row))
        for row in read_jsonl(self.journal, repair=repair):
            if row.get("kind") == "unit":
                state.units[row["unit"]] = row
            tally(record_usage("journal", row))
        for row in read_jsonl(self.samples, repair=repair):
            state.sample_ids.add(row["meta"]["id"])
            state.teachers[teacher_key(row["meta"])] += 1
            tally(record_usage("samples", row))
        state.samples = len(state.sample_ids)
        for row in read_jsonl(self.rejects, repair=repair):
            state.rejects += 1
            state.reject_reasons[(str(row.get("stage")), str(row.get("reason")))] += 1
            tally(record_usage("rejects", row))
            key = f"{row.get('stage')}:{row.get('item_id')}"
            state.reject_keys.add(key)
            if row.get("stage") == "feedback" and row.get("final", True):
                state.feedback_failed.add(row.get("reference_id"))
            elif row.get("final", True) and row.get("item_id"):
                state.final_reject_ids.add(row["item_id"])
        return state

    def writers(self) -> dict[str, JsonlWriter]:
        return {name: JsonlWriter(getattr(self, name)) for name in ("feedback", "samples", "rejects", "journal")}


def record_usage(name: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """The usage of the LM calls a record of the run's file `name` (feedback, journal, samples, rejects) holds: a unit's,
    and an attempt's that left no other record (retried or cut off: its calls were paid all the same); None: none."""
    if name == "samples":
        return (row.get("meta") or {}).get("usage")
    if name == "journal" and row.get("kind") not in ("unit", "attempt"):
        return None
    return row.get("usage")


def kept_link_line(link: Path) -> str:
    """The one line that says a run started over keeps `link`, a folder of the run that is a symbolic link, and what
    the user does for a fresh one."""
    target = os.path.realpath(link)
    reuse = ": the answers already stored there are used again, free" if link.name == "cache" else ""
    return (
        f"starting over: {link} is a link to {target}, which is left as it is (it may be shared with other runs)"
        f"{reuse}; to start with it empty as well, remove the link (rm {link}) and run again"
    )


def incomplete_note(path: str | Path) -> str | None:
    """Why the data of a run dir (or of the run behind a filtered dir) may not be final, or None when its run
    finished: still being written by another process, stopped without a summary, or finished short."""
    rundir = RunDir(path)
    source = read_json(rundir.path / "filter_summary.json").get("source_run")
    if source:
        note = incomplete_note(source)
        return f"its source run {source} is {note.removeprefix('it is ')}" if note else None
    who = holder(rundir.path)
    if who is not None and who.get("pid") != os.getpid():
        return f"it is still being written by PID {who.get('pid')} ({who.get('command', 'refed')})"
    summary = read_json(rundir.summary)
    if not summary:
        return (
            "it is incomplete: it has no summary.json (it was stopped before it finished)"
            if rundir.samples.exists()
            else None
        )
    if summary.get("status") != "complete":
        return (
            f"it is incomplete: status {summary.get('status')}, {summary.get('samples')} of {summary.get('size')} "
            "samples (run `refed synthesize` again to finish it)"
        )
    return None


def run_config(rundir: RunDir) -> Config:
    """The config a run dir was made with (its config.toml), for a command that reads the run: the method and
    optimizer it names need not be registered in this process."""
    if not rundir.config.exists():
        refuse_folder(rundir.path, "a run directory", is_run_dir)  # a compare dir, a user's runs/: its run dirs
        raise RunDirError(f"{rundir.path} is not a run directory (no config.toml); run `refed synthesize` first")
    try:
        data = tomllib.loads(rundir.config.read_text(encoding="utf-8"))
        data.pop("ray", None)  # where the run was made does not say where a command on it runs
        return kept_seeds(rundir, config_from_dict(data, record=True))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{rundir.config} is not valid TOML: {err}") from None


def kept_seeds(rundir: RunDir, config: Config) -> Config:
    """`config` (a run's own) with its [seeds] the references handed in from Python that the run dir keeps
    (references.jsonl, wherever the run dir is now), when they are its seeds: its config names no seed source."""
    if config.seeds.source is not None or not rundir.references.is_file():
        return config
    return config.model_copy(update={"seeds": SeedsConfig(source=str(rundir.references))})


EVENTS_FILE = "events.jsonl"
OLDER_EVENTS_FILE = "events.1.jsonl"  # the events before the last rotation
MAX_EVENTS_BYTES = 4 * 1024 * 1024  # of events.jsonl; with events.1.jsonl a run keeps at most twice this


class EventLog:
    """Appends events to `run_dir/events.jsonl` (see the module docstring). Thread-safe."""

    def __init__(self, run_dir: str | Path, role: str, max_bytes: int = MAX_EVENTS_BYTES):
        self.path = Path(run_dir) / EVENTS_FILE
        self.older = Path(run_dir) / OLDER_EVENTS_FILE
        self.role, self.max_bytes = role, max_bytes
        self._writer: JsonlWriter | None = JsonlWriter(self.path, reserve=False)  # the reserve is the records'
        self._lock = threading.Lock()

    def add(self, event: str, **fields: Any) -> None:
        """Append one event (`event`: its kind) with `fields`, stamped with the time and the role."""
        now = time.time()
        line = {
            "at": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
            "t": round(now, 3),
            "role": self.role,
            "event": event,
            **fields,
        }
        with self._lock:
            if self._writer is None:
                return
            try:
                self._rotate_if_full()
                self._writer.append(line)
            except (OSError, RunDirError) as err:
                # said once at debug level: the records' writers say a disk problem in their one line
                log.debug("the run's events stop here: cannot write %s (%s)", self.path, err)
                self._writer.close()
                self._writer = None

    def _rotate_if_full(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size >= self.max_bytes:
            self._writer.close()
            os.replace(self.path, self.older)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def _remove(path: Path) -> None:
    """`path` deleted, a file or a folder (a link itself, never what it points to); nothing when it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def last_event(run_dir: str | Path, role: str, kinds: tuple[str, ...]) -> dict[str, Any] | None:
    """The last event of `role` among `kinds` in the run's events.jsonl, read from its end (None: none there):
    ("started", "ended") says whether its last invocation ended (a kill leaves it "started")."""
    try:
        with (Path(run_dir) / EVENTS_FILE).open("rb") as fh:
            end, rest = fh.seek(0, os.SEEK_END), b""
            while end > 0:
                start = max(0, end - 65536)
                fh.seek(start)
                lines = (fh.read(end - start) + rest).split(b"\n")
                rest = lines.pop(0) if start > 0 else b""  # a line that began before this block
                for raw in reversed(lines):
                    row = parse_record(raw)
                    if row is not None and row.get("role") == role and row.get("event") in kinds:
                        return row
                end = start
    except OSError:
        return None
    return None
