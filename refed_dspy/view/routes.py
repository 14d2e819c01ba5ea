"""What each of the viewer's URLs answers, as functions of its Pages and the request's arguments; view/app.py binds
them to their URLs. A missing sample, cell or page raises NotFound (the 404 page).

The sample page shows each text to a bound and reads its figures from what it shows (refed_dspy.view.shown); the whole
of a text is its own URL, as plain text. For the sample page, a sample beside its reference: the sample's instruction
and final response next to the reference's, each part's closeness to it, and the stretches copied word for word marked
on both sides (pure).

For an experiment dir, what `refed view` shows: its cells with their state and scores, and each cell's program (the
instructions and demos of every predictor), read from the files as they are; nothing is written.

What a route accepts from a request: query values (numbers, counts, the list's filters); the Host or Origin a page
reached it by is checked by refed_dspy.providers.keys.loopback_host, as the metrics endpoint's is. How it answers with a
page (`Pages`): its templates filled through refed_dspy.pages with the style sheet, the script and the directory's
status, and every body masked (refed_dspy.secrets) before it leaves the process.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from werkzeug.exceptions import NotFound

from refed_dspy.engine.progress import duration
from refed_dspy.experiments.outputs import program_view
from refed_dspy.ledger.usage import usd_up_to
from refed_dspy.pages import asset, render
from refed_dspy.registry import rewrites_reference
from refed_dspy.secrets import mask
from refed_dspy.store.jsonl import json_text, read_json
from refed_dspy.store.records import final_response
from refed_dspy.text.closeness import closeness, copied_spans
from refed_dspy.text.overlap import changed_share, word_diff
from refed_dspy.training.evaluate import EVALUATION
from refed_dspy.view.evaluation import OUTCOMES, Answered, answered_rows
from refed_dspy.view.index import VERDICTS, Filters, RunIndex, View
from refed_dspy.view.shown import clip, is_clipped, shown
from refed_dspy.view.status.experiment import experiment_status, unsettled_text

PER_PAGE = 50


def samples(pages: Pages, args: Any) -> Response:
    """/: the sample list, filtered by `args` and cut into pages (an experiment dir without samples: its cells)."""
    view = pages.view
    if view.kind == "experiment" and not view.rows and not args:
        return experiment(pages)  # an experiment's samples come with its synthesis checks: its cells first
    if view.kind == "evaluation":
        return evaluation(pages, args)
    f = filters_from(args)
    rows = [r for r in view.rows if f.keep(r)]
    return pages.page(
        "samples",
        title="samples",
        page="samples",
        f=f,
        total=len(rows),
        choices=view.choices(),
        empty=view.empty_note(),
        **paged(rows, args),
    )


def paged(rows: list[Any], args: Any) -> dict[str, Any]:
    """The page of `rows` that `args` asks for (`per`, `page`): its rows, its number, the page count, and the links to
    the pages before and after it (the other arguments kept)."""
    per = whole_number(args.get("per"), "per", PER_PAGE, 1, 500)
    page_count = max(1, math.ceil(len(rows) / per))
    page_no = whole_number(args.get("page"), "page", 1, 1, page_count)
    query = {k: v for k, v in args.items() if k != "page" and v != ""}

    def url(n: int) -> str:
        return "/?" + urlencode({**query, "page": n})

    return {
        "rows": rows[(page_no - 1) * per : page_no * per],
        "page_no": page_no,
        "pages": page_count,
        "prev_url": url(page_no - 1) if page_no > 1 else None,
        "next_url": url(page_no + 1) if page_no < page_count else None,
    }


def sample(pages: Pages, sid: str) -> Response:
    """/sample/<sid>: one sample, its draft and improved response diffed, beside its reference, with its judgment; each
    text shown to SHOWN_CHARS characters (refed_dspy.view.shown), and every measure read from the texts as shown."""
    run, s = _found(pages.view, sid)
    j = run.judgments.get(sid)
    failure = next((r for r in reversed(run.judge_rejects) if r.get("sample_id") == sid), None)
    fb = run.feedback.get(s["meta"].get("reference_id"))
    texts = {name: shown(text, f"/sample/{quote(sid)}/{name}.txt") for name, text in whole_texts(run, s).items()}
    draft, improved = texts["response"].text, texts["improved_response"].text
    mine = {"instruction": texts["instruction"].text, "response": draft, "improved_response": improved}
    has_ref = s["meta"].get("reference_id") in run.references() or bool(s.get("original"))
    ref = (texts["reference_instruction"].text, texts["reference_response"].text) if has_ref else None
    measured = not rewrites_reference(s["meta"].get("method"))
    return pages.page(
        "sample",
        title=(s.get("instruction") or "")[:60],
        page="",
        s=clip(s),
        texts=texts,
        long=any(t.cut for t in texts.values()) or any(map(is_clipped, (s, j, fb, failure))),
        record_url=f"/sample/{quote(sid)}/record.json",
        j=clip(j),
        verdict=VERDICTS.get(((j or {}).get("pairwise") or {}).get("winner")),
        judge_failure=clip(f"the judge failed: {failure['reason']} ({failure.get('detail', '')})") if failure else None,
        diff=word_diff(draft, improved) if improved else [],
        changed=changed_share(draft, improved),
        side=beside(mine, ref, run.copy_threshold(), measured) if ref else None,
        fb=clip(fb),
        u=s["meta"].get("usage") or {},
        outcome=view_outcome(pages.view, sid),
    )


def sample_text(pages: Pages, sid: str, part: str) -> Response:
    """/sample/<sid>/<part>: the whole of one of a sample's texts as plain text (`instruction.txt`, `response.txt`,
    `improved_response.txt`, `reference_instruction.txt`, `reference_response.txt`), or its whole record as JSON
    (`record.json`); masked as every page is."""
    run, s = _found(pages.view, sid)
    if part == "record.json":
        return mask(json_text(s)), 200, JSON
    name, ext = part.rsplit(".", 1) if "." in part else (part, "")
    text = whole_texts(run, s).get(name) if ext == "txt" else None
    if text is None:
        raise NotFound()
    return mask(text), 200, TEXT


def _found(view: View, sid: str) -> tuple[RunIndex, dict[str, Any]]:
    found = view.find(sid)
    if found is None:
        raise NotFound()
    return found


def whole_texts(run: RunIndex, s: dict[str, Any]) -> dict[str, str]:
    """A sample's texts whole, by the name its page links them by: its instruction, draft and improved response, and
    its reference pair ('' when the reference text is not available here)."""
    original = s.get("original") or {}  # a recycled sample's seed pair, when its seeds cannot be read here
    ref = run.references().get(s["meta"].get("reference_id")) or (
        (original.get("instruction") or "", original.get("response") or "") if original else ("", "")
    )
    texts = (s.get("instruction"), s.get("response"), s.get("improved_response"), *ref)
    names = ("instruction", "response", "improved_response", "reference_instruction", "reference_response")
    return {name: "" if text is None else str(text) for name, text in zip(names, texts, strict=True)}


def view_outcome(view: View, sid: str) -> tuple[str, str] | None:
    """A filtered view's outcome of a sample (kept or removed, and why); None in a view that is not filtered."""
    return view.outcomes.get(sid) if view.filtered else None


