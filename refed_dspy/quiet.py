"""Other libraries' log records that tell a user nothing they can act on, dropped for the length of a block."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator


class _Drop(logging.Filter):
    def __init__(self, phrases: tuple[str, ...]):
        super().__init__()
        self.phrases = phrases

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(phrase in text for phrase in self.phrases)


@contextlib.contextmanager
def dropping(loggers: Iterable[str], phrases: Iterable[str]) -> Iterator[None]:
    """Within the block, records of the named loggers whose message holds any of `phrases` are not emitted."""
    drop = _Drop(tuple(phrases))
    found = [logging.getLogger(name) for name in loggers]
    for one in found:
        one.addFilter(drop)
    try:
        yield
    finally:
        for one in found:
            one.removeFilter(drop)
