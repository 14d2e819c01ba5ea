"""What a command has spent, by part, across its invocations (a JSON file: `<out>/spent.json`), feeding its one
ledger: an experiment's parts (refed_dspy.experiments), an evaluation's answering by a students' server
(refed_dspy.training.evaluate).

A part that pays call by call (a cell's optimization, the judging of the test examples, the students' answers) adds
what each attempt paid; a part that is a run directory (the examples synthesis, a synthesis check) reports its whole
run's usage every time, so its entry is replaced by the latest figure and only the difference reaches the ledger. A
resumed command starts its ledger from the file: a part that failed or hit the budget has its earlier spending
counted, though its re-run is answered from its cache. A part that pays call by call writes each request to its own
write-ahead log (`<out>/ledger/<part>.jsonl`, refed_dspy.ledger.call_log) before sending it: what a killed attempt
paid, the calls in flight at the kill included, is added to the part when the command starts again (and not paid
again: the part's cache, or its own record of what it made, answers it). While it runs, the file's `live` entry shows
its figure as of its last call (`refed status`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from refed_dspy.ledger.budget import CallBudget
from refed_dspy.ledger.call_log import CallLog
from refed_dspy.ledger.lines import read_document, spent_figures
from refed_dspy.store.jsonl import write_json_atomic

log = logging.getLogger("refed_dspy")


CUT_OFF = "interrupted_cost_usd"  # the most the calls cut off in flight can have cost, kept against the budget too


def _bound(figures: dict[str, Any], *usages: dict[str, Any]) -> dict[str, Any]:
    """`figures` with the cut-off calls' bound of `usages` added up, where there is one."""
    bound = sum(float(u.get(CUT_OFF) or 0.0) for u in usages if u)
    if bound:
        figures[CUT_OFF] = round(bound, 6)
    return figures


