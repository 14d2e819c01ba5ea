"""Why a synthesis run made fewer samples than it was asked for: its dominant reject reason and the setting to change,
in one phrase (an experiment's examples synthesis, which must not tell a user to raise a budget that did not bind).
Pure: reads a summary dict."""

from __future__ import annotations

from typing import Any

from refed_dspy.engine.failures import hint_for

# reasons no LM failure explains: instructions the dedup dropped
_DEDUP = "the references give no more distinct instructions: add references (seeds.limit)"
_KNOBS = {"duplicate": _DEDUP, "near_duplicate": _DEDUP}


def shortfall_cause(summary: dict[str, Any], role: str = "teacher") -> str | None:
    """'16 of 64 rejects were truncated: raise teacher.max_tokens, or ask for shorter outputs' (the most frequent
    reason; duplicates and near-duplicates counted as one), or None when nothing was rejected."""
    rejects = dict(summary.get("rejects") or {})
    dropped = rejects.pop("duplicate", 0) + rejects.pop("near_duplicate", 0)
    if dropped:
        rejects["duplicate or near-duplicate"] = dropped
    if not rejects:
        return None
    reason, n = max(rejects.items(), key=lambda kv: kv[1])
    knob = _DEDUP if reason == "duplicate or near-duplicate" else _KNOBS.get(reason) or hint_for(reason, role)
    return f"{n} of {sum(rejects.values())} rejects were {reason}" + (
        f": {knob}" if knob else "; see its rejects.jsonl"
    )
