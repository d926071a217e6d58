"""Uncertainty for per-sample metrics: bootstrap confidence intervals and paired comparisons.

Percentile bootstrap of the mean (Efron), for n values v_1..v_n and confidence 1 − α:

    mean         = (1/n) Σ v_i
    resample k   = n indices drawn uniformly with replacement (numpy Generator seeded with `seed`)
    mean*_k      = mean of the values at those indices,  k = 1..resamples
    [low, high]  = the α/2 and 1 − α/2 quantiles of mean*_1..mean*_B (numpy's default linear
                   interpolation between order statistics)

The percentile interval is known to undercover for small n (roughly n < 20); read it as a rough
guide there. With n = 1 there is no spread to resample, so low and high are NaN (not a
zero-width interval that would look like certainty). Identical values give low = high = mean.

Non-finite values:
- NaN raises ValueError: it is a missing or broken measurement, and dropping it here would hide
  that (and, for paired data, could misalign samples). Drop it explicitly, by sample id.
- ±inf (e.g. bg_psnr when the background was pasted back exactly) is excluded and counted in
  `excluded`; mean, low, high and n describe the finite values only. A caller showing the
  interval must show `excluded` too (e.g. "n = 48, 2 infinite excluded"), since excluding
  +inf PSNRs lowers the mean. bg_mse is always finite and is the safer metric to compare.
  When no finite value is left, ValueError.

Paired comparison of two runs on the same samples: `a[i]` and `b[i]` must be the same sample
(the caller aligns by sample id, same order, same length). The difference is d_i = b_i − a_i,
so a positive mean difference means b's metric is larger, which is better or worse according
to the metric's direction (METRICS[name].higher_is_better). Pairs where a or b is ±inf are
excluded and counted; NaN raises. The interval is the percentile bootstrap above applied to the
d_i (pairs are resampled together). The p-value is the two-sided Wilcoxon signed-rank test, computed here (not by
scipy, whose choice between exact and approximate methods and whose treatment of zeros changed
across versions):
- zero differences are dropped first (Wilcoxon's original treatment); n' = non-zero count;
- |d_i| are ranked 1..n' with tied values sharing their mean rank; T+ = Σ ranks of d_i > 0;
- under H0 each sign is + or − with probability 1/2 independently, so T+ is the sum of a random
  subset of the ranks, symmetric about μ = Σ ranks / 2;
- n' ≤ EXACT_MAX_N (50): the exact null distribution of T+ given these ranks (ties included),
  by dynamic programming over doubled ranks (whole numbers), and
  p = P(|T+ − μ| ≥ |t − μ|), which equals min(1, 2·min(P(T+ ≤ t), P(T+ ≥ t)));
- n' > EXACT_MAX_N: the normal approximation z = (t − μ)/σ with σ² = Σ rank² / 4 (the variance
  given the ranks, so the tie correction is built in), no continuity correction, p = 2Φ(−|z|).
When every difference is 0 the runs do not differ on these samples and p = 1.0. With few
non-zero differences the smallest attainable two-sided p is 2 · 2^−n' (1.0 for one pair, 0.5
for two, 0.0625 for five): a large p there means "too few samples", not "no difference". Such a
floor is exactly what scipy's `method="auto"` missed when zeros were present: it chose the
exact distribution on the length including the zeros and reported 0.0253 for 5 ones among 19
differences, where the exact test on the 5 non-zero ones gives 0.0625.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Index matrices are drawn in blocks of about this many entries, to bound memory for large n.
_BLOCK_ENTRIES = 2_000_000
EXACT_MAX_N = 50  # Wilcoxon: the exact null distribution up to this many non-zero differences


@dataclass(frozen=True)
class Interval:
    """Mean of the finite values and its bootstrap interval; `excluded` counts ±inf values."""

    mean: float
    low: float
    high: float
    n: int
    excluded: int = 0
    confidence: float = 0.95


@dataclass(frozen=True)
class Paired:
    """Mean of d = b − a over the n finite pairs, its bootstrap interval, the Wilcoxon p-value,
    and the means of a and b over those same pairs (so mean_b − mean_a = mean_difference).

    `excluded` counts pairs with an infinite value, `zero_differences` the pairs with d = 0
    (ignored by the Wilcoxon test, kept in the mean and the interval)."""

    mean_a: float
    mean_b: float
    mean_difference: float
    low: float
    high: float
    p_value: float
    n: int
    excluded: int = 0
    zero_differences: int = 0
    confidence: float = 0.95


def _as_values(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: no interval can be computed")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN; drop missing measurements explicitly (by sample id)")
    return array


def _check_settings(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")


def _percentile_bootstrap(
    finite: np.ndarray, mean: float, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    n = finite.size
    if n == 1:
        return math.nan, math.nan
    # Every resample of identical values has the same mean; floating-point summation could
    # otherwise put the bounds an ulp away from it.
    if np.all(finite == finite[0]):
        return mean, mean
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    block = max(1, _BLOCK_ENTRIES // n)
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        means[start:stop] = finite[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(values, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of `values` (module docstring)."""
    _check_settings(confidence, resamples)
    array = _as_values(values, "values")
    finite = array[np.isfinite(array)]
    excluded = array.size - finite.size
    if finite.size == 0:
        raise ValueError(f"all {array.size} values are infinite: the mean is not finite (compare an MSE instead)")
    mean = float(finite.mean())
    low, high = _percentile_bootstrap(finite, mean, confidence, resamples, seed)
    return Interval(mean, low, high, int(finite.size), int(excluded), confidence)


