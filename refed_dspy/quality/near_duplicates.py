"""The report's `near_duplicates` block: clusters of near-duplicate samples (MinHash LSH, as the `near_duplicates`
filter finds them) counted by size, the largest shown; what its section of report.html shows and its line of the text
summary.

The settings are those of the config's `near_duplicates` filter when its [[filters]] list one, else the filter's
defaults, so the report counts what that filter would remove."""

from __future__ import annotations

from collections import Counter
from typing import Any

from refed_dspy.config import Config
from refed_dspy.filters.near_duplicates import NearDuplicates, near_duplicate_matches, parts_of

LARGEST = 5  # clusters shown in the report
SHOWN_MEMBERS = 5  # removed members listed per cluster shown
SNIPPET = 240  # characters of a cluster's kept text


def settings_of(config: Config) -> NearDuplicates:
    """The config's first `near_duplicates` filter, or one with the defaults."""
    return next((f for f in config.filters if isinstance(f, NearDuplicates)), NearDuplicates())


def near_duplicate_block(samples: list[dict[str, Any]], spec: NearDuplicates) -> dict[str, Any]:
    """Clusters of near-duplicates among `samples` (a cluster: a kept sample and the later ones that repeat it):
    how many, their sizes (size -> clusters), the samples beyond the first of each, and the largest few."""
    matches = near_duplicate_matches(
        [parts_of(s, spec.field) for s in samples], spec.threshold, spec.shingle_words, spec.num_perm, spec.seed
    )
    members: dict[int, list[tuple[int, float]]] = {}
    for m in matches:
        members.setdefault(m.of, []).append((m.index, m.similarity))
    sizes = Counter(len(v) + 1 for v in members.values())
    largest = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:LARGEST]
    return {
        "field": spec.field,
        "threshold": spec.threshold,
        "shingle_words": spec.shingle_words,
        "num_perm": spec.num_perm,
        "seed": spec.seed,
        "samples": len(samples),
        "clusters": len(members),
        "in_clusters": sum(size * n for size, n in sizes.items()),
        "near_duplicates": len(matches),
        "share": round(len(matches) / len(samples), 4) if samples else 0.0,
        "sizes": {str(size): sizes[size] for size in sorted(sizes)},
        "largest": [
            {
                "kept": samples[kept]["meta"]["id"],
                "size": len(dups) + 1,
                "text": " / ".join(parts_of(samples[kept], spec.field))[:SNIPPET],
                "members": [
                    {"id": samples[i]["meta"]["id"], "similarity": round(sim, 3)} for i, sim in dups[:SHOWN_MEMBERS]
                ],
            }
            for kept, dups in largest
        ],
    }


def _settings_phrase(block: dict[str, Any]) -> str:
    return (
        f"{block['field']}, {block['shingle_words']}-word shingles, estimated Jaccard >= {block['threshold']}, "
        f"{block['num_perm']} MinHash permutations"
    )


def near_duplicate_section(block: dict[str, Any]) -> dict[str, Any]:
    """What report.html's "Near-duplicates" section shows (quality/templates/report_near_duplicates.html): the block and
    its settings in words."""
    return {"block": block, "phrase": _settings_phrase(block)}


def near_duplicate_line(block: dict[str, Any]) -> str:
    """The text summary's line."""
    if not block.get("clusters"):
        return f"  near-dups    none ({_settings_phrase(block)})"
    return (
        f"  near-dups    {block['near_duplicates']} samples repeat another ({block['share']:.1%}), in "
        f"{block['clusters']} clusters, the largest of {max(int(k) for k in block['sizes'])} "
        f"({_settings_phrase(block)})"
    )
