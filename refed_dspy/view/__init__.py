"""`refed view`: a local, read-only web viewer of a run dir, a filtered dir or a `refed compare` dir."""

from refed_dspy.view.app import create_app, serve
from refed_dspy.view.index import Filters, Row, View

__all__ = ["Filters", "Row", "View", "create_app", "serve"]
