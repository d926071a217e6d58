import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from engine.metrics.stats import Interval, Paired, bootstrap_ci, paired_comparison


def _normal(seed, n, mean=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(mean, scale, size=n)


# --- bootstrap_ci -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [_normal(1, 40), np.random.default_rng(2).exponential(3.0, size=25), np.array([1.0, 5.0]), np.arange(7.0)],
)
def test_interval_contains_the_mean_of_the_values(values):
    interval = bootstrap_ci(values, resamples=2000)
    assert isinstance(interval, Interval)
    assert interval.mean == pytest.approx(values.mean(), rel=1e-12)
    assert interval.low <= interval.mean <= interval.high
    assert interval.low < interval.high and interval.n == len(values) and interval.excluded == 0


def test_bounds_match_the_exact_bootstrap_distribution_of_two_values():
    """Resampling {0, 1} gives means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 95%
    interval is [0, 1]; a 40% interval (quantiles 0.3 and 0.7) is [0.5, 0.5]."""
    assert (bootstrap_ci([0.0, 1.0]).low, bootstrap_ci([0.0, 1.0]).high) == (0.0, 1.0)
    narrow = bootstrap_ci([0.0, 1.0], confidence=0.4)
    assert (narrow.low, narrow.high) == (0.5, 0.5)


def test_bounds_agree_with_scipys_percentile_bootstrap():
    """Independent implementation, independent random draws: the bounds agree to a small
    fraction of the interval's width."""
    values = _normal(3, 60, mean=2.0, scale=1.5)
    ours = bootstrap_ci(values, confidence=0.9, resamples=20_000, seed=4)
    theirs = scipy_stats.bootstrap(
        (values,), np.mean, confidence_level=0.9, n_resamples=20_000, method="percentile", random_state=5
    ).confidence_interval
    width = ours.high - ours.low
    assert ours.low == pytest.approx(theirs.low, abs=0.03 * width)
    assert ours.high == pytest.approx(theirs.high, abs=0.03 * width)


def test_seed_fixes_the_result_and_changes_it():
    values = _normal(6, 30)
    assert bootstrap_ci(values, seed=1, resamples=500) == bootstrap_ci(values, seed=1, resamples=500)
    assert bootstrap_ci(values, seed=1, resamples=500).low != bootstrap_ci(values, seed=2, resamples=500).low


def test_higher_confidence_gives_a_wider_interval():
    values = _normal(7, 50)
    narrow, wide = bootstrap_ci(values, confidence=0.8), bootstrap_ci(values, confidence=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


def test_intervals_shrink_with_more_samples():
    """Width scales as 1/√n: from n = 10 to n = 1000 it drops about tenfold."""
    population = _normal(8, 1000, mean=5.0, scale=2.0)
    small, large = bootstrap_ci(population[:10]), bootstrap_ci(population)
    assert (large.high - large.low) < (small.high - small.low) / 4
    # The large-sample width is close to the normal-theory 2·1.96·s/√n.
    expected = 2 * 1.96 * population.std(ddof=1) / math.sqrt(1000)
    assert large.high - large.low == pytest.approx(expected, rel=0.1)


def test_coverage_of_the_true_mean_is_near_nominal():
    """Over 200 seeded normal data sets (n = 30), the 95% interval contains the true mean
    about 95% of the time (percentile bootstrap undercovers slightly at this n)."""
    true_mean = 3.0
    hits = 0
    for seed in range(200):
        interval = bootstrap_ci(_normal(1000 + seed, 30, mean=true_mean), resamples=1000, seed=seed)
        hits += interval.low <= true_mean <= interval.high
    assert 0.90 <= hits / 200 <= 0.98


def test_a_single_value_has_no_interval_and_constant_values_a_zero_width_one():
    single = bootstrap_ci([0.25])
    assert single.mean == 0.25 and single.n == 1 and math.isnan(single.low) and math.isnan(single.high)
    constant = bootstrap_ci([0.1] * 9)
    assert constant.low == constant.mean == constant.high == pytest.approx(0.1)


def test_empty_nan_and_bad_shapes_or_settings_are_errors():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        bootstrap_ci(np.ones((3, 2)))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0, 2.0], resamples=0)


