"""Which teachers made a run's samples: each sample's `meta.teacher` (the model) and `meta.endpoint` (its api_base).

A run resumed with `--resume-anyway` onto another model or endpoint holds samples of more than one teacher; the
summary, report, viewer and dataset card then list each with its sample count. Pure functions over sample metas.
"""

from __future__ import annotations

import re
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


_SNAPSHOT = re.compile(r"[-@](\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def model_family(model: str) -> str:
    """A model string without its provider route and snapshot date, lower-cased: openai/gpt-4o-mini-2024-07-18,
    azure/gpt-4o-mini and gpt-4o-mini are one model; so are anthropic/claude-3-5-sonnet-20241022 and -latest."""
    return _SNAPSHOT.sub("", model.rsplit("/", 1)[-1].strip().lower())


def self_preference(judge: str | None, teachers: Iterable[str]) -> str | None:
    """The judge's model string when it is the model of one of the teachers (see `model_family`), else None."""
    if not judge:
        return None
    return judge if any(model_family(judge) == model_family(t) for t in teachers if t) else None


def self_preference_record(judge: str | None, metas: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What a report's judge block records of it: `self_preference` (True when the judge is the model of one of the
    samples' teachers; None when nothing was judged) and `self_preference_model`."""
    model = self_preference(judge, {str(m.get("teacher") or "") for m in metas})
    return {"self_preference": None if judge is None else model is not None, "self_preference_model": model}


def self_preference_line(model: str) -> str:
    """One line saying that the judge judges its own model's samples."""
    return (
        f"the judge {model} is also the teacher: judges favour their own model's outputs, so its scores may run high "
        "(judge with another model to compare)"
    )
