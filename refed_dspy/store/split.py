"""Train/validation splits that keep every item of one reference on the same side (no reference leaks across)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any


def sample_reference(sample: dict[str, Any]) -> str:
    """The group a sample belongs to in a split: its reference (its own id when it has none)."""
    return sample["meta"].get("reference_id") or sample["meta"]["id"]


def _closest_total(sizes: dict[int, int], target: float, total: int) -> dict[int, int]:
    """How many groups of each size (`sizes`: size -> groups of that size) make the total closest to `target` of all
    that lie strictly between 0 and `total` (ties to the larger); {} when none does. Exact: the totals reachable are a
    bitset grown by chunks of 1, 2, 4, ... groups of one size (a bounded knapsack), kept to walk back the choice."""
    reach, chunks = 1, []  # bit t of `reach`: a total of t items can be made
    for size, count in sorted(sizes.items()):
        left, m = count, 1
        while left:
            take = min(m, left)
            chunks.append((size, take, reach))
            reach |= reach << (size * take)
            left, m = left - take, m * 2
    totals = [t for t in range(1, total) if reach >> t & 1]
    if not totals:
        return {}
    best = min(totals, key=lambda t: (abs(t - target), -t))
    chosen: dict[int, int] = {}
    for size, take, before in reversed(chunks):
        if best >= size * take and before >> (best - size * take) & 1 and not before >> best & 1:
            chosen[size] = chosen.get(size, 0) + take
            best -= size * take
    return chosen


def split_by_reference(
    samples: list, val_fraction: float, seed: int = 0, key: Callable[[Any], str] = sample_reference
) -> tuple[list, list]:
    """Train/validation split that keeps all items of one reference (`key`) on the same side.

    Validation takes the share of the items closest to `val_fraction` that whole references allow (at least one
    reference, never all of them; ties to the larger share): which references of each size go there is drawn with
    `seed`. (It used to take references in a shuffled order until the share was met: one large reference drawn first
    made 31-37% of a 10% ask, where 6.25% was possible.) Both sides keep the input order.
    """
    if not samples or val_fraction <= 0:
        return list(samples), []
    groups: dict[str, int] = defaultdict(int)
    for s in samples:
        groups[key(s)] += 1
    refs = sorted(groups)
    random.Random(seed).shuffle(refs)
    sizes: dict[int, int] = defaultdict(int)
    for ref in refs:
        sizes[groups[ref]] += 1
    wanted = _closest_total(sizes, val_fraction * len(samples), len(samples))
    val_refs: set[str] = set()
    for ref in refs:  # of each size, the first drawn
        if wanted.get(groups[ref], 0) > 0:
            val_refs.add(ref)
            wanted[groups[ref]] -= 1
    return [s for s in samples if key(s) not in val_refs], [s for s in samples if key(s) in val_refs]


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def share_note(
    samples: list, val: list, val_fraction: float, key: Callable[[Any], str] = sample_reference
) -> str | None:
    """Why the validation share `split_by_reference` gave is far from `val_fraction` (off by more than half of it), in
    one line; None when it is near enough. Whole references move, so a few large ones make a coarse split: the share
    given is the closest they allow."""
    if not samples or val_fraction <= 0:
        return None
    got = len(val) / len(samples)
    if abs(got - val_fraction) <= val_fraction / 2:
        return None
    groups: dict[str, int] = defaultdict(int)
    for s in samples:
        groups[key(s)] += 1
    head = f"validation holds {len(val)} of {len(samples)} samples ({_percent(got)}), not the {_percent(val_fraction)} asked"
    if len(groups) == 1:
        return f"{head}: the split keeps each reference's samples together, and they all come from one reference"
    smallest = min(groups.values()) / len(samples)
    if val_fraction < smallest:
        return (
            f"{head}: the split keeps each reference's samples together, and with {len(groups)} references the "
            f"smallest nonzero share is {_percent(smallest)}"
        )
    return (
        f"{head}: the split keeps each reference's samples together, and of the shares whole references of its "
        f"{len(groups)} allow, {_percent(got)} is the closest"
    )


def split_three(
    items: list, test_fraction: float, val_fraction: float, seed: int = 0, key: Callable[[Any], str] = sample_reference
) -> tuple[list, list, list]:
    """Train / validation / test with every reference (`key`) on one side: `test_fraction` of the items held out
    first, then `val_fraction` of the rest for validation (split_by_reference's rules, seeds `seed` and `seed + 1`)."""
    rest, test = split_by_reference(items, test_fraction, seed, key)
    train, val = split_by_reference(rest, val_fraction, seed + 1, key)
    return train, val, test


def interleaved(sides: list[list]) -> list:
    """The items of `sides` in one list, taken side by side: the side with the smallest part of it taken goes next
    (ties to the larger side, then the earlier), so each side comes once before any comes twice, and after that each
    side keeps pace with its share. A synthesis that reaches its size before its last references still draws from
    every side."""
    taken = [0] * len(sides)
    out = []
    for _ in range(sum(len(s) for s in sides)):
        i = min(
            (i for i, s in enumerate(sides) if taken[i] < len(s)),
            key=lambda i: (taken[i] / len(sides[i]), -len(sides[i]), i),
        )
        out.append(sides[i][taken[i]])
        taken[i] += 1
    return out
