"""What a line of a write-ahead file may hold, checked before it is believed.

The write-ahead files say what a directory's owner paid, or may have paid, for LM calls: the call log of a run, a
judging, an optimization or an experiment's part (refed_dspy.ledger.call_log), a run's batch journal and results
(refed_dspy.launch.batch.store), an experiment's spending by part (`spent.json`). A budget starts from what they say,
so a line refed did not write is never believed: a cost below zero (which would give back budget that was spent), a
count or a sum no run reaches (`1e308` calls), a number that is not finite, a field of the wrong type or one refed does
not write. Such a line stops the command with one line naming the file and the line (LedgerError, exit 2), before any
call; so does a file that cannot be read (made a directory, say). A last line without its newline is a write a kill
cut off: it is left out (its request was not sent), as the owner's records do.

One checker per shape (`usage_figures`, `call_log_line`, `batch_event`, `batch_result`, `spent_figures`) and one
reader for every such file (`read_lines`, `read_document`). Pure but for reading.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refed_dspy.errors import LedgerError
from refed_dspy.ledger.usage import COUNT_FIELDS
from refed_dspy.store.jsonl import complete_lines, parse_record

MAX_COUNT = 10**12  # calls or tokens: more than any run makes
MAX_USD = 10.0**7  # dollars: more than any run's ledger holds
_FLAG = 1  # how a call log line marks a yes (`h`, `x`, `unk`, `nc`, `fb`)


class BadLine(ValueError):
    """What is wrong with one line (the reader adds the file and the line's number), and what would make the file
    believable again (`fix`, read after "restore the file, or")."""

    def __init__(self, message: str, fix: str = "delete that line and run again"):
        super().__init__(message)
        self.fix = fix


def count(value: Any, name: str, least: int = 0) -> int:
    """`value` when it is a whole number from `least` to MAX_COUNT; BadLine otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadLine(f"{name} is {value!r}, not a whole number")
    if not least <= value <= MAX_COUNT:
        raise BadLine(f"{name} is {value}, outside {least}..{MAX_COUNT:.0e}")
    return value


def dollars(value: Any, name: str, unknown: bool = False) -> float | None:
    """`value` when it is a finite amount from 0 to MAX_USD (None too where `unknown`: a cost without a price)."""
    if value is None and unknown:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadLine(f"{name} is {value!r}, not an amount of dollars")
    if not math.isfinite(value) or not 0 <= value <= MAX_USD:
        raise BadLine(f"{name} is {value!r}: an amount is finite, never negative, at most ${MAX_USD:,.0f}")
    return float(value)


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BadLine(f"{name} is {value!r}, not a number of seconds")
    return float(value)


def text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadLine(f"{name} is {value!r}, not a text")
    return value


def _table(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadLine(f"{name} is {value!r}, not an object")
    return value


def _texts(value: Any, name: str) -> list[str]:
    if not isinstance(value, list):
        raise BadLine(f"{name} is {value!r}, not a list")
    return [text(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _only(obj: dict[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise BadLine(f"{what} holds {', '.join(repr(k) for k in unknown)}, which refed does not write")


# the figures of a usage dict (refed_dspy.ledger.usage): counts, amounts, and the tables they are split into
_COUNTS = {*COUNT_FIELDS, "lost_in_flight", "worker_lost_calls", "tier_unavailable", "flex_fallbacks"}


def usage_figures(value: Any, name: str = "usage") -> dict[str, Any]:
    """`value` when it is a usage dict as refed writes one (its counts whole and in range, its amounts finite and not
    negative, by stage, role and tier alike); any other figure it holds is held to the same (a number finite, not
    negative, in range). BadLine otherwise."""
    usage = _table(value, name)
    for key, item in usage.items():
        where = f"{name}.{key}"
        if key in _COUNTS:
            count(item, where)
        elif key == "cost_usd":
            dollars(item, where, unknown=True)
        elif key == "interrupted_cost_usd":
            dollars(item, where)
        elif key == "lm_seconds":
            _seconds(item, where)
        elif key in ("by_stage", "by_role"):
            for part, figures in _table(item, where).items():
                usage_figures(figures, f"{where}.{part}")
        elif key == "by_tier":
            for tier, n in _table(item, where).items():
                count(n, f"{where}.{tier}")
        else:
            _any_figure(item, where)
    return usage


def _any_figure(value: Any, name: str) -> None:
    """A value of a field refed may add to a usage dict later: its numbers finite, not negative, in range."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value <= MAX_COUNT:
            raise BadLine(f"{name} is {value!r}: a figure is finite, never negative, at most {MAX_COUNT:.0e}")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _any_figure(item, f"{name}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _any_figure(item, f"{name}[{i}]")
    else:
        raise BadLine(f"{name} is {value!r}")


# ---- the call log (refed_dspy.ledger.call_log) ------------------------------------------------------------------------
_KINDS = ("open", "s", "p", "k", "end", "lost")


def _paid(line: dict[str, Any]) -> None:
    _only(line, {"p", "t", "r", "c", "f", "nc", "x", "h", "unk", "v", "fb", "u"}, "a settled request's line")
    count(line["p"], "p (the request)", least=1)
    if "u" in line:
        usage_figures(line["u"], "u (its task's usage)")
    if "t" in line:
        tokens = line["t"]
        if not isinstance(tokens, list) or not 3 <= len(tokens) <= 4:
            raise BadLine(f"t (its tokens) is {tokens!r}, not 3 or 4 counts")
        for i, n in enumerate(tokens):
            count(n, f"t[{i}] (tokens)")
    if "r" in line:
        count(line["r"], "r (reasoning tokens)")
    if "c" in line:
        dollars(line["c"], "c (its cost)", unknown=True)
    for key in ("f", "v"):
        if key in line:
            text(line[key], key)
    for key in ("nc", "x", "h", "unk", "fb"):
        if key in line and line[key] != _FLAG:
            raise BadLine(f"{key} is {line[key]!r}, not {_FLAG}")


def call_log_line(line: dict[str, Any]) -> dict[str, Any]:
    """`line` when it is a line of a call log (the module docstring of refed_dspy.ledger.call_log lists them); BadLine
    otherwise."""
    kinds = [k for k in _KINDS if k in line]
    if len(kinds) != 1:
        raise BadLine(
            f"it has {'none' if not kinds else ' and '.join(kinds)} of {', '.join(_KINDS)}: not a ledger line"
        )
    kind = kinds[0]
    if kind == "open":
        _only(line, {"open", "pid", "at", "from"}, "an invocation's first line")
        text(line["open"], "open (the invocation)")
        count(line.get("pid", 0), "pid")
        text(line.get("at", ""), "at")
        count(line.get("from"), "from (the last request before it)")
    elif kind == "s":
        _only(line, {"s", "r", "g", "m", "n", "b"}, "a request's line")
        count(line["s"], "s (the request)", least=1)
        for key in ("r", "g", "m"):
            if key in line:
                text(line[key], key)
        count(line.get("n", 1), "n (its calls)", least=1)
        dollars(line.get("b", 0.0), "b (the most it can cost)")
    elif kind == "p":
        _paid(line)
    elif kind == "k":
        _only(line, {"k"}, "a kept line")
        if not isinstance(line["k"], list):
            raise BadLine(f"k is {line['k']!r}, not a list of requests")
        for i, n in enumerate(line["k"]):
            count(n, f"k[{i}]", least=1)
    elif kind == "end":
        _only(line, {"end", "to", "all"}, "an invocation's last line")
        text(line["end"], "end (the invocation)")
        count(line.get("to"), "to (its last request)")
        if "all" in line and line["all"] != _FLAG:
            raise BadLine(f"all is {line['all']!r}, not {_FLAG}")
    else:
        _only(line, {"lost", "of", "to", "paid"}, "a folded ledger's line")
        usage_figures(line["lost"], "lost")
        usage_figures(line.get("paid"), "paid")
        _texts(line.get("of", []), "of")
        count(line.get("to"), "to (the last request folded)")
    return line


# ---- a run's provider batches (refed_dspy.launch.batch.store) --------------------------------------------------------
_EVENTS = {
    "plan": {"api", "stage", "custom_ids", "b"},
    "file": {"file_id"},
    "create": {"id", "status"},
    "state": {"status", "counts"},
    "collected": {"status"},
}


def batch_event(event: dict[str, Any]) -> dict[str, Any]:
    """`event` when it is a line of a batch journal (a batch planned, its file uploaded, created, seen, collected);
    BadLine otherwise."""
    kind = event.get("e")
    if kind not in _EVENTS:
        raise BadLine(f"e is {kind!r}, not one of {', '.join(_EVENTS)}")
    _only(event, {"e", "batch", "t", *_EVENTS[kind]}, f"a '{kind}' event")
    text(event.get("batch"), "batch")
    _seconds(event.get("t", 0.0), "t")
    if kind == "plan":
        text(event.get("api"), "api")
        text(event.get("stage", ""), "stage")
        ids = _texts(event.get("custom_ids"), "custom_ids")
        if not ids:
            raise BadLine("custom_ids is empty: a batch holds at least one request")
        if "b" in event:
            bounds = event["b"]
            if not isinstance(bounds, list) or len(bounds) != len(ids):
                raise BadLine(f"b is not a list of {len(ids)} amounts, one per request")
            for i, bound in enumerate(bounds):
                dollars(bound, f"b[{i}] (the most a request can cost)")
    elif kind == "file":
        text(event.get("file_id"), "file_id")
    elif kind == "create":
        text(event.get("id"), "id")
    if kind in ("create", "state", "collected") and event.get("status") is not None:
        text(event["status"], "status")
    if kind == "state":
        for key, n in _table(event.get("counts") or {}, "counts").items():
            count(n, f"counts.{key}")
    return event


def batch_result(row: dict[str, Any]) -> dict[str, Any]:
    """`row` when it is a line of a batch results file (a request's outcome by custom_id); BadLine otherwise."""
    _only(row, {"custom_id", "batch", "status", "body", "lost"}, "a result line")
    text(row.get("custom_id"), "custom_id")
    text(row.get("batch", ""), "batch")
    status = row.get("status") or 0
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 999:
        raise BadLine(f"status is {status!r}, not an HTTP status")
    if row.get("lost") is not None:
        text(row["lost"], "lost")
    return row


# ---- a command's spending by part (refed_dspy.ledger.spend) ----------------------------------------------------------
def spent_figures(document: dict[str, Any]) -> dict[str, Any]:
    """`document` when it is an experiment's spent.json: its parts' figures (and those of the parts under way) as usage
    dicts hold them; BadLine otherwise."""
    _only(document, {"parts", "live", "non_finite"}, "spent.json")
    for table in ("parts", "live"):
        for part, figures in _table(document.get(table) or {}, table).items():
            usage_figures(figures, f"{table}.{part}")
    return document


# ---- reading ---------------------------------------------------------------------------------------------------------
def not_believed(where: str, why: str, fix: str = "delete that line and run again") -> LedgerError:
    """The one line a ledger that cannot be believed is refused in: where, why, and what makes it believable again."""
    return LedgerError(
        f"{where}: {why}; refed writes no such thing in a ledger, so it is not believed and nothing was sent: restore "
        f"the file, or {fix} (what it claimed is then not counted)"
    )


def _unreadable(path: Path, err: OSError) -> LedgerError:
    return LedgerError(
        f"{path} cannot be read as a write-ahead ledger ({err.strerror or err}); nothing was sent: put the file back "
        "as refed wrote it"
    )


def read_lines(
    path: Path, check: Callable[[dict[str, Any]], dict[str, Any]], repair: bool = False
) -> tuple[list[dict[str, Any]], bytes]:
    """The lines of the write-ahead file at `path`, each held to `check` ([] when there is no file), and its last line
    when a kill tore it (b"" when none; left out, and with `repair` the file is cut back to its last complete line).
    LedgerError, naming the file and the line, for a line that is not a JSON object or that `check` refuses, and for a
    file that cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], b""
    except OSError as err:
        raise _unreadable(path, err) from None
    end = data.rfind(b"\n") + 1
    lines: list[dict[str, Any]] = []
    for lineno, raw in complete_lines(data):
        obj = parse_record(raw)
        if obj is None:
            raise not_believed(f"{path}:{lineno}", "the line is not a JSON object")
        try:
            lines.append(check(obj))
        except BadLine as err:
            raise not_believed(f"{path}:{lineno}", str(err), err.fix) from None
    torn = data[end:]
    if repair and torn:
        with open(path, "r+b") as fh:
            fh.truncate(end)
    return lines, torn


def read_document(path: Path, check: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """The JSON object the write-ahead file at `path` holds, held to `check` ({} when there is no file). LedgerError
    for a file that cannot be read, is not a JSON object, or that `check` refuses."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise _unreadable(path, err) from None
    obj = parse_record(data)
    if obj is None:
        raise not_believed(str(path), "the file is not a JSON object", "remove it and run again")
    try:
        return check(obj)
    except BadLine as err:
        raise not_believed(str(path), str(err), "correct that figure and run again") from None
