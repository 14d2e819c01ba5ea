"""Other libraries' log records that tell a user nothing they can act on, dropped for the length of a block."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator


class _Drop(logging.Filter):
    def __init__(self, matches: Callable[[str], bool]):
        super().__init__()
        self.matches = matches

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.matches(record.getMessage())


@contextlib.contextmanager
def dropping(loggers: Iterable[str], what: Iterable[str] | Callable[[str], bool]) -> Iterator[None]:
    """Within the block, records of the named loggers are not emitted when their message holds any of the phrases
    `what` (or, a function, when `what(message)` is true)."""
    if callable(what):
        drop = _Drop(what)
    else:
        phrases = tuple(what)
        drop = _Drop(lambda text: any(phrase in text for phrase in phrases))
    found = [logging.getLogger(name) for name in loggers]
    for one in found:
        one.addFilter(drop)
    try:
        yield
    finally:
        for one in found:
            one.removeFilter(drop)
