"""The report's statistics on per-item scores: numpy and the standard library only.

    wilson               a binomial proportion's Wilson score interval
    mcnemar_exact        two-sided exact McNemar test (binomial test on the discordant pairs)
    bootstrap_differences / paired_bootstrap
                         percentile interval of mean(a) - mean(b) on the same items, resampling
                         clusters (an item's templates stay together)
    noninferiority       is a lower than b by less than a margin (the paired interval's lower end)
    holm                 Holm's step-down adjustment of a family of p-values
    seed_summary         mean and sample sd over seeds, every seed's value kept

Scores are fractions in [0, 1] (a 0/1 score per item for most tasks); differences and margins
are in the same unit. The report converts to percentage points when it prints.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
_BLOCK = 1 << 22  # index draws per bootstrap block: bounds memory on large evaluations


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and a two-sided interval around it."""

    estimate: float
    low: float
    high: float


def z_value(level: float = LEVEL) -> float:
    """The standard normal quantile of a two-sided `level` interval (1.95996... for 0.95)."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a confidence level in (0, 1)")
    return statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)


def wilson(successes: float, n: int, level: float = LEVEL) -> Interval:
    """Wilson score interval of a proportion `successes / n` (Wilson 1927).

    Unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse at 0 or n
    successes. A fractional `successes` (a sum of partial scores) is taken as is.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson({successes}, {n}): expected 0 <= successes <= n, n >= 1")
    z = z_value(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at 0 (or n) successes the end is exactly 0 (1); rounding would leave 1e-17 off it
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(p, low, high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value of `b` pairs right only under one system, `c` only under
    the other: twice the binomial(b + c, 1/2) tail of min(b, c), at most 1.

    Exact integer arithmetic, so a small p (18 vs 1: 7.6e-5) is not lost to rounding.
    """
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact({b}, {c}): expected counts >= 0")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def _clusters(n: int, clusters: Sequence | None) -> np.ndarray:
    """Cluster index per row, clusters numbered in sorted order of their labels."""
    if clusters is None:
        return np.arange(n)
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster labels for {n} rows")
    # sorted labels: the resamples depend on the set of rows, not on the order they came in
    _, index = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return index.reshape(-1)


def _cluster_sums(a, b, clusters, weights) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired scores of shapes {a.shape} and {b.shape}: expected two "
                         "non-empty vectors of one length")
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != a.shape or (w <= 0).any():
        raise ValueError("weights: expected one positive weight per row")
    index = _clusters(a.size, clusters)
    m = int(index.max()) + 1
    return (np.bincount(index, weights=w * (a - b), minlength=m),
            np.bincount(index, weights=w, minlength=m))


def bootstrap_differences(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence | None = None,
    *,
    weights: Sequence[float] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap replicates of the (weighted) mean of `a - b`, resampling whole clusters.

    Each replicate draws as many clusters as there are, uniformly with replacement, and takes
    sum(w * (a - b)) / sum(w) over the rows of the drawn clusters: with unit weights and one row
    per cluster, the ordinary paired bootstrap of the mean difference; with an item's templates
    in one cluster, the cluster (item) bootstrap, which keeps their correlation.

    Args:
      a, b: the two systems' scores on the same rows, in the same order.
      clusters: one label per row (an item id); None: every row its own cluster.
      weights: one positive weight per row (e.g. 1 / rows of its template, for a mean of
        template means); None: equal weights.
      resamples: the number of replicates.
      seed: numpy's `default_rng` seed; equal inputs and seed give equal replicates.

    Returns:
      float64 [resamples].
    """
    num, den = _cluster_sums(a, b, clusters, weights)
    m = num.size
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK // m)
    out = np.empty(resamples)
    for start in range(0, resamples, block):
        draw = rng.integers(0, m, size=(min(block, resamples - start), m))
        out[start:start + len(draw)] = num[draw].sum(axis=1) / den[draw].sum(axis=1)
    return out


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence | None = None,
    *,
    weights: Sequence[float] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """The weighted mean difference of `a - b` and its percentile bootstrap interval.

    See `bootstrap_differences` for the arguments; `level` is the two-sided coverage.
    """
    reps = bootstrap_differences(a, b, clusters, weights=weights, resamples=resamples, seed=seed)
    return _percentile(a, b, clusters, weights, reps, level)


def _percentile(a, b, clusters, weights, reps: np.ndarray, level: float) -> Interval:
    z_value(level)  # checks the level
    num, den = _cluster_sums(a, b, clusters, weights)
    low, high = np.quantile(reps, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(float(num.sum() / den.sum()), float(low), float(high))


@dataclasses.dataclass(frozen=True)
class NonInferiority:
    """Is `a` no more than `margin` below `b`? Passed when the paired interval's lower end
    (two-sided `level`, so a one-sided test at (1 - level) / 2) is above -margin."""

    margin: float
    difference: Interval  # a - b
    passed: bool
    share_below: float  # share of bootstrap replicates at or below -margin


def noninferiority(
    a: Sequence[float],
    b: Sequence[float],
    margin: float,
    clusters: Sequence | None = None,
    *,
    weights: Sequence[float] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> NonInferiority:
    """Non-inferiority of `a` to `b` with `margin` (same unit as the scores, e.g. 0.10)."""
    if not margin >= 0:
        raise ValueError(f"margin={margin}: expected >= 0")
    reps = bootstrap_differences(a, b, clusters, weights=weights, resamples=resamples, seed=seed)
    diff = _percentile(a, b, clusters, weights, reps, level)
    return NonInferiority(margin, diff, diff.low > -margin, float(np.mean(reps <= -margin)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (Holm 1979).

    The i-th smallest p (from 1) is multiplied by (m - i + 1), capped at 1, and made monotone
    (never below an earlier adjusted value). Rejecting where the adjusted p < alpha controls
    the family-wise error rate at alpha.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])  # stable: ties keep their order
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def seed_summary(values: Mapping[str, float]) -> dict:
    """{"mean", "sd", "n", "values": {seed: value}}: sd is the sample sd (n - 1), None for one
    seed. Every seed's value is kept, so a reader sees the spread, not only its summary."""
    if not values:
        raise ValueError("seed_summary: expected at least one seed")
    xs = list(values.values())
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else None,
            "n": len(xs), "values": dict(values)}
