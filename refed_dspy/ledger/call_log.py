"""The write-ahead log of the LM calls made for one directory: what a kill -9 cannot hide from the ledger.

Every request is written down before it is sent, so that a process killed at any moment leaves behind what it may
have paid. One log belongs to one owner of a directory (a synthesis run, a judging, an optimization, a part of an
experiment), which holds the directory's lock while it writes; its lines:

- `{"open": ID, "pid": N, "at": TIME, "from": K}`: an invocation starts; K is the last request written before it;
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
- `{"end": ID, "to": n}`: the invocation ended cleanly, its last request `n`: everything it paid is in the owner's
  files (`"all": 1`: and what earlier invocations left unaccounted too, an owner that reports it);
- `{"lost": USAGE, "paid": USAGE, "of": [ID, ...], "to": n}`: the log folded, up to request `n`: what the invocations
  folded paid that no file of the owner holds (`lost`), what they paid in all (`paid`), the ids of those killed.

Requests are numbered across invocations, one after the other, each line written under the log's lock with one
write(2) on a descriptor opened with O_APPEND: once `sent` returns, the line survives the process being killed (not the
machine losing power: there is no fsync per request). The log is kept whole: no owner empties it, and it is folded
into one `lost` line only when it grows past COMPACT_BYTES, keeping the last number and what it folded.

So an edit that lowers what it says was paid shows, and the log is not believed (LedgerError, one line naming the file
and the line, exit 2, before any call): a request number missing or out of turn (a paid call's lines deleted), an
invocation that does not start where the one before ended (a `lost` line deleted), a `p` or `k` of a request its
invocation never sent, an `end` that is not its invocation's last request, a file emptied though the owner's records
show it had lines, a folded line torn. `--new-ledger` (run.new_ledger) sets such a file aside and starts a new one.

The next invocation opens the log under the same lock: an invocation that left no `end` was killed, and of its
requests those not kept are counted, settled ones at what they paid, the rest (in flight at the kill) as paid at their
bound (`lost_in_flight`); a last line a kill tore is charged as one more request in flight, at the most any request of
the log was reserved at. The owner adds `lost` to what its files say was paid (`earlier`, what every earlier
invocation paid in all, for an owner whose files hold only the last one's): a budget is never exceeded by what a
crash hid.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from refed_dspy.clients.calls import CallInfo
from refed_dspy.errors import LedgerError
from refed_dspy.ledger.lines import BadLine, call_log_line, not_believed, read_lines
from refed_dspy.ledger.usage import Totals, usage_of
from refed_dspy.providers.prices import Price
from refed_dspy.store.jsonl import write_text_atomic

logger = logging.getLogger(__name__)
LOG_NAME = "ledger.jsonl"
NEW_LEDGER = "--new-ledger"  # the flag that starts a new log (run.new_ledger = true)
COMPACT_BYTES = 8 * 1024 * 1024  # a log longer than this is folded into one line when an invocation opens it
_ZERO_PRICE = Price(0.0, 0.0, 0.0)  # every settled call carries its own cost
_REFUSED_FIX = f"start a new ledger: {NEW_LEDGER}, or run.new_ledger = true"
_NO_REQUEST = (b'{"open"', b'{"p"', b'{"k"', b'{"end"')  # torn lines behind which no request was sent


@dataclass
class _Request:
    """One request of an invocation, as its lines tell it."""

    role: str
    stage: str
    model: str
    calls: int
    bound: float
    paid: dict[str, Any] | None = None
    kept: bool = False


@dataclass
class _Invocation:
    """One invocation's requests, and how it ended (`all_held`: its end said the owner's files hold all that was paid
    until then, what earlier invocations left unaccounted included)."""

    id: str
    requests: dict[int, _Request] = field(default_factory=dict)
    ended: bool = False
    all_held: bool = False
    pid: int | None = None  # the process that opened it


def _info_of(req: _Request, paid: dict[str, Any]) -> list[CallInfo]:
    """The calls a settled line stands for (a task's usage is kept as it is, apart)."""
    tokens = [*(paid.get("t") or []), 0, 0, 0, 0]
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


def usage_of_requests(requests: Iterable[_Request]) -> dict[str, Any] | None:
    """What `requests` paid, as a usage dict with calls by role (None when nothing): settled ones at what they paid,
    a task at its worker's usage, the rest (in flight at a kill) as paid at their bound (`lost_in_flight`)."""
    totals, calls, tasks, in_flight, roles = Totals(), [], [], 0, Counter()
    for req in requests:
        if req.paid is None:  # in flight at the kill: sent, perhaps answered and billed, never read
            in_flight += req.calls
            roles[req.role] += req.calls
            calls += [CallInfo(req.stage, req.model, interrupted=True, cost_bound_usd=req.bound)] * req.calls
        elif isinstance(req.paid.get("u"), dict):  # a task's calls, as its worker reported them
            tasks.append(req.paid["u"])
            roles[req.role] += int(req.paid["u"].get("calls") or 0)
        else:
            found = _info_of(req, req.paid)
            roles[req.role] += sum(1 for c in found if not (c.cache_hit or c.error))
            calls += found
    if not calls and not tasks:
        return None
    totals.add(usage_of(calls, _ZERO_PRICE))
    for usage in tasks:
        totals.add(usage)
    out = totals.as_dict()
    out["lost_in_flight"] = in_flight
    out["by_role"] = {role: {"calls": n} for role, n in sorted(roles.items()) if n}
    if any(c.cost_usd is None and not (c.cache_hit or c.error or c.interrupted) for c in calls):
        out["cost_usd"] = None  # priced by nothing when it was paid: its cost is unknown
    out["by_stage"] = {name: bucket for name, bucket in out["by_stage"].items() if bucket.get("calls")}
    return out


def summed(usages: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Usage dicts added up, calls by role too; None when all are None."""
    totals, roles, found = Totals(), Counter(), False
    for usage in usages:
        if usage is None:
            continue
        found = True
        totals.add(usage)
        for role, part in (usage.get("by_role") or {}).items():
            roles[role] += int((part or {}).get("calls") or 0)
    if not found:
        return None
    return {**totals.as_dict(), "by_role": {role: {"calls": n} for role, n in sorted(roles.items()) if n}}


class _Reader:
    """Checks each line of a log as it is read (the shape refed writes, then its place in the numbering) and gathers
    the invocations it tells; a line out of place is BadLine."""

    def __init__(self) -> None:
        self.fold: dict[str, Any] | None = None
        self.invocations: list[_Invocation] = []
        self.last = 0  # the last request number
        self.worst = 0.0  # the most any request was reserved at
        self.lines = 0

    def __call__(self, line: dict[str, Any]) -> dict[str, Any]:
        call_log_line(line)
        self.lines += 1
        if "lost" in line:
            self._folded(line)
        elif "open" in line:
            if line["from"] != self.last:
                raise _out_of_place(
                    f"the invocation starts after request {line['from']}, the one before ended at "
                    f"{self.last}: lines are missing"
                )
            pid = line.get("pid")
            self.invocations.append(_Invocation(str(line["open"]), pid=pid if isinstance(pid, int) else None))
        else:
            self._of_invocation(line, self._current(line))
        return line

    def _folded(self, line: dict[str, Any]) -> None:
        if self.lines != 1:
            raise _out_of_place("a folded ledger's line stands only first")
        self.fold, self.last = line, int(line["to"])

    def _current(self, line: dict[str, Any]) -> _Invocation:
        if not self.invocations or self.invocations[-1].ended:
            raise _out_of_place(f"{next(iter(line))!r} belongs to no invocation under way")
        return self.invocations[-1]

    def _of_invocation(self, line: dict[str, Any], current: _Invocation) -> None:
        if "s" in line:
            if line["s"] != self.last + 1:
                raise _out_of_place(f"request {line['s']} comes after request {self.last}: requests are missing")
            self.last = line["s"]
            current.requests[self.last] = _Request(
                str(line.get("r") or "lm"),
                str(line.get("g") or "unknown"),
                str(line.get("m") or "?"),
                int(line.get("n") or 1),
                float(line.get("b") or 0.0),
            )
            self.worst = max(self.worst, current.requests[self.last].bound)
        elif "p" in line:
            req = current.requests.get(line["p"])
            if req is None or req.paid is not None:
                raise _out_of_place(f"request {line['p']} was {'settled before' if req else 'never sent'}")
            req.paid = line
        elif "k" in line:
            for n in line["k"]:
                if n not in current.requests:
                    raise _out_of_place(f"request {n} was never sent by this invocation")
                current.requests[n].kept = True
        else:
            if line["end"] != current.id or line["to"] != self.last:
                raise _out_of_place(
                    f"the end of {line['end']} (at request {line['to']}) is not the end of the "
                    f"invocation {current.id} under way (at request {self.last})"
                )
            current.ended, current.all_held = True, bool(line.get("all"))


def _out_of_place(why: str) -> BadLine:
    return BadLine(why, _REFUSED_FIX)


@dataclass
class Ledger:
    """What a log says, its lines checked and their numbering followed (see the module docstring)."""

    path: Path
    fold: dict[str, Any] | None
    invocations: list[_Invocation]
    last: int
    worst: float
    torn: bytes = b""

    @classmethod
    def read(cls, path: Path, repair: bool = False) -> Ledger:
        """The log at `path`, checked (LedgerError names a line that cannot be believed); with `repair`, a line a kill
        tore is cut off and, where a request may have been behind it, written down as one in flight at the most a
        request was reserved at."""
        reader = _Reader()
        _, torn = read_lines(path, reader)
        if torn.lstrip().startswith(b'{"lost"'):  # written whole, by a rename: refused before anything is cut off
            raise not_believed(str(path), "its folded line is torn", _REFUSED_FIX)
        if repair and torn:
            os.truncate(path, path.stat().st_size - len(torn))
        ledger = cls(path, reader.fold, reader.invocations, reader.last, reader.worst, torn)
        if ledger.charges_torn():
            ledger._take_torn(repair)
        return ledger

    def charges_torn(self) -> bool:
        """Whether a torn last line may stand for a request sent (an invocation under way, and the line no other)."""
        under_way = bool(self.invocations) and not self.invocations[-1].ended
        return bool(self.torn) and under_way and not self.torn.lstrip().startswith(_NO_REQUEST)

    def _take_torn(self, write: bool) -> None:
        """The torn line as a request in flight, at the most any request was reserved at (written down with `write`)."""
        self.last += 1
        self.invocations[-1].requests[self.last] = _Request("lm", "torn", "?", 1, self.worst)
        if write:
            line = {"s": self.last, "r": "lm", "g": "torn", "m": "?", "n": 1, "b": round(self.worst, 8)}
            with open(self.path, "ab") as fh:
                fh.write((json.dumps(line, separators=(",", ":")) + "\n").encode())

    def _since_held(self) -> tuple[list[_Invocation], bool]:
        """The invocations after the last end that said the owner's files hold everything, and whether the fold's
        `lost` comes after it (no such end)."""
        held = [i for i, inv in enumerate(self.invocations) if inv.all_held]
        if not held:
            return self.invocations, True
        return self.invocations[held[-1] + 1 :], False

    def dead(self) -> list[_Invocation]:
        """The invocations that did not end and whose loss no owner has reported."""
        return [inv for inv in self._since_held()[0] if not inv.ended]

    def lost(self) -> dict[str, Any] | None:
        """What invocations that did not end paid and no file of the owner holds (None when nothing)."""
        invocations, with_fold = self._since_held()
        folded = (self.fold or {}).get("lost") if with_fold else None
        unkept = (r for inv in invocations if not inv.ended for r in inv.requests.values() if not r.kept)
        return summed([folded or None, usage_of_requests(unkept)])

    def paid(self) -> dict[str, Any] | None:
        """What every invocation of the log paid in all, kept or not (None when nothing)."""
        every = (r for inv in self.invocations for r in inv.requests.values())
        return summed([(self.fold or {}).get("paid") or None, usage_of_requests(every)])

    def in_flight(self, pid: int | None) -> int:
        """The calls in flight now in the process `pid`, the one holding the owner's lock: those the invocation under
        way in it (the last, with no end, opened by `pid`) sent and has not settled. 0 for any other `pid` or None:
        an invocation that did not end and whose process holds no lock was killed, and its calls were in flight then.
        """
        last = self.invocations[-1] if self.invocations else None
        if pid is None or last is None or last.ended or last.pid != pid:
            return 0
        return sum(r.calls for r in last.requests.values() if r.paid is None and not r.kept)

    def found_now(self) -> dict[str, Any] | None:
        """What the last invocation left unaccounted when it did not end: found by the opening that follows it."""
        last = self.invocations[-1] if self.invocations else None
        if last is None or last.ended:
            return None
        return usage_of_requests(r for r in last.requests.values() if not r.kept)

    def is_empty(self) -> bool:
        """Whether the log holds nothing at all (no line, whole or torn)."""
        return self.fold is None and not self.invocations and not self.torn

    def folded(self) -> dict[str, Any]:
        """The one line the log folds into."""
        return {
            "lost": self.lost() or {},
            "paid": self.paid() or {},
            "of": [inv.id for inv in self.dead()],
            "to": self.last,
        }


def sent_any(path: str | Path) -> bool:
    """Whether the log at `path` holds a request written down (one that may have been sent; a torn line that may stand
    for one, or a log that cannot be believed, counts as one)."""
    try:
        return Ledger.read(Path(path)).last > 0
    except LedgerError:
        return True


def unaccounted(path: str | Path, pid: int | None = None) -> dict[str, Any] | None:
    """What the log at `path` says was paid, or may have been, that no file of its owner holds, as a reader sees it
    (the log is not changed; its lock is not taken): what killed invocations left, and the invocation under way, its
    settled requests at what they paid and those in flight as paid at their bound (`interrupted_cost_usd`). A usage
    dict with calls by role; None when nothing.

    Of the calls in flight, `lost_in_flight` counts those of invocations killed before they settled them, `in_flight`
    those of the invocation under way in the process `pid` (the one holding the owner's lock now; None: nobody holds
    it, or who does is not known), which are in flight now, not lost."""
    ledger = Ledger.read(Path(path))
    found = ledger.lost()
    now = ledger.in_flight(pid)
    if found is not None and now:
        found["lost_in_flight"] = int(found.get("lost_in_flight") or 0) - now
        found["in_flight"] = now
    return found


class CallLog:
    """The write-ahead log of one owner's LM calls in a directory (see the module docstring).

    `CallLog.open(path)` counts what killed invocations left, then starts this one; `lost` is everything such
    invocations paid that no file of the owner holds (None when nothing), `found_now` what this opening found, and
    `earlier` what every earlier invocation paid in all (None when nothing). Thread-safe: each line is written under
    the log's lock, requests numbered in turn.
    """

    def __init__(self, path: Path, fd: int, invocation: str, ledger: Ledger):
        self.path = path
        self.invocation = invocation
        self.lost = ledger.lost()
        self.found_now = ledger.found_now()
        self.earlier = ledger.paid()
        self._fd: int | None = fd
        self._next = ledger.last
        self._lock = threading.Lock()
        self.summary_stamp: Any = None  # its owner's: which summary was on disk when it opened

    @classmethod
    def open(cls, path: str | Path, shown_by: tuple[Path, ...] = (), new_ledger: bool = False) -> CallLog:
        """Open the log at `path` for a new invocation; the caller holds the directory's lock (no other writer).

        `shown_by`: files its owner writes only once it has a log (its records). When one of them is there and the log
        is gone or empty, what it held that no record does (the calls a killed invocation had in flight) would go
        uncounted: LedgerError. A log that cannot be believed (module docstring) is LedgerError too. `new_ledger`: the
        log there is set aside and a new one started, said in one line."""
        path = Path(path)
        shown = next((p for p in shown_by if p.exists()), None)
        if new_ledger and (path.exists() or path.is_symlink()):
            _set_aside(path)
        elif not path.exists() and not path.is_symlink():
            _gone(path, shown, "is gone", new_ledger)
        path.parent.mkdir(parents=True, exist_ok=True)
        ledger = Ledger.read(path, repair=True)
        if ledger.is_empty() and path.exists() and path.stat().st_size == 0 and not new_ledger:
            _gone(path, shown, "is empty", new_ledger)
        if path.exists() and path.stat().st_size > COMPACT_BYTES:
            write_text_atomic(path, json.dumps(ledger.folded()) + "\n")
        invocation = uuid.uuid4().hex[:12]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        log = cls(path, fd, invocation, ledger)
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log._write({"open": invocation, "pid": os.getpid(), "at": at, "from": ledger.last})
        return log

    def _write(self, obj: dict[str, Any]) -> None:
        """One line, under the lock. A write that fails or falls short (a full disk) ends the writing: the log stops
        there as a killed invocation's does (what it holds is counted on the next open, a torn last line at its worst
        case), never with a line missing in the middle; the reservation holds in memory, and the run stops on its
        records."""
        fd = self._fd
        if fd is None:
            return
        line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        try:
            complete = os.write(fd, line) == len(line)
        except OSError:
            complete = False
        if not complete:
            self._fd = None
            os.close(fd)

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
        with self._lock:
            self._write(line)

    def settled_task(self, n: int, usage: dict[str, Any]) -> None:
        """Task `n` is over: the usage of its calls (as a Ray worker reported them)."""
        with self._lock:
            self._write({"p": n, "u": usage})

    def recorded(self, role: str, stage: str, usage: dict[str, Any]) -> None:
        """Calls made for the owner by a command of its own (an optimization's examples synthesis, which keeps its
        own ledger) and paid `usage`: written down as one settled task, so that this log holds all the owner paid."""
        n = self.sent(role, stage, "?", 0.0, calls=max(1, int(usage.get("calls") or 0)))
        self.settled_task(n, usage)

    def kept(self, ids: list[int]) -> None:
        """The owner has written what requests `ids` paid into its own files."""
        if ids:
            with self._lock:
                self._write({"k": ids})

    def end(self, reported_lost: bool = False) -> None:
        """This invocation ended cleanly: everything it paid is in the owner's files. The log is closed.
        `reported_lost`: the owner has also written `lost` into its files (an owner that reports each invocation's
        spending apart, as an experiment does): it is not counted again."""
        with self._lock:  # no line of a straggler's can come after the end
            self._write({"end": self.invocation, "to": self._next, **({"all": 1} if reported_lost else {})})
            self._close()

    def close(self) -> None:
        """Close the log without ending the invocation (what it paid and did not keep is counted on the next open)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _set_aside(path: Path) -> None:
    """`--new-ledger`: the log there is renamed beside itself (kept for a look, counted no more), said in one line."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = path.with_name(f"{path.name}.set-aside-{stamp}")  # no longer a .jsonl: nothing reads it as a log
    path.rename(aside)
    logger.warning("warning: %s is set aside as %s and a new ledger is started (%s)", path, aside.name, NEW_LEDGER)


def _gone(path: Path, shown_by: Path | None, how: str, new_ledger: bool) -> None:
    """The log at `path` is not there or holds nothing (`how`): LedgerError when `shown_by` (a record of its owner)
    shows there was one, unless `new_ledger`, which says in one line that a new one is started."""
    if shown_by is None:
        return
    what = (
        f"{path} {how}, though {shown_by} shows {path.parent} had one: the calls an invocation killed before had in "
        "flight, paid and in no record, would go uncounted"
    )
    if not new_ledger:
        raise LedgerError(
            f"{what}; put the file back, or set run.new_ledger = true ({NEW_LEDGER}) to go on without them",
            cli=f"{what}; put the file back, or run the same command with {NEW_LEDGER} to go on without them",
        )
    logger.warning("warning: %s; a new ledger is started (%s)", what, NEW_LEDGER)
