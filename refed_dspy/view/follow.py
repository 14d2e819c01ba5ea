"""Follow a JSONL record file as it grows: read only what was appended since the last look.

A run in progress appends whole lines; a reader may see a last line still being written, which it
leaves for the next look. A file that shrank or was replaced (`refed repair`, `judge --fresh`) is read
again from the start. Reading never writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from refed_dspy.store.jsonl import complete_records


class Follower:
    """The records of one JSONL file; `poll()` returns (new records, whether it started over)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.lines = 0
        self._identity: tuple[int, int] | None = None

    def poll(self) -> tuple[list[dict[str, Any]], bool]:
        try:
            st = os.stat(self.path)
        except OSError:
            restarted = self.offset > 0
            self.offset, self.lines, self._identity = 0, 0, None
            return [], restarted
        restarted = False
        identity = (st.st_dev, st.st_ino)
        if identity != self._identity or st.st_size < self.offset:
            restarted = self.offset > 0 or self._identity is not None
            self.offset, self.lines, self._identity = 0, 0, identity
        if st.st_size == self.offset:
            return [], restarted
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(st.st_size - self.offset)
        # a line still being written waits for the next look
        records, end, lines = complete_records(data, self.path, self.lines)
        self.lines += lines
        self.offset += end
        return records, restarted
