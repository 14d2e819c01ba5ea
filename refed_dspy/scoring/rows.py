"""`refed score`'s output file, written as the scoring goes: each row is appended (one write, flushed to the system)
as soon as its pair is scored, so a scoring stopped by Ctrl-C or a kill keeps in the file every row it finished, and
the same command again scores only the pairs the file does not hold yet.

A row stands for a pair by its identity (the pair's `id` and instruction) and for a scoring by the model and token
limit it names. When the file is opened, a line that is not a row of this scoring is dropped: a last line a kill cut
off, a row of another model or token limit, a pair the source no longer gives, a second row of the same pair, a line
that is not a JSON object. The file is then rewritten with the rows kept (in one atomic replace), and the rows of the
pairs scored now are appended after them; once every pair is scored, the rows are put in the source's order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from refed_dspy.errors import ConfigError
from refed_dspy.store.jsonl import JsonlWriter, complete_lines, parse_record, write_jsonl_atomic

Identity = tuple[str, str]  # a pair's id and instruction


def identity(row: dict[str, Any]) -> Identity:
    """The pair a row stands for."""
    return (str(row.get("id")), str(row.get("instruction")))


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """`row` as the file gives it back: a figure that is not finite (an IFD over a perplexity of 0) is null there."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


class ScoreRows:
    """The rows of one scoring's output file (see the module docstring).

    Args:
        path: the JSONL file (`--out`); it need not exist.
        pairs: the identities of the pairs this scoring gives, in the source's order.
        model: the scoring model as rows name it.
        max_tokens: the token limit rows name.

    Attributes:
        rows: the rows the file holds, by identity (those kept when it was opened, then those appended).
        kept: how many rows the file held already for this scoring when it was opened.
        dropped: how many lines of it were dropped then (see the module docstring).
    """

    def __init__(self, path: str | Path, pairs: Sequence[Identity], model: str, max_tokens: int):
        self.path = Path(path)
        self.order = list(pairs)
        self.rows: dict[Identity, dict[str, Any]] = {}
        self.dropped = 0
        wanted = set(self.order)
        try:
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as err:
            raise ConfigError(f"cannot read --out {self.path}: {err.strerror or err}") from None
        torn = bool(data) and not data.endswith(b"\n")
        lines = 0
        for _, raw in complete_lines(data):
            lines += 1
            row = parse_record(raw)
            if row is None or row.get("model") != model or row.get("max_tokens") != max_tokens:
                continue
            if identity(row) in wanted and identity(row) not in self.rows:
                self.rows[identity(row)] = row
        self.kept = len(self.rows)
        self.dropped = lines - self.kept + torn
        if self.dropped or not data:
            try:  # what stays, whole; or an empty file to append to
                write_jsonl_atomic(self.path, list(self.rows.values()))
            except OSError as err:
                raise ConfigError(f"cannot write --out {self.path}: {err.strerror or err}") from None
        self._writer = JsonlWriter(self.path, reserve=False)

    def has(self, pair: Identity) -> bool:
        """Whether the file holds `pair`'s row."""
        return pair in self.rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append `rows` to the file, each in one write, flushed before this returns."""
        for row in rows:
            self._writer.append(row)
            self.rows[identity(row)] = plain(row)

    def finish(self) -> list[dict[str, Any]]:
        """Close the file, its rows put in the source's order (rewritten once, when they are not); the rows, so."""
        self._writer.close()
        ordered = [self.rows[p] for p in self.order if p in self.rows]
        if [identity(r) for r in ordered] != list(self.rows):
            write_jsonl_atomic(self.path, ordered)
        return ordered

    def close(self) -> None:
        """Close the file as it is (a scoring stopped: the rows written so far stay)."""
        self._writer.close()