def _figures(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Calls and cost of `usage` (and the bound of its calls cut off), and its calls by role when it says them (a
    CallBudget's usage does)."""
    usage = usage or {}
    out = {"calls": int(usage.get("calls") or 0), "cost_usd": usage.get("cost_usd") if usage else 0.0}
    return _with_roles(_bound(out, usage), [usage])


def _with_roles(figures: dict[str, Any], usages: list[dict[str, Any]]) -> dict[str, Any]:
    """`figures` with the calls by role of `usages` added up, as {role: {"calls": n}} (none: no by_role)."""
    roles: dict[str, int] = {}
    for usage in usages:
        for role, part in (usage.get("by_role") or {}).items():
            roles[role] = roles.get(role, 0) + int((part or {}).get("calls") or 0)
    if any(roles.values()):
        figures["by_role"] = {role: {"calls": n} for role, n in sorted(roles.items()) if n}
    return figures


def _plus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    cost = None if a["cost_usd"] is None or b["cost_usd"] is None else a["cost_usd"] + b["cost_usd"]
    return _with_roles(_bound({"calls": a["calls"] + b["calls"], "cost_usd": cost}, a, b), [a, b])


def total_of(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """Calls and cost added up (cost None when any non-empty part's is unknown)."""
    costs = [u.get("cost_usd") for u in usages if u]
    cost = None if any(c is None for c in costs) else round(sum(costs), 6)
    return _bound({"calls": sum(int(u.get("calls") or 0) for u in usages), "cost_usd": cost}, *usages)


_ZERO = {"calls": 0, "cost_usd": 0.0}


class Spend:
    """A command's spending by part (an experiment's, an evaluation's answering), kept in `path`, added into `ledger`
    (whose totals are the command's)."""

    def __init__(self, path: Path, ledger: CallBudget, new_ledger: bool = False):
        self.path = path
        self.ledger = ledger
        # checked before it is believed, as every ledger is (refed_dspy.ledger.lines)
        self.parts: dict[str, dict[str, Any]] = read_document(path, spent_figures).get("parts") or {}
        self.live_parts: dict[str, dict[str, Any]] = {}  # the parts under way, as of their last call (shown only)
        self._lock = threading.Lock()
        self._unsaved: str | None = None
        for figures in self.parts.values():
            ledger.totals.add(figures)
        self._count_killed(new_ledger)

    @property
    def logs(self) -> Path:
        """Where the parts that pay call by call write their requests before sending them."""
        return self.path.parent / "ledger"

    def _log_of(self, part: str) -> Path:
        return self.logs / f"{quote(part, safe='')}.jsonl"

    def _count_killed(self, new_ledger: bool) -> None:
        """Add to each part what its attempts killed before they ended paid (their logs say), and end each log saying
        so (`new_ledger`: each log is set aside and a new one started, what it held not counted)."""
        for path in sorted(self.logs.glob("*.jsonl")) if self.logs.is_dir() else ():
            log = CallLog.open(path, new_ledger=new_ledger)
            if log.lost:
                self.add(unquote(path.stem), log.lost)
            if self._unsaved is None:
                log.end(reported_lost=True)  # counted in spent.json now
            else:
                log.close()

    def add(self, part: str, usage: dict[str, Any] | None) -> None:
        """An attempt of `part` paid `usage` (added to what earlier attempts paid)."""
        new = _figures(usage)
        if not new["calls"] and not new["cost_usd"] and not new.get(CUT_OFF):
            return
        with self._lock:
            self.parts[part] = _plus(self.parts.get(part, _ZERO), new)
            self.ledger.totals.add(new)
            self._save()

    @contextlib.contextmanager
    def live(self, part: str, budget: CallBudget) -> Iterator[CallBudget]:
        """An attempt of `part` paying through `budget`, each request written to the part's log before it is sent:
        after each call the file's `live` entry holds what this attempt paid so far; at the end, what it paid is added
        (as `add`) and the log's end says so."""
        log = CallLog.open(self._log_of(part))
        budget.log = log

        def saw() -> None:
            with self._lock:
                self.live_parts[part] = _figures(budget.as_dict())
                self._save()

        budget.watch(saw)
        try:
            yield budget
        finally:
            budget.unwatch(saw)
            budget.log = None
            with self._lock:
                self.live_parts.pop(part, None)
            self.add(part, budget.as_dict())
            if self._unsaved is None:
                log.end(reported_lost=True)
            else:  # not on disk: the log keeps it for the next start
                log.close()

    def set_total(self, part: str, usage: dict[str, Any] | None, role: str) -> None:
        """`part` (a run directory whose calls are all of `role`: a synthesis's teacher, a judging's judge) has paid
        `usage` in all, over all its invocations."""
        usage = usage or {}
        new = _figures(usage if usage.get("by_role") else {**usage, "by_role": {role: {"calls": usage.get("calls")}}})
        with self._lock:
            old = self.parts.get(part, _ZERO)
            if new == old:
                return
            delta = None if new["cost_usd"] is None or old["cost_usd"] is None else new["cost_usd"] - old["cost_usd"]
            bound = float(new.get(CUT_OFF) or 0.0) - float(old.get(CUT_OFF) or 0.0)
            self.ledger.totals.add({"calls": new["calls"] - old["calls"], "cost_usd": delta, CUT_OFF: bound})
            self.parts[part] = new
            self._save()

    def part(self, name: str) -> dict[str, Any]:
        """What part `name` has paid over every invocation: calls, cost and, where known, calls by role."""
        with self._lock:
            return dict(self.parts.get(name, _ZERO))

    def total(self) -> dict[str, Any]:
        """The whole experiment's calls and cost over every invocation (the ledger's), and its calls by role (what the
        parts said of theirs)."""
        with self._lock:
            return _with_roles(total_of([self.ledger.totals.as_dict()]), list(self.parts.values()))

    def of(self, prefix: str) -> dict[str, Any]:
        """Calls and cost of the parts whose name starts with `prefix` (one cell's, one baseline's)."""
        with self._lock:
            return total_of([v for k, v in self.parts.items() if k.startswith(prefix)])

    def _save(self) -> None:
        """Write the file (under the lock); a failed write is said once and retried at the next save."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                self.path, {"parts": self.parts, **({"live": self.live_parts} if self.live_parts else {})}
            )
        except OSError as err:
            if self._unsaved is None:
                log.warning("warning: %s could not be written (%s); spending is kept in memory", self.path, err)
            self._unsaved = str(err)
        else:
            self._unsaved = None
