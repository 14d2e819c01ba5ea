"""Which teachers made a run's samples: each sample's `meta.teacher` (the model) and `meta.endpoint` (its api_base).

A run resumed with `--resume-anyway` onto another model or endpoint holds samples of more than one teacher; the
summary, report, viewer and dataset card then list each with its sample count. Pure functions over sample metas.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


def teacher_key(meta: dict[str, Any]) -> tuple[str, str | None]:
    """(model, endpoint) of one sample's meta; the endpoint is None for the provider's default (or an old record)."""
    return str(meta.get("teacher") or "?"), meta.get("endpoint")


def count_teachers(metas: Iterable[dict[str, Any]]) -> Counter:
    """Samples by (model, endpoint)."""
    return Counter(teacher_key(m) for m in metas)


def teacher_rows(counts: Counter) -> list[dict[str, Any]]:
    """[{model, endpoint, samples}], most samples first."""
    return [
        {"model": model, "endpoint": endpoint, "samples": n}
        for (model, endpoint), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or ""))
    ]


def teacher_label(row: dict[str, Any]) -> str:
    """`model` or `model at endpoint`."""
    return f"{row['model']} at {row['endpoint']}" if row.get("endpoint") else str(row["model"])


def mixed_line(rows: list[dict[str, Any]] | None) -> str | None:
    """One line naming each teacher with its sample count when there are several; None for one (or none)."""
    if not rows or len(rows) < 2:
        return None
    parts = ", ".join(f"{teacher_label(r)} ({r['samples']})" for r in rows)
    return f"samples from {len(rows)} teachers: {parts}"
