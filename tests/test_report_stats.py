"""The report's statistics against known values, closed forms and brute force."""

import itertools
import math

import numpy as np
import pytest

from s2jax.report import stats


def _pct(interval):
    return tuple(round(100 * x, 1) for x in (interval.estimate, interval.low, interval.high))


def test_wilson_reproduces_21_of_43():
    assert _pct(stats.wilson(21, 43)) == (48.8, 34.6, 63.2)


def test_wilson_closed_form_at_zero_and_all_successes():
    # at 0 of n the interval is [0, z^2 / (n + z^2)]; at n of n its mirror image
    z2 = stats.z_value() ** 2
    lo = stats.wilson(0, 10)
    assert lo.low == 0 and lo.high == pytest.approx(z2 / (10 + z2), abs=1e-12)
    hi = stats.wilson(10, 10)
    assert hi.high == 1 and hi.low == pytest.approx(10 / (10 + z2), abs=1e-12)
    assert stats.z_value() == pytest.approx(1.959963984540054, abs=1e-12)
    with pytest.raises(ValueError):
        stats.wilson(3, 2)


def test_exact_mcnemar_reproduces_18_vs_1():
    p = stats.mcnemar_exact(18, 1)
    assert f"{p:.1e}" == "7.6e-05" and p == stats.mcnemar_exact(1, 18)
    assert p == 2 * (1 + 19) / 2**19  # closed form: 2 P(X <= 1), X ~ Bin(19, 1/2)
    assert stats.mcnemar_exact(0, 0) == 1.0 and stats.mcnemar_exact(5, 5) == 1.0


@pytest.mark.parametrize("b,c", [(0, 1), (3, 9), (7, 7), (12, 30), (100, 140)])
def test_exact_mcnemar_equals_a_two_sided_binomial_test(b, c):
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.binomtest(b, b + c, 0.5).pvalue
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_holm_over_four_arms_by_hand():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> 0.06 (monotone)
    p = [0.01, 0.04, 0.03, 0.005]
    adjusted = stats.holm(p)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [a < 0.05 for a in adjusted] == [True, False, False, True]
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


# A tiny case: 5 items, some with several templates (rows), unequal weights.
_A = [1, 0, 1, 1, 1, 0, 0, 1, 1]
_B = [0, 0, 1, 0, 1, 1, 0, 0, 1]
_ITEMS = ["u", "u", "v", "w", "w", "w", "x", "y", "y"]
_W = [1, 2, 1, 1, 1, 1, 3, 1, 2]


def _exact_bootstrap(a, b, items, w):
    """Every one of the m^m equally likely cluster resamples: the bootstrap's exact law."""
    labels = sorted(set(items))
    num = {c: sum(wi * (ai - bi) for ai, bi, wi, it in zip(a, b, w, items, strict=True) if it == c)
           for c in labels}
    den = {c: sum(wi for wi, it in zip(w, items, strict=True) if it == c) for c in labels}
    return np.array([sum(num[c] for c in draw) / sum(den[c] for c in draw)
                     for draw in itertools.product(labels, repeat=len(labels))])


def test_clustered_bootstrap_matches_exhaustive_enumeration():
    exact = np.sort(_exact_bootstrap(_A, _B, _ITEMS, _W))  # 5^5 = 3125 resamples
    reps = stats.bootstrap_differences(_A, _B, _ITEMS, weights=_W, resamples=40_000, seed=3)
    grid = np.unique(exact)
    cdf_exact = np.searchsorted(exact, grid, side="right") / exact.size
    cdf_reps = np.searchsorted(np.sort(reps), grid + 1e-12, side="right") / reps.size
    # DKW: P(sup |F_n - F| > 0.012) <= 2 exp(-2 * 40000 * 0.012^2) ~ 2e-5
    assert np.abs(cdf_reps - cdf_exact).max() < 0.012
    assert reps.mean() == pytest.approx(exact.mean(), abs=0.01)
    # the interval's ends sit at the exact law's 2.5% and 97.5% points
    ci = stats.paired_bootstrap(_A, _B, _ITEMS, weights=_W, resamples=40_000, seed=3)
    weighted = sum(w * (a - b) for a, b, w in zip(_A, _B, _W, strict=True)) / sum(_W)
    assert ci.estimate == pytest.approx(weighted)
    for end, q in ((ci.low, 0.025), (ci.high, 0.975)):
        below = np.mean(exact < end - 1e-9)
        at_or_below = np.mean(exact <= end + 1e-9)
        assert below - 0.012 <= q <= at_or_below + 0.012, (end, q)


def test_bootstrap_sd_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    d = a - b
    reps = stats.bootstrap_differences(a, b, resamples=100_000, seed=1)
    # resampling n rows: Var = population variance / n
    assert reps.std() == pytest.approx(d.std() / math.sqrt(60), rel=0.02)
    # 20 items x 3 templates: resampling items, Var = population variance of item means / 20
    items = np.repeat(np.arange(20), 3)
    reps = stats.bootstrap_differences(a, b, items, resamples=100_000, seed=1)
    means = d.reshape(20, 3).mean(axis=1)
    assert reps.std() == pytest.approx(means.std() / math.sqrt(20), rel=0.02)


def test_clustering_widens_the_interval_of_correlated_templates():
    # each item answered alike under its 4 templates: 4 copies are not 4 observations
    a = np.repeat([1, 0, 1, 1, 0, 1, 0, 1, 1, 1], 4)
    b = np.repeat([0, 0, 1, 0, 0, 0, 1, 0, 1, 0], 4)
    rows = stats.paired_bootstrap(a, b)
    items = stats.paired_bootstrap(a, b, np.repeat(np.arange(10), 4))
    assert rows.estimate == items.estimate == pytest.approx(0.4)
    assert (items.high - items.low) > 1.6 * (rows.high - rows.low)


def test_bootstrap_is_deterministic_and_independent_of_row_order():
    one = stats.paired_bootstrap(_A, _B, _ITEMS, seed=7)
    assert stats.paired_bootstrap(_A, _B, _ITEMS, seed=7) == one
    order = [4, 2, 8, 0, 6, 1, 7, 3, 5]
    shuffled = stats.paired_bootstrap([_A[i] for i in order], [_B[i] for i in order],
                                      [_ITEMS[i] for i in order], seed=7)
    assert shuffled == one
    reps = stats.bootstrap_differences(_A, _B, _ITEMS, seed=7)
    assert np.array_equal(reps, stats.bootstrap_differences(_A, _B, _ITEMS, seed=7))
    assert not np.array_equal(reps, stats.bootstrap_differences(_A, _B, _ITEMS, seed=8))


def test_noninferiority_is_the_lower_end_against_the_margin():
    a = [1] * 40 + [0] * 10  # 80%
    b = [1] * 42 + [0] * 8  # 84%, paired so that a's misses include b's
    res = stats.noninferiority(a, b, 0.10)
    assert res.difference.estimate == pytest.approx(-0.04)
    assert res.passed == (res.difference.low > -0.10)
    assert stats.noninferiority(a, b, 0.0).passed is False  # a is below b in every resample
    assert stats.noninferiority(a, b, 0.5).passed is True
    assert 0 <= res.share_below <= 1


def test_seed_summary_lists_every_seed():
    s = stats.seed_summary({"seed=0": 40.0, "seed=1": 50.0, "seed=2": 60.0})
    assert (s["mean"], s["sd"], s["n"]) == (50.0, 10.0, 3)
    assert s["values"] == {"seed=0": 40.0, "seed=1": 50.0, "seed=2": 60.0}
    assert stats.seed_summary({"only": 3.0})["sd"] is None
