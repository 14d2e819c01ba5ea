"""`refed view`: the viewer's web app (Flask, which MLflow already installs) over a View of one directory.

Pages: the sample list (search, filters, pages), one sample (draft and improved side by side with a
word-level diff, the sample beside its reference pair with the runs copied from it marked, analysis and plan, the
judge's scores and reasons, the reference's feedback, provenance), rejects by stage and reason with what the model returned, for a `refed compare` dir, one
reference's samples from each method side by side, and for an experiment dir its cells, each cell's program and the
experiment's own page (its samples are those of its synthesis checks and examples). Every page is rendered from the files as they
are when it is loaded; nothing is written. Every page masks the keys the viewer's process holds (refed_dspy.secrets):
a file written before refed masked them may still quote one.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from refed_dspy.diff import changed_share, word_diff
from refed_dspy.errors import RefedError
from refed_dspy.methods.registry import rewrites_reference
from refed_dspy.secrets import mask
from refed_dspy.view.beside import beside
from refed_dspy.view.experiment import cell_program, experiment_cells, program_predictors
from refed_dspy.view.index import VERDICTS, View
from refed_dspy.view.query import BadQuery, _count, filters_from, loopback_host

PER_PAGE = 50


def create_app(view: View):
    """The Flask app serving `view`."""
    import jinja2
    from flask import Flask, abort, request

    app = Flask("refed_view")
    env = jinja2.Environment(loader=jinja2.PackageLoader("refed_dspy.view", "templates"), autoescape=True)
    style, script = (
        resources.files("refed_dspy.view").joinpath("templates", name).read_text(encoding="utf-8")
        for name in ("style.css", "script.js")
    )

    def render(name: str, status: int = 200, **ctx: Any):
        report = view.path / "report.html"
        body = env.get_template(f"{name}.html").render(
            style=style, script=script, status=view.status(), has_report=report.is_file(), **ctx
        )
        return mask(body), status, {"Content-Type": "text/html; charset=utf-8"}

    def page_file(path: Path):
        """A page the run wrote (the report, the experiment's page), as it is on disk but masked."""
        body = mask(Path(path).read_text(encoding="utf-8", errors="replace"))
        return body, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.errorhandler(RefedError)
    def refed_error(err: RefedError):
        return render("error", 500, title="error", page="", heading="The run dir cannot be read", message=str(err))

    @app.before_request
    def only_from_this_machine():
        origin = request.headers.get("Origin")
        if not loopback_host(request.host) or (origin is not None and not loopback_host(origin)):
            return render(
                "error",
                403,
                title="forbidden",
                page="",
                heading="Forbidden",
                message="the viewer answers only pages of http://127.0.0.1 (or localhost) on this machine",
            )
        view.refresh()
        return None

    @app.errorhandler(BadQuery)
    def bad_query(err: BadQuery):
        return render("error", 400, title="bad request", page="", heading="Bad request", message=str(err))

    @app.get("/")
    def samples():
        if view.kind == "experiment" and not view.rows and not request.args:
            return experiment()  # an experiment's samples come with its synthesis checks: its cells first
        f = filters_from(request.args)
        rows = [r for r in view.rows if f.keep(r)]
        per = _count(request.args.get("per"), "per", PER_PAGE, 1, 500)
        pages = max(1, math.ceil(len(rows) / per))
        page_no = _count(request.args.get("page"), "page", 1, 1, pages)
        query = {k: v for k, v in request.args.items() if k != "page" and v != ""}

        def url(n: int) -> str:
            return "/?" + urlencode({**query, "page": n})

        return render(
            "samples",
            title="samples",
            page="samples",
            f=f,
            rows=rows[(page_no - 1) * per : page_no * per],
            total=len(rows),
            choices=view.choices(),
            page_no=page_no,
            pages=pages,
            prev_url=url(page_no - 1) if page_no > 1 else None,
            next_url=url(page_no + 1) if page_no < pages else None,
        )

    @app.get("/sample/<sid>")
    def sample(sid: str):
        found = view.find(sid)
        if found is None:
            abort(404)
        run, s = found
        j = run.judgments.get(sid)
        failure = next((r for r in reversed(run.judge_rejects) if r.get("sample_id") == sid), None)
        draft, improved = s.get("response") or "", s.get("improved_response") or ""
        original = s.get("original") or {}  # a recycled sample's seed pair, when its seeds cannot be read here
        ref = run.references().get(s["meta"].get("reference_id")) or (
            (original["instruction"], original["response"]) if original else None
        )
        measured = not rewrites_reference(s["meta"].get("method"))
        return render(
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

    @app.get("/rejects")
    def rejects():
        groups = view.reject_groups()
        stage, reason = request.args.get("stage"), request.args.get("reason")
        shown = [g for g in groups if g["stage"] == stage and g["reason"] == reason] if stage else groups
        limit = 10**9 if request.args.get("all") else (200 if stage else 20)
        return render(
            "rejects",
            title="rejects",
            page="rejects",
            groups=groups,
            shown=shown,
            limit=limit,
            total=sum(g["count"] for g in groups),
        )

    @app.get("/compare")
    def compare():
        refs = view.reference_counts().most_common()
        reference = request.args.get("reference") or (refs[0][0] if refs else "")
        return render(
            "compare",
            title="compare",
            page="compare",
            refs=refs,
            reference=reference,
            by_run=view.by_reference(reference) if reference else {},
        )

    @app.get("/experiment")
    def experiment():
        if view.kind != "experiment":
            abort(404)
        return render("experiment", title="experiment", page="experiment", exp=experiment_cells(view.path))

    @app.get("/program/<cell_id>")
    def program(cell_id: str):
        path = cell_program(view.path, cell_id) if view.kind == "experiment" else None
        if path is None:
            abort(404)
        return render(
            "program", title=f"program of {cell_id}", page="", cell_id=cell_id, predictors=program_predictors(path)
        )

    @app.get("/experiment.html")
    def experiment_page():
        path = view.path / "experiment.html"
        if view.kind != "experiment" or not path.is_file():
            abort(404)
        return page_file(path)

    @app.get("/report")
    def report():
        path = view.path / "report.html"
        if not path.is_file():
            abort(404)
        return page_file(path)

    @app.errorhandler(404)
    def not_found(_err):
        return render(
            "error",
            404,
            title="not found",
            page="",
            heading="Not found",
            message="no such page or sample in this directory",
        )

    return app


def serve(view: View, port: int = 8765, host: str = "127.0.0.1"):
    """A threaded HTTP server for `view` on `host:port` (0: any free port); returns it (call serve_forever, and read
    the port it listens on from its `port`). RefedError, one line, when the port is out of range or taken."""
    import errno
    import socket

    from werkzeug.serving import make_server

    if not 0 <= port <= 65535:
        raise RefedError(
            f"port {port} is out of range; give one from 1 to 65535, or 0 for any free port",
            cli=f"--port {port} is out of range; give one from 1 to 65535, or 0 for any free port",
        )
    # bound here, not by Werkzeug: on a taken port it prints its own lines and calls sys.exit(1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise RefedError(
                f"port {port} on {host} is in use by another program; stop it, or choose another port "
                "(0: any free port)",
                cli=f"port {port} on {host} is in use by another program; stop it, or give another --port "
                "(--port 0: any free port)",
            ) from None
        raise RefedError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None
    try:
        return make_server(host, port, create_app(view), threaded=True, fd=sock.fileno())
    finally:
        sock.close()  # the server holds its own duplicate of the socket
