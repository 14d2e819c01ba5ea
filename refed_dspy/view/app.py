"""`refed view`: the viewer's web app (Flask, which MLflow already installs) over a View of one directory.

Pages: the sample list (search, filters, pages), one sample (draft and improved side by side with a word-level diff,
the sample beside its reference pair with the runs copied from it marked, analysis and plan, the judge's scores and
reasons, the reference's feedback, provenance; each text shown to a bound, with a link to the whole of it as plain text:
refed_dspy.view.shown), rejects by stage and reason with what the model returned, for a `refed compare` dir, one
reference's samples from each method side by side, and for an experiment dir its cells, each cell's program and the
experiment's own page (its samples are those of its synthesis checks and examples), for an evaluation (`refed
evaluate`'s folder) its figures and each instruction's two answers with the judge's verdicts
(refed_dspy.view.evaluation), and for a run dir its live page
(the run as it works, updated every second: refed_dspy.view.index). Every page is rendered from the files as they
are when it is loaded; nothing is written. Every page masks the keys the viewer's process holds (refed_dspy.secrets):
a file written before refed masked them may still quote one.
"""

from __future__ import annotations

from typing import Any

from refed_dspy.errors import RefedError
from refed_dspy.providers.keys import loopback_host
from refed_dspy.view import routes
from refed_dspy.view.index import View
from refed_dspy.view.routes import BadQuery, Pages


def create_app(view: View) -> Any:
    """The Flask app serving `view`: the URLs of view/routes.py, answered only to this machine.

    Args:
        view: the directory to show; it is refreshed before each request.

    Returns:
        The Flask app.
    """
    from flask import Flask, request

    app = Flask("refed_view")
    pages = Pages.of(view)

    @app.before_request
    def only_from_this_machine():
        origin = request.headers.get("Origin")
        if not loopback_host(request.host) or (origin is not None and not loopback_host(origin)):
            message = "the viewer answers only pages of http://127.0.0.1 (or localhost) on this machine"
            return pages.error(403, "forbidden", "Forbidden", message)
        view.refresh()
        return None

    app.register_error_handler(
        RefedError, lambda err: pages.error(500, "error", "The run dir cannot be read", str(err))
    )
    app.register_error_handler(BadQuery, lambda err: pages.error(400, "bad request", "Bad request", str(err)))
    app.register_error_handler(
        404, lambda _err: pages.error(404, "not found", "Not found", "no such page or sample in this directory")
    )
    app.add_url_rule("/", "samples", lambda: routes.samples(pages, request.args))
    app.add_url_rule("/sample/<sid>", "sample", lambda sid: routes.sample(pages, sid))
    app.add_url_rule("/sample/<sid>/<part>", "sample_text", lambda sid, part: routes.sample_text(pages, sid, part))
    # no icon, and no 404 for it: a page of plain text (the whole of a sample's text) has no <link rel="icon"> to say so
    app.add_url_rule("/favicon.ico", "favicon", lambda: ("", 204))
    app.add_url_rule("/answer", "answer", lambda: routes.answer(pages, request.args))
    app.add_url_rule("/answer.txt", "answer_text", lambda: routes.answer_text(pages, request.args))
    app.add_url_rule("/rejects", "rejects", lambda: routes.rejects(pages, request.args))
    app.add_url_rule("/compare", "compare", lambda: routes.compare(pages, request.args))
    app.add_url_rule("/experiment", "experiment", lambda: routes.experiment(pages))
    app.add_url_rule("/program/<cell_id>", "program", lambda cell_id: routes.program(pages, cell_id))
    app.add_url_rule("/experiment.html", "experiment_page", lambda: routes.experiment_html(pages))
    app.add_url_rule("/report", "report", lambda: routes.report(pages))
    app.add_url_rule("/live", "live", lambda: routes.live(pages))
    app.add_url_rule("/live.json", "live_figures", lambda: routes.live_figures(pages))
    return app


def serve(view: View, port: int = 8765, host: str = "127.0.0.1") -> Any:
    """A threaded HTTP server for `view` on `host:port` (0: any free port); returns it (call serve_forever, and read
    the port it listens on from its `port`). RefedError, one line, when the port is out of range or taken.

    Args:
        view: the directory to show.
        port: the port to listen on, 0 to 65535 (0: any free port).
        host: the address to bind.

    Returns:
        The Werkzeug server, bound and listening but not yet serving.

    Raises:
        RefedError: the port is out of range, is in use, or cannot be bound on `host`.
    """
    import errno
    import socket

    from werkzeug.serving import WSGIRequestHandler, make_server

    class PlainLog(WSGIRequestHandler):
        """Werkzeug's request handler, its access log line without terminal colour codes (they reached a log file)."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            line = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in self.requestline)
            self.log("info", '"%s" %s %s', line, code, size)

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
        return make_server(host, port, create_app(view), threaded=True, request_handler=PlainLog, fd=sock.fileno())
    finally:
        sock.close()  # the server holds its own duplicate of the socket
