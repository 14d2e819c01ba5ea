"""Train/validation splits that keep every item of one reference on the same side (no reference leaks across)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any


def sample_reference(sample: dict[str, Any]) -> str:
    """The group a sample belongs to in a split: its reference (its own id when it has none)."""
    return sample["meta"].get("reference_id") or sample["meta"]["id"]


def split_by_reference(
    samples: list, val_fraction: float, seed: int = 0, key: Callable[[Any], str] = sample_reference
) -> tuple[list, list]:
    """Train/validation split that keeps all items of one reference (`key`) on the same side.

    References are shuffled with `seed` and moved to validation until it holds at least `val_fraction`
    of the items (so the fraction is met or exceeded by less than one reference's items), never all
    of them. Both sides keep the input order.
    """
    if not samples or val_fraction <= 0:
        return list(samples), []
    groups: dict[str, int] = defaultdict(int)
    for s in samples:
        groups[key(s)] += 1
    refs = sorted(groups)
    random.Random(seed).shuffle(refs)
    target = val_fraction * len(samples)
    val_refs: set[str] = set()
    count = 0
    for ref in refs:
        if count >= target or len(val_refs) == len(refs) - 1:
            break
        val_refs.add(ref)
        count += groups[ref]
    return [s for s in samples if key(s) not in val_refs], [s for s in samples if key(s) in val_refs]


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def share_note(
    samples: list, val: list, val_fraction: float, key: Callable[[Any], str] = sample_reference
) -> str | None:
    """Why the validation share `split_by_reference` gave is far from `val_fraction` (off by more than half of it), in
    one line; None when it is near enough. Whole references move, so a few large ones make a coarse split."""
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
    return (
        f"{head}: the split keeps each reference's samples together, and with {len(groups)} references the smallest "
        f"nonzero share is {_percent(smallest)}"
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