def wilcoxon_p(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value of finite differences (module docstring)."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 1.0
    ranks = _mean_ranks(np.abs(d))
    t_plus = float(ranks[d > 0].sum())
    mu = float(ranks.sum()) / 2
    if n <= EXACT_MAX_N:
        doubled = np.rint(ranks * 2).astype(np.int64)  # mean ranks are multiples of 1/2
        total = int(doubled.sum())
        # probability[k] = P(2·T+ = k): start from the empty sum, add each rank with probability 1/2
        probability = np.zeros(total + 1)
        probability[0] = 1.0
        for rank in doubled:
            shifted = np.zeros_like(probability)
            shifted[rank:] = probability[:total + 1 - rank]
            probability = 0.5 * (probability + shifted)
        distance = np.abs(np.arange(total + 1) - total / 2)
        observed = abs(2 * t_plus - total / 2)
        # A tolerance far below the 1/2 granularity of doubled ranks, for float sums of ranks.
        return float(min(1.0, probability[distance >= observed - 1e-9].sum()))
    sigma = math.sqrt(float((ranks**2).sum()) / 4)
    z = (t_plus - mu) / sigma
    return float(min(1.0, math.erfc(abs(z) / math.sqrt(2))))


def _mean_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(values.size)
    start = 0
    while start < values.size:
        stop = start
        while stop + 1 < values.size and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start:stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def paired_comparison(a, b, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Paired:
    """Compare b against a on the same samples: d = b − a (module docstring)."""
    _check_settings(confidence, resamples)
    first = _as_values(a, "a")
    second = _as_values(b, "b")
    if first.shape != second.shape:
        raise ValueError(f"a has {first.size} values and b has {second.size}: align them by sample id first")
    keep = np.isfinite(first) & np.isfinite(second)
    if not keep.any():
        raise ValueError(f"every one of the {first.size} pairs has an infinite value: nothing to compare")
    differences = second[keep] - first[keep]
    mean = float(differences.mean())
    low, high = _percentile_bootstrap(differences, mean, confidence, resamples, seed)
    return Paired(
        mean_a=float(first[keep].mean()),
        mean_b=float(second[keep].mean()),
        mean_difference=mean,
        low=low,
        high=high,
        p_value=wilcoxon_p(differences),
        n=int(differences.size),
        excluded=int(first.size - differences.size),
        zero_differences=int(np.count_nonzero(differences == 0)),
        confidence=confidence,
    )


__all__ = ["EXACT_MAX_N", "Interval", "Paired", "bootstrap_ci", "paired_comparison", "wilcoxon_p"]
