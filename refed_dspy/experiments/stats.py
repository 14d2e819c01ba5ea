"""Paired comparisons of two programs scored on the same examples: the mean difference, a bootstrap confidence
interval, and the smallest difference a test set of a given size can tell from noise. Pure functions."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev
from typing import Any


@dataclass(frozen=True)
class PairedDifference:
    """`mean` difference (candidate minus baseline: of per-example differences, or of two groups' means), with its
    `level` bootstrap interval. `least_p`: the smallest p-value any permutation test of these units could give (all
    of one sign, or the groups wholly apart), so that ties cannot make a handful of units significant."""

    n: int
    mean: float
    low: float
    high: float
    level: float
    least_p: float = 0.0

    @property
    def significant(self) -> bool:
        """The interval excludes 0, and there are enough units for any test to tell them from noise at this level
        (judge scores are discrete: 2 references both +0.25 have an interval of width 0)."""
        return self.n > 1 and self.least_p < 1 - self.level and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "n": self.n,
            "mean": round(self.mean, 4),
            "ci_low": round(self.low, 4),
            "ci_high": round(self.high, 4),
            "level": self.level,
            "significant": self.significant,
        }


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (0.5 < p < 1) for `df` degrees of freedom: bisection on its CDF, the density integrated by
    Simpson's rule (exact enough for an interval's width)."""
    const = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(t: float, steps: int = 400) -> float:
        h = t / steps
        f = [const * (1 + (h * i) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def expanded_tail(level: float, n: int) -> float:
    """The tail a percentile bootstrap interval of `n` independent units is read at so that it is as wide as a t
    interval would be (Hesterberg's expanded percentile interval): a plain percentile interval is too narrow for a few
    dozen units, and calls noise significant more often than `level` says."""
    tail = (1 - level) / 2
    if n < 2:
        return tail
    return NormalDist().cdf(-math.sqrt(n / (n - 1)) * t_quantile(1 - tail, n - 1))


def _interval(means: list[float], tail: float) -> tuple[float, float]:
    """The `tail` and `1 - tail` quantiles of bootstrap means."""
    means = sorted(means)
    k = len(means)
    return means[max(0, math.floor(tail * k))], means[min(k - 1, math.ceil((1 - tail) * k) - 1)]


def _widest(boot: tuple[float, float], mean: float, se: float, level: float, df: float) -> tuple[float, float]:
    """The bootstrap interval `boot`, widened to the t interval `mean` +- t * `se` where that is wider. Resampling a
    handful of units cannot reach past their smallest and largest value, however far out the tail is read: with 3 test
    references the expanded interval was their range, and called noise significant in 26% of null draws at a 97.5%
    level. The t interval is the floor a small sample needs."""
    half = t_quantile(1 - (1 - level) / 2, max(1, math.floor(df))) * se  # fewer degrees of freedom: wider
    return min(boot[0], mean - half), max(boot[1], mean + half)


def _ratio_se(parts: list[tuple[float, int]], mean: float) -> float:
    """Standard error of a mean over clusters (sum, count) of unequal sizes (the ratio estimator, linearized)."""
    n, total = len(parts), sum(k for _, k in parts)
    residuals = sum((t - mean * k) ** 2 for t, k in parts)
    return math.sqrt(n / (n - 1) * residuals) / total


def paired_difference(
    candidate: list[float],
    baseline: list[float],
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
    groups: list[str] | None = None,
) -> PairedDifference:
    """The mean of `candidate[i] - baseline[i]` and its expanded percentile bootstrap interval (resampled with
    replacement, `resamples` times, seeded), never narrower than the t interval over the same units. With `groups`
    (one key per pair: several examples made from one reference are not independent), whole groups are resampled, so
    the interval is not narrowed by examples that share a source; `n` is then the number of groups. ValueError when
    the lists differ in length or are empty."""
    if len(candidate) != len(baseline) or (groups is not None and len(groups) != len(candidate)):
        raise ValueError(f"paired scores need equal lengths ({len(candidate)} vs {len(baseline)})")
    if not candidate:
        raise ValueError("no paired scores")
    diffs = [c - b for c, b in zip(candidate, baseline, strict=True)]
    mean = fmean(diffs)
    clusters: dict[str, list[float]] = {}
    for i, d in enumerate(diffs):
        clusters.setdefault(groups[i] if groups is not None else str(i), []).append(d)
    parts = [(sum(v), len(v)) for v in clusters.values()]
    n = len(parts)
    if n == 1:
        return PairedDifference(1, mean, mean, mean, level, 1.0)
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        drawn = rng.choices(parts, k=n)
        means.append(sum(t for t, _ in drawn) / sum(k for _, k in drawn))
    low, high = _widest(_interval(means, expanded_tail(level, n)), mean, _ratio_se(parts, mean), level, n - 1)
    return PairedDifference(n, mean, low, high, level, least_p=_least_sign_p(n))


def unpaired_difference(
    candidate: list[float], baseline: list[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> PairedDifference:
    """The difference of the two means and its expanded percentile bootstrap interval, each group resampled on its own
    and never narrower than Welch's t interval: for scores of different items (two synthesis runs' samples). `n` is
    the smaller group. ValueError for an empty one."""
    if not candidate or not baseline:
        raise ValueError("both groups need scores")
    mean = fmean(candidate) - fmean(baseline)
    n = min(len(candidate), len(baseline))
    if n == 1:
        return PairedDifference(1, mean, mean, mean, level, 1.0)
    rng = random.Random(seed)
    means = [
        fmean(rng.choices(candidate, k=len(candidate))) - fmean(rng.choices(baseline, k=len(baseline)))
        for _ in range(resamples)
    ]
    va, vb = stdev(candidate) ** 2 / len(candidate), stdev(baseline) ** 2 / len(baseline)
    se = math.sqrt(va + vb)
    # Welch-Satterthwaite degrees of freedom; two groups each of one repeated value have none to go on
    spread_of_spread = va**2 / (len(candidate) - 1) + vb**2 / (len(baseline) - 1)
    df = (va + vb) ** 2 / spread_of_spread if spread_of_spread > 0 else n - 1
    low, high = _widest(_interval(means, expanded_tail(level, n)), mean, se, level, df)
    least_p = min(1.0, 2 / math.comb(len(candidate) + len(baseline), len(candidate)))  # the groups wholly apart
    return PairedDifference(n, mean, low, high, level, least_p)


def _least_sign_p(n: int) -> float:
    """The smallest two-sided p-value a sign-flip test of `n` paired units can give: all of one sign."""
    return min(1.0, 2 * 0.5**n)


def least_units(level: float) -> int:
    """The fewest independent units (references) a paired difference needs to be significant at `level` at all."""
    n = 1
    while _least_sign_p(n) >= 1 - level:
        n += 1
    return n


def significantly_better(d: Mapping[str, Any] | None) -> bool:
    """Whether a difference (`PairedDifference.as_dict()`) is significant and in the candidate's favour."""
    return bool(d) and bool(d.get("significant")) and d["mean"] > 0


def significantly_worse(d: Mapping[str, Any] | None) -> bool:
    """Whether a difference (`PairedDifference.as_dict()`) is significant and against the candidate."""
    return bool(d) and bool(d.get("significant")) and d["mean"] < 0


def smallest_test(sizes: Mapping[str, Mapping[str, int]]) -> int:
    """The fewest test examples of any target ({target: {side: examples}}): the power every cell can count on, the
    same in the pre-flight, once the examples exist and in the result."""
    return min(per_side["test"] for per_side in sizes.values())


def detectable_difference(n: int, sd: float, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true mean difference that `n` paired examples detect with probability `power` at `level`
    (two-sided), when per-example differences spread with standard deviation `sd`: (z_level + z_power) * sd / sqrt(n).
    """
    if n < 1:
        return math.inf
    z = NormalDist()
    return (z.inv_cdf(1 - (1 - level) / 2) + z.inv_cdf(power)) * sd / math.sqrt(n)


def spread(diffs: list[float]) -> float | None:
    """Standard deviation of per-example differences (None under two)."""
    return stdev(diffs) if len(diffs) > 1 else None
