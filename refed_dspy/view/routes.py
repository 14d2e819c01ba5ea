"""What each of the viewer's URLs answers, as functions of its Pages and the request's arguments; view/app.py binds
them to their URLs. A missing sample, cell or page raises NotFound (the 404 page)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from werkzeug.exceptions import NotFound

from refed_dspy.methods.registry import rewrites_reference
from refed_dspy.secrets import mask
from refed_dspy.store.jsonl import json_text
from refed_dspy.text.diff import changed_share, word_diff
from refed_dspy.view.beside import beside
from refed_dspy.view.experiment import cell_program, experiment_cells, program_predictors
from refed_dspy.view.index import VERDICTS
from refed_dspy.view.query import filters_from, whole_number
from refed_dspy.view.render import JSON, Pages, Response, written_page

PER_PAGE = 50


def samples(pages: Pages, args: Any) -> Response:
    """/: the sample list, filtered by `args` and cut into pages (an experiment dir without samples: its cells)."""
    view = pages.view
    if view.kind == "experiment" and not view.rows and not args:
        return experiment(pages)  # an experiment's samples come with its synthesis checks: its cells first
    f = filters_from(args)
    rows = [r for r in view.rows if f.keep(r)]
    per = whole_number(args.get("per"), "per", PER_PAGE, 1, 500)
    page_count = max(1, math.ceil(len(rows) / per))
    page_no = whole_number(args.get("page"), "page", 1, 1, page_count)
    query = {k: v for k, v in args.items() if k != "page" and v != ""}

    def url(n: int) -> str:
        return "/?" + urlencode({**query, "page": n})

    return pages.page(
        "samples",
        title="samples",
        page="samples",
        f=f,
        rows=rows[(page_no - 1) * per : page_no * per],
        total=len(rows),
        choices=view.choices(),
        page_no=page_no,
        pages=page_count,
        prev_url=url(page_no - 1) if page_no > 1 else None,
        next_url=url(page_no + 1) if page_no < page_count else None,
        empty=view.empty_note(),
    )


def sample(pages: Pages, sid: str) -> Response:
    """/sample/<sid>: one sample, its draft and improved response diffed, beside its reference, with its judgment."""
    view = pages.view
    found = view.find(sid)
    if found is None:
        raise NotFound()
    run, s = found
    j = run.judgments.get(sid)
    failure = next((r for r in reversed(run.judge_rejects) if r.get("sample_id") == sid), None)
    draft, improved = s.get("response") or "", s.get("improved_response") or ""
    original = s.get("original") or {}  # a recycled sample's seed pair, when its seeds cannot be read here
    ref = run.references().get(s["meta"].get("reference_id")) or (
        (original["instruction"], original["response"]) if original else None
    )
    measured = not rewrites_reference(s["meta"].get("method"))
    return pages.page(
        "sample",
        title=(s.get("instruction") or "")[:60],
        page="",
        s=s,
        j=j,
        verdict=VERDICTS.get(((j or {}).get("pairwise") or {}).get("winner")),
        judge_failure=f"the judge failed: {failure['reason']} ({failure.get('detail', '')})" if failure else None,
        diff=word_diff(draft, improved) if improved else [],
        changed=changed_share(draft, improved),
        side=beside(s, ref, run.copy_threshold(), measured) if ref else None,
        fb=run.feedback.get(s["meta"].get("reference_id")),
        u=s["meta"].get("usage") or {},
        outcome=view.outcomes.get(sid) if view.filtered else None,
    )


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
    """/live: the run as it works (refed_dspy.view.live), looked at again every second by the page's script."""
    found = pages.view.live
    if found is None:
        raise NotFound()
    return pages.page("live", title="live", page="live", live=found.figures(), live_script=pages.live_script)


def live_figures(pages: Pages) -> Response:
    """/live.json: what the live page shows now, as JSON (masked)."""
    found = pages.view.live
    if found is None:
        raise NotFound()
    return mask(json_text(found.figures())), 200, JSON
