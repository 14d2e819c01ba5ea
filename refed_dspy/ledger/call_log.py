"""The write-ahead log of the LM calls made for one directory: what a kill -9 cannot hide from the ledger.

Every request is written down before it is sent, so that a process killed at any moment leaves behind what it may
have paid. One log belongs to one owner of a directory (a synthesis run, a judging, an optimization, a part of an
experiment), which holds the directory's lock while it writes; its lines:

- `{"open": ID, "pid": N, "at": TIME}`: an invocation starts;
- `{"s": n, "r": ROLE, "g": STAGE, "m": MODEL, "n": CALLS, "b": BOUND}`: request `n` (or a task of `CALLS`
  requests, sent to a Ray worker) is about to be sent; each may cost up to `BOUND` dollars (what the ledger reserved
  for it). Written before the request leaves the process;
- `{"p": n, ...}`: request `n` is over, with what it paid (tokens `t`: prompt, completion, read from and written to the
  provider's prompt cache; of the completion tokens the hidden reasoning `r`, where there is some; cost `c`; the
  service tier that served it `v`, sent on the default tier after flex found no capacity `fb`; a cache hit `h`, a
  request with no reply `f` (`nc`: answered "no capacity on the tier asked for"), a request cut off in flight `x`)
  or, for a task, its usage (`u`);
- `{"k": [n, ...]}`: the owner has written what those requests paid into its own files (a record, a journal line,
  a summary): they are accounted there;
- `{"end": ID}`: the invocation ended cleanly: everything it paid is in the owner's files;
- `{"lost": USAGE, "of": [ID, ...]}`: what earlier invocations that did not end cleanly paid and no file of the
  owner holds, as a usage dict (refed_dspy.ledger.usage).

Each line is one write(2) on a descriptor opened with O_APPEND: once `sent` returns, the line survives the process
being killed (not the machine losing power: there is no fsync per request). The next invocation opens the log under
the same lock: an invocation that left no `end` was killed, and of its requests those not kept are counted, settled
ones at what they paid, the rest (in flight at the kill) as paid at their bound (`lost_in_flight`). That is written as
one `lost` line and the log is rewritten to hold only its `lost` lines, so it stays as long as one invocation's calls.
The owner adds `lost` to what its files say was paid: a budget is never exceeded by what a crash hid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from refed_dspy.clients.calls import CallInfo
from refed_dspy.errors import LedgerError
from refed_dspy.ledger.lines import call_log_line, read_lines
from refed_dspy.ledger.usage import Totals, usage_of
from refed_dspy.providers.prices import Price
from refed_dspy.store.jsonl import write_text_atomic

logger = logging.getLogger(__name__)
LOG_NAME = "ledger.jsonl"
NEW_LEDGER = "--new-ledger"  # the flag that goes on in a directory whose log is gone (run.new_ledger = true)
_ZERO_PRICE = Price(0.0, 0.0, 0.0)  # every settled call carries its own cost


@dataclass
class _Request:
    """One reservation of a dead invocation, as its lines tell it."""

    role: str
    stage: str
    model: str
    calls: int
    bound: float
    paid: dict[str, Any] | None = None
    kept: bool = False


def _info_of(req: _Request, paid: dict[str, Any]) -> list[CallInfo]:
    """The calls a settled line stands for (a task's usage is kept as it is, apart)."""
    tokens = [*(paid.get("t") or []), 0, 0, 0, 0]  # a line written before cache writes were counted has 3
    return [
        CallInfo(
            stage=req.stage,
            model=req.model,
            prompt_tokens=int(tokens[0]),
            completion_tokens=int(tokens[1]),
            cached_tokens=int(tokens[2]),
            cache_write_tokens=int(tokens[3]),
            reasoning_tokens=int(paid.get("r") or 0),
            cache_hit=bool(paid.get("h")),
            error=paid.get("f"),
            interrupted=bool(paid.get("x")),
            tokens_unknown=bool(paid.get("unk")),
            service_tier=paid.get("v"),
            tier_unavailable=bool(paid.get("nc")),
            fallback=bool(paid.get("fb")),
            cost_usd=paid.get("c") if not paid.get("x") else None,
            cost_bound_usd=req.bound if paid.get("x") else None,
        )
    ]


def lost_usage(lines: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[str]]:
    """What the invocations in `lines` that did not end cleanly paid and their owner's files do not hold: a usage
    dict (None when nothing), and the ids of those invocations. Pure: the lines of one log, in order."""
    requests: dict[str, dict[int, _Request]] = {}
    current: str | None = None
    ended: set[str] = set()
    for line in lines:
        if "open" in line:
            current = str(line["open"])
            requests[current] = {}
        elif current is None:
            continue
        elif "s" in line:
            requests[current][int(line["s"])] = _Request(
                role=str(line.get("r") or "lm"),
                stage=str(line.get("g") or "unknown"),
                model=str(line.get("m") or "?"),
                calls=int(line.get("n") or 1),
                bound=float(line.get("b") or 0.0),
            )
        elif "p" in line:
            req = requests[current].get(int(line["p"]))
            if req is not None:
                req.paid = line
        elif "k" in line:
            for n in line["k"]:
                req = requests[current].get(int(n))
                if req is not None:
                    req.kept = True
        elif "end" in line:
            ended.add(current)
    dead = [inv for inv in requests if inv not in ended]
    totals, calls, tasks, in_flight, roles = Totals(), [], [], 0, Counter()
    for inv in dead:
        for req in requests[inv].values():
            if req.kept:
                continue
            if req.paid is None:  # in flight at the kill: sent, perhaps answered and billed, never read
                in_flight += req.calls
                roles[req.role] += req.calls
                calls += [
                    CallInfo(req.stage, req.model, interrupted=True, cost_bound_usd=req.bound) for _ in range(req.calls)
                ]
            elif isinstance(req.paid.get("u"), dict):  # a task's calls, as its worker reported them
                tasks.append(req.paid["u"])
                roles[req.role] += int(req.paid["u"].get("calls") or 0)
            else:
                found = _info_of(req, req.paid)
                roles[req.role] += sum(1 for c in found if not (c.cache_hit or c.error))
                calls += found
    if not calls and not tasks:
        return None, dead
    totals.add(usage_of(calls, _ZERO_PRICE))
    for usage in tasks:
        totals.add(usage)
    out = totals.as_dict()
    out["lost_in_flight"] = in_flight
    out["by_role"] = {role: {"calls": n} for role, n in sorted(roles.items()) if n}
    if any(c.cost_usd is None and not (c.cache_hit or c.error or c.interrupted) for c in calls):
        out["cost_usd"] = None  # priced by nothing when it was paid: its cost is unknown
    out["by_stage"] = {name: bucket for name, bucket in out["by_stage"].items() if bucket.get("calls")}
    return out, dead


def _read(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The complete lines of the log, each checked before it is believed (refed_dspy.ledger.lines: LedgerError
    names a line refed does not write, and a file that cannot be read), and whether its last line was torn by a kill
    (left out: its request was not sent)."""
    return read_lines(path, call_log_line)


def _lost_lines(lines: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the `lost` lines among `lines` add up to, with their calls by role; None when there are none."""
    totals, found, roles = Totals(), False, Counter()
    for line in lines:
        if isinstance(line.get("lost"), dict):
            totals.add(line["lost"])
            for role, part in (line["lost"].get("by_role") or {}).items():
                roles[role] += int((part or {}).get("calls") or 0)
            found = True
    if not found:
        return None
    return {**totals.as_dict(), "by_role": {role: {"calls": n} for role, n in sorted(roles.items()) if n}}


def lost_in(path: str | Path) -> dict[str, Any] | None:
    """What the `lost` lines of the log at `path` add up to (a reader's view: the log is not changed); None when
    it has none."""
    return _lost_lines(_read(Path(path))[0])


def unaccounted(path: str | Path) -> dict[str, Any] | None:
    """What the log at `path` says was paid, or may have been, that no file of its owner holds, as a reader sees it
    (the log is not changed; its lock is not taken): its `lost` lines, and every invocation that has not ended
    (killed, or still running), its settled requests at what they paid and those in flight as paid at their bound
    (`lost_in_flight`, `interrupted_cost_usd`). A usage dict with calls by role; None when nothing."""
    lines, _ = _read(Path(path))
    found, _ = lost_usage(lines)
    earlier = _lost_lines(lines)
    if found is None or earlier is None:
        return found or earlier
    both = Totals()
    both.add(earlier)
    both.add(found)
    roles: Counter = Counter()
    for usage in (earlier, found):
        for role, part in (usage.get("by_role") or {}).items():
            roles[role] += int((part or {}).get("calls") or 0)
    return {**both.as_dict(), "by_role": {role: {"calls": n} for role, n in sorted(roles.items()) if n}}


class CallLog:
    """The write-ahead log of one owner's LM calls in a directory (see the module docstring).

    `CallLog.open(path)` reconciles what killed invocations left, then starts this one; `lost` is everything such
    invocations paid that no file of the owner holds (None when nothing), `found_now` what this opening found.
    Thread-safe: requests are numbered under a lock and each line is one write.
    """

    def __init__(self, path: Path, fd: int, invocation: str, lost: dict[str, Any] | None, found_now: dict | None):
        self.path = path
        self.invocation = invocation
        self.lost = lost
        self.found_now = found_now
        self._fd: int | None = fd
        self._next = 0
        self._lock = threading.Lock()
        self.summary_stamp: Any = None  # its owner's: which summary was on disk when it opened

    @classmethod
    def open(cls, path: str | Path, shown_by: tuple[Path, ...] = (), new_ledger: bool = False) -> CallLog:
        """Open the log at `path` for a new invocation; the caller holds the directory's lock (no other writer).

        `shown_by`: files its owner writes only once it has a log (its records). When one of them is there and the log
        is not, the log is gone, and with it what it held that no record does (the calls a killed invocation had in
        flight): LedgerError, unless `new_ledger` (a new log is started, said in one line). A line of the log refed
        does not write, or a log that cannot be read, is LedgerError too: nothing it says is believed."""
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            _gone(path, next((p for p in shown_by if p.exists()), None), new_ledger)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines, torn = _read(path)
        found, dead = lost_usage(lines)
        kept = [line for line in lines if isinstance(line.get("lost"), dict)]
        if found is not None:
            kept.append({"lost": found, "of": dead})
        if lines != kept or torn:  # compacted: what earlier invocations left is their `lost` lines
            write_text_atomic(path, "".join(json.dumps(line) + "\n" for line in kept))
        invocation = uuid.uuid4().hex[:12]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        log = cls(path, fd, invocation, _lost_lines(kept), found)
        log._write(
            {"open": invocation, "pid": os.getpid(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        )
        return log

    def _write(self, obj: dict[str, Any]) -> None:
        fd = self._fd
        if fd is None:
            return
        line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        with contextlib.suppress(OSError):  # a full disk: the reservation holds in memory; the run stops on records
            os.write(fd, line)

    def sent(self, role: str, stage: str, model: str, bound: float, calls: int = 1) -> int:
        """Write down a request (or a task of `calls` requests) about to be sent, each costing up to `bound`; its id."""
        with self._lock:
            self._next += 1
            n = self._next
        self._write({"s": n, "r": role, "g": stage, "m": model, "n": calls, "b": round(bound, 8)})
        return n

    def settled(self, n: int, info: CallInfo, cost: float | None) -> None:
        """Request `n` is over: what it paid (`cost`: its price in dollars, None when unknown)."""
        line: dict[str, Any] = {"p": n}
        if info.error is not None:
            line["f"] = info.error
            if info.tier_unavailable:
                line["nc"] = 1
        elif info.interrupted:
            line["x"] = 1
        elif info.cache_hit:
            line["h"] = 1
        else:
            line["t"] = [info.prompt_tokens, info.completion_tokens, info.cached_tokens, info.cache_write_tokens]
            if info.reasoning_tokens:  # of the completion tokens, the hidden reasoning (said apart; billed in `t`)
                line["r"] = info.reasoning_tokens
            line["c"] = None if cost is None else round(cost, 10)
            if info.tokens_unknown:
                line["unk"] = 1
            if info.service_tier is not None:
                line["v"] = info.service_tier
            if info.fallback:
                line["fb"] = 1
        self._write(line)

    def settled_task(self, n: int, usage: dict[str, Any]) -> None:
        """Task `n` is over: the usage of its calls (as a Ray worker reported them)."""
        self._write({"p": n, "u": usage})

    def kept(self, ids: list[int]) -> None:
        """The owner has written what requests `ids` paid into its own files."""
        if ids:
            self._write({"k": ids})

    def end(self, reported_lost: bool = False) -> None:
        """This invocation ended cleanly: everything it paid is in the owner's files. The log is closed.
        `reported_lost`: the owner has also written `lost` into its files (an owner that reports each invocation's
        spending apart, as an optimization does): the log is emptied."""
        self._write({"end": self.invocation})
        self.close()
        if reported_lost:
            with contextlib.suppress(OSError):
                os.truncate(self.path, 0)

    def close(self) -> None:
        """Close the log without ending the invocation (what it paid and did not keep is counted on the next open)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _gone(path: Path, shown_by: Path | None, new_ledger: bool) -> None:
    """The log at `path` is not there: LedgerError when `shown_by` (a record of its owner) shows there was one, unless
    `new_ledger`, which says in one line that a new one is started."""
    if shown_by is None:
        return
    what = (
        f"{path} is gone, though {shown_by} shows {path.parent} had one: the calls an invocation killed before had in "
        "flight, paid and in no record, would go uncounted"
    )
    if not new_ledger:
        raise LedgerError(
            f"{what}; put the file back, or set run.new_ledger = true ({NEW_LEDGER}) to go on without them",
            cli=f"{what}; put the file back, or run the same command with {NEW_LEDGER} to go on without them",
        )
    logger.warning("warning: %s; a new ledger is started (%s)", what, NEW_LEDGER)
