"""What a person sees of a directory refed writes, read from its files without taking its lock: `refed status` and
`refed_dspy.run_status` (status/: where a run dir or an experiment dir stands, typed, and its text), and `refed view`,
a local, read-only web viewer of a run dir, a filtered dir or a `refed compare` dir (index.py: a run's rows; routes.py:
its pages, a run followed as it works among them; shown.py: what a page shows of a long text; app.py: the web app).

The viewer's names load on first use, so `refed status` imports none of the viewer."""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refed_dspy.view.app import create_app, serve
    from refed_dspy.view.index import Filters, Row, View

# public name -> the module that defines it (loaded on first use)
_LAZY = {
    "Filters": "refed_dspy.view.index",
    "Row": "refed_dspy.view.index",
    "View": "refed_dspy.view.index",
    "create_app": "refed_dspy.view.app",
    "serve": "refed_dspy.view.app",
}

__all__ = ["Filters", "Row", "View", "create_app", "serve"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refed_dspy.view' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
