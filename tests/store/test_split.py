"""Splits by reference, and the side-by-side order an experiment's examples synthesis takes references in."""

from __future__ import annotations

import pytest

from refed_dspy.store.split import interleaved, split_three


def test_interleaved_keeps_every_prefix_in_proportion():
    test, val, train = ["t1", "t2"], ["v1", "v2"], ["a1", "a2", "a3", "a4", "a5", "a6"]
    order = interleaved([test, val, train])
    assert sorted(order) == sorted(test + val + train) and len(order) == 10
    for n in range(3, 11):  # once each side has come
        prefix = order[:n]
        for side in (test, val, train):
            share = n * len(side) / 10
            assert abs(sum(x in side for x in prefix) - share) <= 1, (n, prefix)
    assert order[:3] == ["a1", "t1", "v1"]  # one of each side before any side's second
    assert [x for x in order if x in train] == train  # each side keeps its own order


@pytest.mark.parametrize("n", [3, 4, 7, 30])
def test_a_synthesis_that_stops_after_a_few_references_still_covers_every_side(n):
    refs = [f"r{i}" for i in range(n)]
    train, val, test = split_three(refs, 0.34, 0.5, seed=3, key=lambda r: r)
    sides = [side for side in (test, val, train) if side]
    order = interleaved(sides)
    assert all(set(order[: len(sides)]) & set(side) for side in sides)


def test_interleaved_of_empty_sides():
    assert interleaved([[], ["a"], []]) == ["a"] and interleaved([]) == []
