"""What the sample page shows of a record of any size: each text cut to SHOWN_CHARS characters, each list and mapping
to SHOWN_ITEMS entries, with a link to the whole (pure).

A page's work grows with what it reads: the word diff of draft and improved is quadratic in their words, and a 10 MB
sample kept a viewer thread busy for minutes. So every measure the page shows (the diff, the share changed, closeness
to the reference, the copied runs) reads only the texts as shown, and a text that was cut says so and links to the
whole of it, served as plain text (routes.sample_text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SHOWN_CHARS = 6000  # of each text the page shows and measures: the word diff of two such texts takes about 0.3 s
SHOWN_ITEMS = 50  # entries of a list or mapping the page shows
SHOWN_DEPTH = 8  # levels of nesting the page shows


@dataclass(frozen=True)
class Shown:
    """One text as the page shows it.

    Attributes:
        text: at most SHOWN_CHARS characters from its start.
        total: the characters of the whole text.
        url: where the whole text is served (plain text, masked).
    """

    text: str
    total: int
    url: str

    @property
    def cut(self) -> bool:
        """Whether the page shows only the start of the text."""
        return len(self.text) < self.total

    @property
    def note(self) -> str:
        """What the page says under a cut text."""
        return f"the first {len(self.text):,} of {self.total:,} characters"


def shown(text: str | None, url: str, limit: int = SHOWN_CHARS) -> Shown:
    """`text` (None: '') cut to `limit` characters, the whole to be found at `url`."""
    text = text or ""
    return Shown(text[:limit], len(text), url)


def clip(value: Any, limit: int = SHOWN_CHARS, depth: int = SHOWN_DEPTH) -> Any:
    """`value` (JSON-like) with each string cut to `limit` characters (an ellipsis marks the cut), each list and
    mapping to its first SHOWN_ITEMS entries, nothing deeper than `depth` levels: work bounded whatever its size."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    if depth <= 0:
        return None
    if isinstance(value, dict):
        items = list(_first(value.items()))
        return {k: clip(v, limit, depth - 1) for k, v in items}
    if isinstance(value, list):
        return [clip(v, limit, depth - 1) for v in value[:SHOWN_ITEMS]]
    return value


def _first(items: Any) -> Any:
    for n, item in enumerate(items):
        if n >= SHOWN_ITEMS:
            return
        yield item


def is_clipped(value: Any, limit: int = SHOWN_CHARS, depth: int = SHOWN_DEPTH) -> bool:
    """Whether `clip` cuts anything of `value` (looks no further than `clip` does)."""
    if isinstance(value, str):
        return len(value) > limit
    if isinstance(value, (dict, list)):
        if depth <= 0 or len(value) > SHOWN_ITEMS:
            return True
        entries = list(_first(value.values() if isinstance(value, dict) else value))
        return any(is_clipped(v, limit, depth - 1) for v in entries)
    return False
