"""engine.metrics.preference against independent computations: the Bradley–Terry fit against
Hunter's MM algorithm and a likelihood written out and minimised separately, recovery of
known strengths, the bootstrap's unit (samples, not judgements), and the agreement
statistics against published worked examples."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from engine.metrics.preference import (
    Judgement,
    bootstrap_strengths,
    fit_bradley_terry,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    metric_agreement,
    position_bias,
    rater_agreement,
    simulate_bradley_terry,
    simulate_judgements,
    win_matrix,
)

TRUE = {"a": 1.0, "b": 0.4, "c": 0.0, "d": -0.5, "e": -0.9}


def _mm_bradley_terry(judgements, players, iterations=20_000):
    """Hunter (2004)'s MM algorithm for the plain model, ties split in halves, written apart
    from the library: π_i ← W_i / Σ_j n_ij / (π_i + π_j), then normalised."""
    index = {p: k for k, p in enumerate(players)}
    n = len(players)
    wins = np.zeros(n)
    games = np.zeros((n, n))
    for j in judgements:
        a, b = index[j.left], index[j.right]
        games[a, b] += 1
        games[b, a] += 1
        if j.outcome == "tie":
            wins[a] += 0.5
            wins[b] += 0.5
        else:
            wins[a if j.outcome == "left" else b] += 1
    pi = np.ones(n)
    for _ in range(iterations):
        denominator = (games / (pi[:, None] + pi[None, :])).sum(axis=1)
        pi = wins / denominator
        pi /= np.exp(np.log(pi).mean())
    return np.log(pi)


def _davidson_negative_loglik(judgements, players):
    """The Davidson likelihood as a product of outcome probabilities, written directly."""
    index = {p: k for k, p in enumerate(players)}

    def nll(x):
        theta = np.append(x[: len(players) - 1], -x[: len(players) - 1].sum())
        nu = math.exp(x[-1])
        total = 0.0
        for j in judgements:
            pl, pr = math.exp(theta[index[j.left]]), math.exp(theta[index[j.right]])
            denominator = pl + pr + nu * math.sqrt(pl * pr)
            probability = {"left": pl, "right": pr, "tie": nu * math.sqrt(pl * pr)}[j.outcome] / denominator
            total -= math.log(probability)
        return total

    return nll


@pytest.fixture(scope="module")
def simulated():
    return simulate_bradley_terry(TRUE, [f"s{k}" for k in range(40)], per_pair=2, tie_nu=0.4, seed=1)


def test_the_split_tie_fit_equals_hunters_mm_algorithm(simulated):
    players = list(TRUE)
    fit = fit_bradley_terry(simulated, players, ties="split", prior=0.0)
    np.testing.assert_allclose(fit.theta, _mm_bradley_terry(simulated, players), atol=1e-6)
    assert fit.tie_nu is None


def test_the_davidson_fit_equals_the_likelihood_minimised_separately(simulated):
    players = list(TRUE)
    fit = fit_bradley_terry(simulated, players, ties="davidson", prior=0.0)
    start = np.zeros(len(players))
    reference = minimize(_davidson_negative_loglik(simulated, players), start, method="Nelder-Mead",
                         options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 40_000, "maxfev": 40_000})
    theta = np.append(reference.x[:-1], -reference.x[:-1].sum())
    np.testing.assert_allclose(fit.theta, theta, atol=2e-4)
    assert fit.tie_nu == pytest.approx(math.exp(reference.x[-1]), rel=2e-4)


def test_known_strengths_and_tie_rate_are_recovered_in_order():
    judgements = simulate_bradley_terry(TRUE, [f"s{k}" for k in range(300)], per_pair=1, tie_nu=0.5, seed=7)
    ranked = bootstrap_strengths(judgements, list(TRUE), resamples=200, seed=3)
    assert ranked.fit.ranking() == list(TRUE)
    truth = np.array(list(TRUE.values())) - np.mean(list(TRUE.values()))
    # Each estimate within 3 bootstrap standard errors (the 95% interval's half-width / 1.96)
    # of the truth: five 95% intervals all covering would fail about one seed in four.
    standard_error = (ranked.high - ranked.low) / (2 * 1.96)
    assert np.all(np.abs(ranked.fit.theta - truth) <= 3 * standard_error), (ranked.fit.theta, truth, standard_error)
    assert np.all(standard_error < 0.15)
    assert ranked.fit.tie_nu == pytest.approx(0.5, abs=0.12)
    assert ranked.rank_high[0] <= 2 and ranked.rank_low[-1] >= 4  # the ends are told apart
    assert ranked.samples == 300


def test_the_bootstrap_resamples_samples_not_judgements(simulated):
    """Each sample judged ten times over (the same answers): judgement-level resampling would
    narrow the intervals about √10-fold; drawing whole samples keeps them."""
    once = bootstrap_strengths(simulated, list(TRUE), ties="split", prior=0.0, resamples=300, seed=5)
    tenfold = bootstrap_strengths([j for j in simulated for _ in range(10)], list(TRUE), ties="split", prior=0.0,
                                  resamples=300, seed=5)
    np.testing.assert_allclose(tenfold.high - tenfold.low, once.high - once.low, rtol=1e-6)
    np.testing.assert_allclose(tenfold.fit.theta, once.fit.theta, atol=1e-6)


def test_a_run_that_never_loses_stays_finite_under_the_prior():
    judgements = [Judgement(f"s{k}", "best", other, "left") for k in range(5) for other in ("x", "y")]
    judgements += [Judgement(f"s{k}", "x", "y", "left" if k % 2 else "right") for k in range(5)]
    fit = fit_bradley_terry(judgements)
    assert fit.ranking()[0] == "best" and np.all(np.isfinite(fit.theta)) and fit.of("best") > 2


def test_win_matrix_counts_ties_as_half():
    judgements = [Judgement("s1", "a", "b", "left"), Judgement("s2", "b", "a", "tie"), Judgement("s3", "b", "a", "left"),
                  Judgement("s1", "a", "c", "right")]
    matrix = win_matrix(judgements, ["a", "b", "c"])
    assert matrix[0, 1] == pytest.approx(0.5) and matrix[1, 0] == pytest.approx(0.5)  # (1 + 0.5) / 3 each
    assert matrix[0, 2] == 0.0 and matrix[2, 0] == 1.0
    assert math.isnan(matrix[1, 2]) and math.isnan(matrix[0, 0])


def test_position_bias_against_the_binomial_by_hand():
    judgements = [Judgement(f"s{k}", "a", "b", "left") for k in range(9)] + [Judgement("s9", "a", "b", "right"),
                                                                             Judgement("s10", "a", "b", "tie")]
    bias = position_bias(judgements)
    assert (bias.left_wins, bias.decisive) == (9, 10) and bias.share == 0.9
    assert bias.p_value == pytest.approx(2 * 11 / 1024)  # P(X >= 9) + P(X <= 1), X ~ Bin(10, 1/2)
    assert bias.low < 0.9 < bias.high


def test_fleiss_kappa_on_the_published_worked_example():
    """Fleiss (1971) as worked in Wikipedia's "Fleiss' kappa": 10 subjects, 14 raters, 5
    categories: P̄ = 0.378, P̄_e = 0.213, κ = 0.210."""
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1], [7, 7, 0, 0, 0],
             [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)
    assert fleiss_kappa([[3, 0], [0, 3]]) == 1.0


def test_krippendorff_alpha_on_the_published_worked_example():
    """Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12
    units with missing values, nominal α = 0.743 (unit 12 has one value and is dropped)."""
    units = [[1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4], [4, 4, 4, 4],
             [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3]]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha_nominal([["x", "x"], ["y", "y"]]) == 1.0


def test_rater_agreement_on_units_judged_twice():
    """Two raters, four units (sample, pair), answers recoded to the pair's order; the left
    and right sides swapped between raters must not look like disagreement."""
    judgements = [
        Judgement("s1", "a", "b", "left", "r1"), Judgement("s1", "b", "a", "right", "r2"),  # both: a
        Judgement("s2", "a", "b", "right", "r1"), Judgement("s2", "a", "b", "right", "r2"),  # both: b
        Judgement("s3", "a", "b", "tie", "r1"), Judgement("s3", "b", "a", "tie", "r2"),
        Judgement("s4", "a", "b", "left", "r1"), Judgement("s4", "a", "b", "right", "r2"),  # a vs b
    ]
    agreement = rater_agreement(judgements)
    assert agreement.units == 4
    # By hand: 3 of 4 units agree (P̄ = 0.75); p = (3/8, 3/8, 2/8): P̄_e = 0.34375, κ = 0.619.
    assert agreement.fleiss_kappa == pytest.approx((0.75 - 0.34375) / (1 - 0.34375))
    # α: o(first,first)=2, o(second,second)=2, o(tie,tie)=2, o(first,second)=o(second,first)=1;
    # n = 8, n_c = (3, 3, 2): D_o = 2, D_e = (2·(9 + 6 + 6)) / 7 = 6, α = 1 − 2/6.
    assert agreement.krippendorff_alpha == pytest.approx(1 - 2 / 6)


def test_metric_agreement_with_simulated_raters_who_follow_the_metric():
    runs, samples = ["r1", "r2", "r3"], [f"s{k}" for k in range(20)]
    rng = np.random.default_rng(0)
    mse = {(run, sample): float(rng.random()) for run in runs for sample in samples}

    def value(run, sample):
        return mse[(run, sample)]

    following = simulate_judgements(lambda run, sample: -value(run, sample), runs, samples,
                                    raters=("r", "s", "t"), noise=0.0)
    agree = metric_agreement(following, "bg_mse", value, higher_is_better=False)
    assert (agree.share, agree.units) == (1.0, 60)
    contrary = metric_agreement(following, "bg_mse", lambda run, sample: -value(run, sample), higher_is_better=False)
    assert contrary.share == 0.0
    noisy = simulate_judgements(lambda run, sample: -value(run, sample), runs, samples, raters=("r", "s", "t"),
                                noise=0.3, seed=2)
    partial = metric_agreement(noisy, "bg_mse", value, higher_is_better=False)
    assert 0.5 < partial.share < 1.0 and partial.low < partial.share < partial.high


def test_simulated_raters_following_a_metric_give_the_metrics_ranking():
    quality = {"good": 0.9, "fair": 0.5, "poor": 0.1}
    judgements = simulate_judgements(lambda run, sample: quality[run], list(quality), [f"s{k}" for k in range(30)],
                                     noise=0.3, tie_margin=0.05, seed=4)
    assert any(j.outcome == "tie" for j in judgements)
    assert {j.left for j in judgements if j.left == "good"} and {j.right for j in judgements if j.right == "good"}
    assert fit_bradley_terry(judgements).ranking() == ["good", "fair", "poor"]


def test_bad_judgements_are_refused():
    with pytest.raises(ValueError, match="outcome must be one of left, right, tie"):
        Judgement("s", "a", "b", "skip")
    with pytest.raises(ValueError, match="two different runs"):
        Judgement("s", "a", "a", "left")
    with pytest.raises(ValueError, match="ties must be one of davidson, split"):
        fit_bradley_terry([Judgement("s", "a", "b", "left")], ties="rao")


def test_trials_cover_every_pair_on_every_sample_with_balanced_sides():
    from collections import Counter

    from engine.metrics.preference import schedule_trials

    runs, samples = [3, 5, 7, 9], [f"s{k}" for k in range(9)]
    trials = schedule_trials(runs, samples, seed=1)
    units = Counter((t.sample, frozenset((t.left, t.right))) for t in trials)
    assert len(trials) == 6 * 9 and set(units.values()) == {1}  # each pair on each sample once
    for a in runs:
        for b in runs:
            if a < b:
                left_a = sum(1 for t in trials if {t.left, t.right} == {a, b} and t.left == a)
                assert left_a in (4, 5), (a, b, left_a)  # 9 samples: 4 or 5 on each side
    lefts = Counter(t.left for t in trials)
    assert max(lefts.values()) - min(lefts.values()) <= 3
    assert schedule_trials(runs, samples, seed=1) == trials
    assert schedule_trials(runs, samples, seed=2) != trials
    # Not grouped by pair or by sample: the first trials mix both.
    assert len({frozenset((t.left, t.right)) for t in trials[:6]}) > 1 and len({t.sample for t in trials[:6]}) > 1


def test_a_resumed_schedule_leaves_out_what_was_judged_and_keeps_the_rest():
    from engine.metrics.preference import schedule_trials

    runs, samples = ["a", "b", "c"], ["x", "y", "z"]
    trials = schedule_trials(runs, samples, seed=4)
    done = [Judgement(t.sample, t.right, t.left, "tie") for t in trials[:4]]  # sides need not match
    resumed = schedule_trials(runs, samples, seed=4, done=done)
    assert resumed == trials[4:]
    with pytest.raises(ValueError, match="at least two different runs"):
        schedule_trials(["a", "a"], samples)
