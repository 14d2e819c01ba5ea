"""The scorer's cache: each forward pass's figures, by model, token limit and text, in one SQLite file, so a second
report, filter or `refed score` of the same texts makes no pass; and the speed each model had here, for the estimate
printed before scoring starts."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from array import array
from pathlib import Path

from refed_dspy.errors import ConfigError
from refed_dspy.scoring.stats import PassResult


def default_path() -> Path:
    """$XDG_CACHE_HOME/refed-dspy/scores.sqlite (~/.cache/... when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "refed-dspy" / "scores.sqlite"


def pass_key(model: str, max_tokens: int, kind: str, *texts: str) -> str:
    """The cache key of one pass: a hash of what decides its figures."""
    return hashlib.sha256(json.dumps([model, max_tokens, kind, *texts]).encode()).hexdigest()


class ScoreCache:
    """Pass results by key (see `pass_key`), and tokens per second by model and device."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS passes (key TEXT PRIMARY KEY, result TEXT, pooled BLOB)")
            self._db.execute("CREATE TABLE IF NOT EXISTS speed (model TEXT PRIMARY KEY, tokens_per_s REAL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB)")
            self._db.commit()
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(f"cannot open the scoring cache {self.path}: {err} (set [scoring] cache)") from None

    def get(self, keys: list[str]) -> dict[str, PassResult]:
        """The cached results of those of `keys` that are cached.

        Args:
            keys: pass keys, as `pass_key` makes them.

        Returns:
            Key -> its PassResult, for the keys found (the others are left out).
        """
        found: dict[str, PassResult] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, result, pooled FROM passes WHERE key IN ({marks})", chunk)
            for key, result, pooled in rows:
                fields = json.loads(result)
                vec = tuple(array("f", pooled)) if pooled else None
                found[key] = PassResult(**fields, pooled=vec)
        return found

    def put(self, results: dict[str, PassResult]) -> None:
        rows = []
        for key, r in results.items():
            fields = {k: getattr(r, k) for k in ("response_nll", "response_tokens", "instruction_nll")}
            fields |= {"instruction_tokens": r.instruction_tokens, "truncated": r.truncated}
            pooled = array("f", r.pooled).tobytes() if r.pooled is not None else None
            rows.append((key, json.dumps(fields), pooled))
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO passes VALUES (?, ?, ?)", rows)

    def get_vectors(self, keys: list[str]) -> dict[str, tuple[float, ...]]:
        """The cached embeddings of those of `keys` that are cached.

        Args:
            keys: embedding keys, as `pass_key` makes them.

        Returns:
            Key -> its vector, for the keys found (the others are left out).
        """
        found: dict[str, tuple[float, ...]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                found[key] = tuple(array("f", blob))
        return found

    def put_vectors(self, vectors: dict[str, tuple[float, ...]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(k, array("f", v).tobytes()) for k, v in vectors.items()],
            )

    def speed(self, model: str) -> float | None:
        row = self._db.execute("SELECT tokens_per_s FROM speed WHERE model = ?", (model,)).fetchone()
        return row[0] if row else None

    def note_speed(self, model: str, tokens_per_s: float) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO speed VALUES (?, ?)", (model, tokens_per_s))

    def close(self) -> None:
        self._db.close()
