"""The Wilcoxon signed-rank p-value (engine.metrics.stats.wilcoxon_p) against independent
computations: a brute-force enumeration of every sign flip (exact, ties and zeros included),
scipy's exact test where scipy's own rules apply (no zeros, no ties), and scipy's normal
approximation above the exact range."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from engine.metrics.stats import EXACT_MAX_N, paired_comparison, wilcoxon_p


def enumerated_p(differences) -> float:
    """Two-sided p by listing all 2^n sign assignments of the non-zero |d|, ranked with mean
    ranks (scipy.stats.rankdata): P(|T+ - mu| >= |t - mu|)."""
    d = np.asarray([x for x in differences if x != 0], dtype=float)
    if d.size == 0:
        return 1.0
    ranks = scipy_stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    mu = ranks.sum() / 2
    hits = 0
    for signs in itertools.product((0, 1), repeat=d.size):
        t = sum(rank for rank, sign in zip(ranks, signs) if sign)
        hits += abs(t - mu) >= abs(observed - mu) - 1e-9
    return hits / 2 ** d.size


def test_zero_differences_do_not_shrink_p_below_the_test_on_the_non_zero_ones():
    """The defect: scipy's method='auto' chose on the length with zeros (0.0253 and 0.083)."""
    assert wilcoxon_p([1.0] * 5 + [0.0] * 14) == pytest.approx(2 / 2**5)  # 0.0625
    assert wilcoxon_p([1.0] * 3 + [0.0] * 12) == pytest.approx(2 / 2**3)  # 0.25
    # The zeros change nothing at all.
    assert wilcoxon_p([1.0, -0.5, 2.0, 3.0] + [0.0] * 9) == wilcoxon_p([1.0, -0.5, 2.0, 3.0])


@pytest.mark.parametrize("seed", range(12))
def test_exact_p_equals_enumeration_with_ties_and_zeros(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 13))
    # Small integer differences: many ties and zeros, the prompt_hit-like case.
    d = rng.integers(-2, 3, size=n).astype(float) + (rng.random() < 0.5) * rng.normal(0.5, 0.1, size=n).round(1)
    assert wilcoxon_p(d) == pytest.approx(enumerated_p(d), abs=1e-12)


@pytest.mark.parametrize("n", [5, 9, 16, 25, 40])
def test_exact_p_equals_scipys_exact_test_without_ties_or_zeros(n):
    d = np.random.default_rng(n).normal(0.3, 1.0, size=n)
    expected = scipy_stats.wilcoxon(d, method="exact").pvalue
    assert wilcoxon_p(d) == pytest.approx(expected, rel=1e-9)


def test_above_the_exact_range_the_normal_approximation_matches_scipys():
    d = np.round(np.random.default_rng(3).normal(0.2, 1.0, size=EXACT_MAX_N + 30), 1)  # ties included
    d = d[d != 0]
    expected = scipy_stats.wilcoxon(d, method="approx", correction=False).pvalue  # scipy corrects for ties too
    assert wilcoxon_p(d) == pytest.approx(expected, rel=1e-9)


def test_the_floor_two_to_the_one_minus_n_holds():
    rng = np.random.default_rng(9)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        d = rng.integers(-3, 4, size=n).astype(float)
        nonzero = int(np.count_nonzero(d))
        p = wilcoxon_p(d)
        assert 0 < p <= 1
        if nonzero:
            assert p >= min(1.0, 2 * 2.0**-nonzero) - 1e-12


def test_all_zero_and_single_differences():
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
    assert wilcoxon_p([0.7]) == 1.0
    assert wilcoxon_p([1.0, 2.0]) == pytest.approx(0.5)


def test_paired_means_cover_only_the_pairs_compared():
    """An infinite PSNR on either side drops that pair from the means too, not only from the
    difference; n counts the pairs used."""
    a, b = [20.0, math.inf, 21.0, 23.0], [21.0, 22.0, math.inf, 24.5]
    paired = paired_comparison(a, b)
    assert (paired.n, paired.excluded) == (2, 2)
    assert paired.mean_a == pytest.approx(21.5) and paired.mean_b == pytest.approx(22.75)
    assert paired.mean_b - paired.mean_a == pytest.approx(paired.mean_difference)
