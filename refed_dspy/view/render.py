"""How the viewer answers with a page: its templates filled through refed_dspy.pages with the style sheet, the script
and the directory's status, and every body masked (refed_dspy.secrets) before it leaves the process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refed_dspy.pages import asset, render
from refed_dspy.secrets import mask
from refed_dspy.view.index import View

TEMPLATES = "refed_dspy.view"  # its templates/ folder
HTML = {"Content-Type": "text/html; charset=utf-8"}
JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}
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
