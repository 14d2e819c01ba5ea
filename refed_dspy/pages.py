"""The one way refed lays out a document: Jinja templates shipped as package files (a package's `templates/` folder),
filled with plain data the Python side computed. report.html, experiment.html, the viewer's pages and an export's
dataset card all go through here.

HTML templates are autoescaped: a sample's text is whatever the teacher or the seed file said, and a page shows it as
text, never as markup. A Markdown template (`.md`) is not escaped: Markdown has no escaping of its own to apply, and the
card's text is ours or the run's names.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import jinja2


def number(value: Any) -> str:
    """A figure as the report shows it: n/a for None, a whole float as the integer it is (103, not 103.0000), another
    float to 4 decimals (1 with thousands separators from 100 up), anything else as it prints."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def percent(value: float, digits: int = 0) -> str:
    """A share as a percentage: 0.256 -> '26%' (`digits` decimals)."""
    return f"{value:.{digits}%}"


@functools.cache
def environment(package: str) -> jinja2.Environment:
    """The Jinja environment over `package`'s templates/ folder (made once per package)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=jinja2.select_autoescape(disabled_extensions=("md",), default_for_string=True, default=True),
    )
    env.filters.update(number=number, percent=percent)
    return env


def render(package: str, template: str, /, **context: Any) -> str:
    """Template `template` of `package`'s templates/ folder, filled with `context`."""
    return environment(package).get_template(template).render(**context)


def asset(package: str, name: str) -> str:
    """A file of `package`'s templates/ folder as text (a style sheet or a script a page inlines)."""
    return resources.files(package).joinpath("templates", name).read_text(encoding="utf-8")