def test_infinite_values_are_excluded_and_counted():
    """An exactly pasted background has bg_psnr = +inf: it is left out and reported."""
    finite = _normal(9, 20, mean=30.0)
    interval = bootstrap_ci(np.concatenate([finite, [math.inf, math.inf, -math.inf]]), resamples=1000)
    assert interval.excluded == 3 and interval.n == 20
    reference = bootstrap_ci(finite, resamples=1000)
    assert (interval.mean, interval.low, interval.high) == (reference.mean, reference.low, reference.high)
    with pytest.raises(ValueError, match="infinite"):
        bootstrap_ci([math.inf, math.inf])


# --- paired_comparison ------------------------------------------------------------------------


def test_a_planted_difference_is_detected():
    a = _normal(10, 40, mean=20.0, scale=2.0)
    b = a + 0.5 + _normal(11, 40, scale=0.3)
    result = paired_comparison(a, b)
    assert isinstance(result, Paired)
    assert result.p_value < 0.01 and result.low > 0
    assert result.mean_difference == pytest.approx(b.mean() - a.mean())
    assert result.low <= result.mean_difference <= result.high


def test_no_difference_is_not_reported():
    a = _normal(12, 40, mean=20.0, scale=2.0)
    b = a + _normal(16, 40, scale=0.3)
    result = paired_comparison(a, b)
    assert result.p_value > 0.05 and result.low < 0 < result.high


def test_difference_is_b_minus_a_and_the_test_is_two_sided():
    a = _normal(14, 25)
    b = a + 1.0 + _normal(15, 25, scale=0.5)
    forward, backward = paired_comparison(a, b), paired_comparison(b, a)
    assert forward.mean_difference > 0 and backward.mean_difference == pytest.approx(-forward.mean_difference)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert backward.high < 0


def test_pairing_matters_not_just_the_two_means():
    """The same values, shuffled out of alignment, lose the signal: proof the samples are
    paired by position."""
    a = _normal(16, 30, mean=20.0, scale=3.0)
    b = a + 0.4 + _normal(17, 30, scale=0.2)
    shuffled = np.random.default_rng(18).permutation(b)
    assert paired_comparison(a, b).p_value < 0.001
    assert paired_comparison(a, shuffled).p_value > 0.05


@pytest.mark.parametrize(
    "a, b",
    [
        (_normal(19, 12), _normal(20, 12, mean=0.3)),  # small, no ties: scipy's exact method
        (_normal(21, 80), _normal(22, 80, mean=0.2)),  # large: normal approximation
        (np.array([1, 2, 3, 4, 5, 6, 7, 8, 9.0]), np.array([1, 2, 4, 6, 5, 9, 7, 11, 12.0])),  # zeros, ties
    ],
)
def test_p_value_equals_scipys_wilcoxon(a, b):
    expected = scipy_stats.wilcoxon(b - a, zero_method="wilcox", alternative="two-sided").pvalue
    assert paired_comparison(a, b).p_value == pytest.approx(expected, rel=1e-12)
    # scipy's own two-sample call (x − y) gives the same two-sided p.
    assert paired_comparison(a, b).p_value == pytest.approx(scipy_stats.wilcoxon(a, b).pvalue, rel=1e-12)


def test_identical_runs_give_p_one_and_a_zero_interval():
    a = _normal(23, 15)
    result = paired_comparison(a, a.copy())
    assert result.p_value == 1.0 and result.mean_difference == 0.0 and result.low == result.high == 0.0
    assert result.zero_differences == 15 and result.n == 15


def test_very_small_samples():
    """One pair: no interval, and the smallest attainable two-sided p is 1; two pairs: 0.5."""
    one = paired_comparison([1.0], [2.0])
    assert one.mean_difference == 1.0 and one.p_value == 1.0 and math.isnan(one.low) and math.isnan(one.high)
    assert paired_comparison([1.0, 2.0], [2.0, 4.0]).p_value == pytest.approx(0.5)


def test_infinite_pairs_are_excluded_and_counted_and_misalignment_is_an_error():
    a = np.array([20.0, 21.0, math.inf, 22.0, 23.0])
    b = np.array([21.0, 22.5, 30.0, math.inf, 24.0])
    result = paired_comparison(a, b, resamples=500)
    assert result.excluded == 2 and result.n == 3
    assert result.mean_difference == pytest.approx(np.mean([1.0, 1.5, 1.0]))
    with pytest.raises(ValueError, match="align"):
        paired_comparison([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        paired_comparison([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        paired_comparison([], [])
    with pytest.raises(ValueError, match="infinite"):
        paired_comparison([math.inf], [1.0])
