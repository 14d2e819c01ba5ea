"""What an experiment has spent, by part, across invocations (`<out>/spent.json`), feeding its one ledger.

A part that pays call by call (a cell's optimization, the judging of the test examples) adds what each attempt paid;
a part that is a run directory (the examples synthesis, a synthesis check) reports its whole run's usage every time,
so its entry is replaced by the latest figure and only the difference reaches the ledger. A resumed experiment starts
its ledger from the file: a cell that failed or hit the budget has its earlier spending counted, though its re-run
is answered from its cache. What a killed part paid before the kill is not in the file (it is not paid again either:
the part's cache answers it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refed_dspy.engine.budget import CallBudget
from refed_dspy.store.jsonl import read_json, write_json_atomic


def _figures(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    return {"calls": int(usage.get("calls") or 0), "cost_usd": usage.get("cost_usd") if usage else 0.0}


def total_of(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """Calls and cost added up (cost None when any non-empty part's is unknown)."""
    costs = [u.get("cost_usd") for u in usages if u]
    cost = None if any(c is None for c in costs) else round(sum(costs), 6)
    return {"calls": sum(int(u.get("calls") or 0) for u in usages), "cost_usd": cost}


class Spend:
    """The experiment's spending by part, kept in `path`, added into `ledger` (whose totals are the experiment's)."""

    def __init__(self, path: Path, ledger: CallBudget):
        self.path = path
        self.ledger = ledger
        self.parts: dict[str, dict[str, Any]] = read_json(path).get("parts", {})
        for figures in self.parts.values():
            ledger.totals.add(figures)

    def add(self, part: str, usage: dict[str, Any] | None) -> None:
        """An attempt of `part` paid `usage` (added to what earlier attempts paid)."""
        new = _figures(usage)
        if not new["calls"] and not new["cost_usd"]:
            return
        old = self.parts.get(part, {"calls": 0, "cost_usd": 0.0})
        cost = None if old["cost_usd"] is None or new["cost_usd"] is None else old["cost_usd"] + new["cost_usd"]
        self.parts[part] = {"calls": old["calls"] + new["calls"], "cost_usd": cost}
        self.ledger.totals.add(new)
        self._save()

    def set_total(self, part: str, usage: dict[str, Any] | None) -> None:
        """`part` (a run directory) has paid `usage` in all, over all its invocations."""
        new = _figures(usage)
        old = self.parts.get(part, {"calls": 0, "cost_usd": 0.0})
        if new == old:
            return
        delta_cost = None if new["cost_usd"] is None or old["cost_usd"] is None else new["cost_usd"] - old["cost_usd"]
        self.ledger.totals.add({"calls": new["calls"] - old["calls"], "cost_usd": delta_cost})
        self.parts[part] = new
        self._save()

    def of(self, prefix: str) -> dict[str, Any]:
        """Calls and cost of the parts whose name starts with `prefix` (one cell's, one baseline's)."""
        return total_of([v for k, v in self.parts.items() if k.startswith(prefix)])

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"parts": self.parts})
