"""`refed score`'s output file, written as the scoring goes: each row is appended (one write, flushed to the system)
as soon as its pair is scored, so a scoring stopped by Ctrl-C or a kill keeps in the file every row it finished, and
the same command again scores only the pairs the file does not hold yet.

A row stands for a pair by its identity (the pair's `id` and instruction) and for a scoring by the model and token
limit it names. When the file is opened, what is not a whole row is dropped (a last line a kill cut off, a line that is
not a JSON object, a second row of the same pair and scoring); rows of other scorings and of pairs not asked this time
(`--limit`, another source) are kept, after this scoring's. A file that holds lines but no row of any scoring is not
`refed score`'s: it is refused untouched. The rows of the pairs scored now are appended; once every pair is scored,
this scoring's rows are put in the source's order, the others after them.
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
        rows: this scoring's rows the file holds, by identity (those kept when it was opened, then those appended).
        others: the rows of other scorings and of pairs not asked this time, kept after them.
        kept: how many rows the file held already for this scoring when it was opened.
        dropped: how many lines of it were dropped then (see the module docstring).

    Raises:
        ConfigError: the file cannot be read or written, or it holds lines but no row of `refed score`.
    """

    def __init__(self, path: str | Path, pairs: Sequence[Identity], model: str, max_tokens: int):
        self.path = Path(path)
        self.order = list(pairs)
        self.rows: dict[Identity, dict[str, Any]] = {}
        self.others: list[dict[str, Any]] = []  # rows of other scorings, and of pairs not asked this time: kept
        wanted = set(self.order)
        try:
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as err:
            raise ConfigError(f"cannot read --out {self.path}: {err.strerror or err}") from None
        torn = bool(data) and not data.endswith(b"\n")
        found = [parse_record(raw) for _, raw in complete_lines(data)]
        rows = [r for r in found if r is not None and "model" in r and "max_tokens" in r]
        if data.strip() and not rows:
            raise ConfigError(f"--out {self.path} holds lines that are no rows of `refed score`: pick another file")
        seen: set[tuple[Identity, Any, Any]] = set()
        for row in rows:
            mine = row.get("model") == model and row.get("max_tokens") == max_tokens and identity(row) in wanted
            if (identity(row), row.get("model"), row.get("max_tokens")) in seen:
                continue
            seen.add((identity(row), row.get("model"), row.get("max_tokens")))
            if mine:
                self.rows[identity(row)] = row
            else:
                self.others.append(row)
        self.kept = len(self.rows)
        self.dropped = len(found) - len(self.rows) - len(self.others) + torn
        if self.dropped or not data:
            try:  # what stays, whole; or an empty file to append to
                write_jsonl_atomic(self.path, [*self.rows.values(), *self.others])
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
        if self.others or [identity(r) for r in ordered] != list(self.rows):
            write_jsonl_atomic(self.path, [*ordered, *self.others])
        return ordered

    def close(self) -> None:
        """Close the file as it is (a scoring stopped: the rows written so far stay)."""
        self._writer.close()
