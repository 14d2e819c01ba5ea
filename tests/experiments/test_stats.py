"""Paired differences with bootstrap intervals, and the smallest difference a test set can see."""

from __future__ import annotations

import random

import pytest

from refed_dspy.experiments.stats import detectable_difference, paired_difference, unpaired_difference


def test_a_real_difference_is_significant_and_noise_is_not():
    rng = random.Random(1)
    base = [rng.random() for _ in range(40)]
    better = [b + 0.2 + rng.gauss(0, 0.1) for b in base]
    d = paired_difference(better, base)
    assert d.significant and 0.15 < d.mean < 0.25 and d.low > 0 and d.low < d.mean < d.high
    same = [b + rng.gauss(0, 0.1) for b in base]
    assert not paired_difference(same, base).significant


def test_noise_is_rarely_called_significant():
    """At 95%, about 5 in 100 null comparisons come out significant; a broken interval would call many."""
    rng = random.Random(7)
    calls = 0
    for trial in range(100):
        a = [rng.random() for _ in range(20)]
        b = [rng.random() for _ in range(20)]
        calls += paired_difference(a, b, resamples=2000, seed=trial).significant
    assert calls <= 12


def test_the_interval_narrows_with_more_examples_and_is_reproducible():
    rng = random.Random(3)
    diffs = [rng.gauss(0.1, 0.3) for _ in range(400)]
    small = paired_difference(diffs[:25], [0.0] * 25)
    large = paired_difference(diffs, [0.0] * 400)
    assert (large.high - large.low) < (small.high - small.low) / 2
    assert paired_difference(diffs[:25], [0.0] * 25) == small  # seeded


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no paired scores"):
        paired_difference([], [])
    assert not paired_difference([0.5], [0.1]).significant  # one example proves nothing


def test_detectable_difference_shrinks_with_the_square_root_of_n():
    assert detectable_difference(16, 0.3) == pytest.approx(2.8016 * 0.3 / 4, rel=1e-3)
    assert detectable_difference(64, 0.3) == pytest.approx(detectable_difference(16, 0.3) / 2)
    assert detectable_difference(0, 0.3) == float("inf")


def test_two_groups_of_different_items_are_compared_each_resampled_on_its_own():
    rng = random.Random(5)
    better = [rng.gauss(7.0, 1.5) for _ in range(30)]
    worse = [rng.gauss(5.5, 1.5) for _ in range(25)]
    d = unpaired_difference(better, worse)
    assert d.significant and d.low > 0 and d.n == 25 and 1.0 < d.mean < 2.0
    same = [rng.gauss(5.5, 1.5) for _ in range(30)]
    assert not unpaired_difference(same, worse).significant
    with pytest.raises(ValueError, match="both groups"):
        unpaired_difference([], [1.0])


def test_on_noise_the_interval_calls_a_difference_significant_about_as_often_as_its_level_says():
    """8 pairs of pure noise, 400 times: a plain percentile bootstrap interval excludes 0 in 12% of them at a 95% level
    (it is too narrow for a few units); the expanded one (read at the t interval's width) in about 6%."""
    import random

    rng, hits = random.Random(1), 0
    for k in range(400):
        a, b = [rng.random() for _ in range(8)], [rng.random() for _ in range(8)]
        hits += paired_difference(a, b, 0.95, resamples=1000, seed=k).significant
    assert hits / 400 <= 0.09, hits


def test_t_quantiles():
    from refed_dspy.experiments.stats import t_quantile

    for df, p, want in [(1, 0.975, 12.706), (2, 0.975, 4.303), (5, 0.975, 2.571), (30, 0.975, 2.042)]:
        assert abs(t_quantile(p, df) - want) < 2e-3


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_a_handful_of_test_references_does_not_make_noise_significant(n):
    """2 to 5 units of pure noise, 300 times, at 97.5% (two cells after Bonferroni): resampling a handful of units never
    reaches past their range, so the bootstrap interval alone was their range and called noise significant in 50%
    (2 units), 26% (3) and 15% (4) of draws. Widened to the t interval over the same units, about 2.5% (at most 5%
    here), paired, paired by reference (2 examples of each) and unpaired alike."""
    rng = random.Random(n)
    paired = grouped = unpaired = 0
    for k in range(300):
        a, b = [rng.random() for _ in range(n)], [rng.random() for _ in range(n)]
        paired += paired_difference(a, b, 0.975, resamples=300, seed=k).significant
        unpaired += unpaired_difference(a, b, 0.975, resamples=300, seed=k).significant
        effect = [rng.gauss(0, 0.3) for _ in range(n)]  # a reference's examples share its effect
        diffs = [effect[i // 2] + rng.gauss(0, 0.2) for i in range(2 * n)]
        groups = [str(i // 2) for i in range(2 * n)]
        grouped += paired_difference(diffs, [0.0] * (2 * n), 0.975, resamples=300, seed=k, groups=groups).significant
    assert max(paired, grouped, unpaired) / 300 <= 0.05, (paired, grouped, unpaired)


def test_the_interval_is_never_narrower_than_the_t_interval():
    from statistics import fmean, stdev

    from refed_dspy.experiments.stats import t_quantile

    diffs = [0.05, 0.40, 0.30]  # every reference better: their range excludes 0, a t interval over 3 does not
    d = paired_difference(diffs, [0.0] * 3, 0.975)
    half = t_quantile(1 - 0.025 / 2, 2) * stdev(diffs) / 3**0.5
    assert d.low <= fmean(diffs) - half + 1e-9 and d.high >= fmean(diffs) + half - 1e-9
    assert d.low < 0 and not d.significant
    many = paired_difference(diffs * 10, [0.0] * 30, 0.975)  # 30 units of the same: now it is significant
    assert many.significant and many.low > 0.1


def test_tied_scores_of_a_handful_of_references_are_not_significant():
    """Judge scores are discrete: 2 references both 0.25 better have a zero-width interval. Fewer units than any
    permutation test needs to reject at the level (2 x 0.5^n paired, 2 / C(n1 + n2, n1) unpaired) are never
    significant; enough of the same are."""
    assert not paired_difference([0.5, 0.5], [0.25, 0.25], 0.975).significant
    assert not paired_difference([0.5] * 6, [0.25] * 6, 0.975).significant  # 2 x 0.5^6 = 0.031 > 0.025
    assert paired_difference([0.5] * 7, [0.25] * 7, 0.975).significant
    groups = [str(i // 2) for i in range(10)]  # 5 references of 2 examples each: 5 units, too few
    assert not paired_difference([0.5] * 10, [0.25] * 10, 0.975, groups=groups).significant
    assert not unpaired_difference([7.0] * 3, [5.0] * 3, 0.95).significant  # 2 / C(6, 3) = 0.1
    assert unpaired_difference([7.0] * 5, [5.0] * 5, 0.95).significant  # 2 / C(10, 5) = 0.008
    # two groups of one repeated value each, at magnitudes where the variances underflow: no division by zero
    assert unpaired_difference([1e-160, 2e-160], [1e-160, 1e-160]).n == 2


def test_the_fewest_references_a_significant_difference_needs():
    from refed_dspy.experiments.stats import least_units

    assert [least_units(level) for level in (0.95, 0.975, 0.9875)] == [6, 7, 8]
    for level in (0.95, 0.975):
        n = least_units(level)
        assert not paired_difference([1.0] * (n - 1), [0.0] * (n - 1), level).significant
        assert paired_difference([1.0] * n, [0.0] * n, level).significant