def rejects(pages: Pages, args: Any) -> Response:
    """/rejects: rejects grouped by stage and reason (one group's in full with `stage` and `reason`)."""
    groups = pages.view.reject_groups()
    stage, reason = args.get("stage"), args.get("reason")
    shown = [g for g in groups if g["stage"] == stage and g["reason"] == reason] if stage else groups
    limit = 10**9 if args.get("all") else (200 if stage else 20)
    return pages.page(
        "rejects",
        title="rejects",
        page="rejects",
        groups=groups,
        shown=shown,
        limit=limit,
        total=sum(g["count"] for g in groups),
    )


def compare(pages: Pages, args: Any) -> Response:
    """/compare: one reference's samples from each run side by side (the reference with most samples by default)."""
    view = pages.view
    refs = view.reference_counts().most_common()
    reference = args.get("reference") or (refs[0][0] if refs else "")
    return pages.page(
        "compare",
        title="compare",
        page="compare",
        refs=refs,
        reference=reference,
        by_run=view.by_reference(reference) if reference else {},
    )


def evaluation(pages: Pages, args: Any) -> Response:
    """/ of an evaluation dir: its figures, then its instructions (filtered by `outcome` and a search `q` whose every
    word appears in the instruction or an answer, as the sample list searches; cut into pages), each with its outcome
    and the lengths of both answers."""
    rows = answered_rows(pages.view.path)
    outcome, terms = args.get("outcome", ""), args.get("q", "").lower().split()
    if outcome and outcome not in OUTCOMES:
        raise BadQuery(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    counts = {o: sum(r.outcome == o for r in rows) for o in OUTCOMES}
    rows = [
        r
        for r in rows
        if (not outcome or r.outcome == outcome)
        and all(term in f"{r.instruction}\n{r.student}\n{r.baseline}".lower() for term in terms)
    ]
    return pages.page(
        "evaluation",
        title="evaluation",
        page="evaluation",
        figures=read_json(pages.view.path / EVALUATION),
        total=len(rows),
        counts=counts,
        outcome=outcome,
        q=args.get("q", ""),
        **paged(rows, args),
    )


def answer(pages: Pages, args: Any) -> Response:
    """/answer?id=<id>: one instruction of an evaluation, the student's answer beside the baseline's (each shown to
    SHOWN_CHARS characters), and the judge's verdict in each order with its reason."""
    row = _answered(pages, args)
    texts = {
        name: shown(getattr(row, name), "/answer.txt?" + urlencode({"id": row.id, "part": name}))
        for name in ANSWER_PARTS
    }
    return pages.page("answer", title=row.instruction[:60], page="", row=row, texts=texts, orders=ORDERS)


def answer_text(pages: Pages, args: Any) -> Response:
    """/answer.txt?id=<id>&part=<part>: the whole of an instruction (`instruction`) or an answer (`student`,
    `baseline`) as plain text, masked."""
    row = _answered(pages, args)
    part = args.get("part", "")
    if part not in ANSWER_PARTS:
        raise NotFound()
    return mask(getattr(row, part)), 200, TEXT


def _answered(pages: Pages, args: Any) -> Answered:
    key = args.get("id")
    found = None
    if pages.view.kind == "evaluation" and key is not None:
        found = next((r for r in answered_rows(pages.view.path) if r.id == key), None)
    if found is None:
        raise NotFound()
    return found


def experiment(pages: Pages) -> Response:
    """/experiment: an experiment dir's cells."""
    if pages.view.kind != "experiment":
        raise NotFound()
    return pages.page("experiment", title="experiment", page="experiment", exp=experiment_cells(pages.view.path))


def program(pages: Pages, cell_id: str) -> Response:
    """/program/<cell_id>: one cell's program, predictor by predictor."""
    view = pages.view
    path = cell_program(view.path, cell_id) if view.kind == "experiment" else None
    if path is None:
        raise NotFound()
    return pages.page(
        "program", title=f"program of {cell_id}", page="", cell_id=cell_id, predictors=program_predictors(path)
    )


def experiment_html(pages: Pages) -> Response:
    """/experiment.html: the page the experiment wrote."""
    path = pages.view.path / "experiment.html"
    if pages.view.kind != "experiment" or not path.is_file():
        raise NotFound()
    return written_page(path)


def report(pages: Pages) -> Response:
    """/report: the run's report.html."""
    path = pages.view.path / "report.html"
    if not path.is_file():
        raise NotFound()
    return written_page(path)


def live(pages: Pages) -> Response:
    """/live: the run as it works (refed_dspy.view.index), looked at again every second by the page's script."""
    found = pages.view.live
    if found is None:
        raise NotFound()
    live = found.figures()
    return pages.page(
        "live", title="live", page="live", live=live, time_left=time_left(live), live_script=pages.live_script
    )


def time_left(live: dict[str, Any]) -> str:
    """The live figures' time left as the page's script says it (the progress line's clock): none once ended."""
    eta = live.get("eta_s")
    return "none" if live.get("state") == "ended" else ("unknown" if eta is None else duration(eta))


def live_figures(pages: Pages) -> Response:
    """/live.json: what the live page shows now, as JSON (masked)."""
    found = pages.view.live
    if found is None:
        raise NotFound()
    return mask(json_text(found.figures())), 200, JSON


PARTS = (("instruction", "Instruction"), ("response", "Final response"))
ANSWER_PARTS = ("instruction", "student", "baseline")
ORDERS = ("the student's answer shown first", "the baseline's answer shown first")


def pieces(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """`text` cut into (piece, copied) at `spans` (sorted, not overlapping); the pieces joined are `text`."""
    out, at = [], 0
    for start, end in spans:
        if start > at:
            out.append((text[at:start], False))
        out.append((text[start:end], True))
        at = end
    if at < len(text):
        out.append((text[at:], False))
    return out


def beside(sample: dict[str, Any], reference: tuple[str, str], threshold: float, measured: bool) -> dict[str, Any]:
    """What the page shows of `sample` beside `reference` (instruction, response): per part its title, both texts in
    pieces (copied runs marked) and, when `measured` (not a method that rewrites its reference), its closeness and
    whether it reaches `threshold`."""
    mine = {"instruction": sample.get("instruction") or "", "response": final_response(sample)}
    theirs = dict(zip(("instruction", "response"), reference, strict=True))
    parts = []
    for name, title in PARTS:
        a, b = mine[name], theirs[name]
        close = closeness(a, b) if measured else None
        parts.append(
            {
                "name": name,
                "title": title,
                "mine": pieces(a, copied_spans(a, b)),
                "theirs": pieces(b, copied_spans(b, a)),
                "closeness": close,
                "is_copy": close is not None and close.value >= threshold,
            }
        )
    return {"measured": measured, "threshold": threshold, "parts": parts}


def experiment_cells(path: Path) -> dict[str, Any]:
    """The experiment's name, state and champion, and its cells (every cell of the grid, one not started too), each
    with `has_program` when its program file is there to show."""
    status = experiment_status(path)
    cells = [
        {
            **cell.model_dump(),
            "cost": _cost(cell.cost_usd, cell.cost_up_to_usd),
            "has_program": cell_program(path, cell.id) is not None,
        }
        for cell in status.cells
    ]
    unsettled = unsettled_text(status)
    paid = f"{status.calls} paid LM calls" + (f" ({unsettled})" if unsettled else "")
    return {
        "name": status.name,
        "state": status.state,
        "champion": status.champion,
        "cells": cells,
        "paid": f"{paid}, {_cost(status.cost_usd, status.cost_up_to_usd)}",
    }


def _cost(cost: float | None, up_to: float | None) -> str:
    """What calls cost, and up to what when some are of unknown tokens (refed_dspy.ledger.usage.usd_up_to)."""
    return usd_up_to(cost, up_to - cost if up_to is not None and cost is not None else None)


def cell_program(path: Path, cell_id: str) -> Path | None:
    """The program a cell kept (its cell.json's `program`), when it is a file inside the experiment dir."""
    if "/" in cell_id or "\\" in cell_id or cell_id in ("", ".", ".."):
        return None
    named = read_json(path / "cells" / cell_id / "cell.json").get("program")
    if not isinstance(named, str):
        return None
    program = Path(named).resolve()
    return program if program.is_file() and program.is_relative_to(path.resolve()) else None


def program_predictors(program: Path) -> dict[str, dict[str, Any]]:
    """Each predictor of a saved program: its instructions and demos (an unreadable file: none)."""
    try:
        state = json.loads(program.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return program_view(state) if isinstance(state, dict) else {}


TEMPLATES = "refed_dspy.view"  # its templates/ folder
HTML = {"Content-Type": "text/html; charset=utf-8"}
JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}
TEXT = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
Response = tuple[str, int, dict[str, str]]


@dataclass(frozen=True)
class Pages:
    """The viewer's pages over `view`, with the style sheet and the script every page inlines (and the live page's)."""

    view: View
    style: str
    script: str
    live_script: str  # the live page's own

    @classmethod
    def of(cls, view: View) -> Pages:
        """The pages of `view`, the style sheet and scripts read once."""
        return cls(view, asset(TEMPLATES, "style.css"), asset(TEMPLATES, "script.js"), asset(TEMPLATES, "live.js"))

    def page(self, name: str, status: int = 200, **context: Any) -> Response:
        """Template `name`.html filled with `context`, masked, as a Flask response."""
        body = render(
            TEMPLATES,
            f"{name}.html",
            style=self.style,
            script=self.script,
            status=self.view.status(),
            has_report=(self.view.path / "report.html").is_file(),
            **context,
        )
        return mask(body), status, HTML

    def error(self, status: int, title: str, heading: str, message: str) -> Response:
        """The error page: `heading`, then `message`, with HTTP `status`."""
        return self.page("error", status, title=title, page="", heading=heading, message=message)


def written_page(path: Path) -> Response:
    """A page the run wrote (the report, the experiment's page), as it is on disk but masked."""
    return mask(Path(path).read_text(encoding="utf-8", errors="replace")), 200, HTML


class BadQuery(ValueError):
    """A query value the viewer cannot use (answered 400)."""


def _number(value: str | None, name: str = "value") -> float | None:
    """A finite number from a query value ('' or absent: None); BadQuery otherwise (nan, inf, 1e400, words)."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise BadQuery(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise BadQuery(f"{name}={value!r} is not a finite number")
    return number


def whole_number(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """A whole number from a query value, held within [low, high] (absent: `default`)."""
    number = _number(value, name)
    return default if number is None else int(min(high, max(low, number)))


def filters_from(args: Any) -> Filters:
    """The list's filters from a query string."""
    return Filters(
        q=args.get("q", ""),
        reference=args.get("reference", ""),
        feature=args.get("feature", ""),
        method=args.get("method", ""),
        verdict=args.get("verdict", ""),
        outcome=args.get("outcome", ""),
        score_min=_number(args.get("score_min"), "score_min"),
        score_max=_number(args.get("score_max"), "score_max"),
    )
