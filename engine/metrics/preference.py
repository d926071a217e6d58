"""Human pairwise preferences: a Bradley–Terry ranking with intervals, win rates, position
bias, inter-rater agreement and how often a metric agrees with people. Torch-free (numpy,
scipy).

A judgement is one rater's answer for one sample shown as two runs' outputs side by side:
left, right or tie (a skip is not a judgement).

Bradley–Terry (log-strengths θ_i, Σθ = 0 to fix the scale's origin), π_i = exp θ_i:

    P(i beats j) = π_i / (π_i + π_j)

Ties, two ways (`ties=`):
- "davidson" (default; Davidson 1970): a tie parameter ν ≥ 0 fitted with the strengths,
      P(i beats j) = π_i / D,  P(tie) = ν·√(π_i π_j) / D,  D = π_i + π_j + ν·√(π_i π_j);
- "split": a tie counts as half a win for each side in the plain model.
The fit maximises the log-likelihood (L-BFGS on θ and log ν with analytic gradients), plus
an optional Gaussian prior −prior·Σθ²/2 (`prior`, default 0.01, i.e. θ ~ N(0, 10²)): without
one a run that never loses has no finite maximum-likelihood strength; the prior keeps it
finite and large, and moves well-determined strengths by far less than their intervals.

Intervals: percentile bootstrap over *samples* (all judgements of a drawn sample come along,
as often as it is drawn), since judgements of one sample are not independent; each resample is
refitted. Ranks get intervals the same way.

Inter-rater agreement on units judged by several raters (a unit = one sample and one
unordered pair of runs; answers recoded as "first run of the pair", "second", "tie"):
Fleiss' κ (every unit rated by the same number of raters) and Krippendorff's α (nominal; any
number of raters per unit, units with one answer dropped).

Metric agreement: for each unit with a majority (more answers for one side than for the
other and than ties), whether the metric's better value (by its direction) is on the side
people chose; units the metric scores equal are left out. The share and its Wilson interval.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

OUTCOMES = ("left", "right", "tie")
TIE_MODELS = ("davidson", "split")
DEFAULT_PRIOR = 0.01


@dataclass(frozen=True)
class Judgement:
    sample: Hashable  # what was judged: the bootstrap's unit of resampling
    left: Hashable  # the run shown on the left
    right: Hashable
    outcome: str  # "left", "right" or "tie"
    rater: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")
        if self.left == self.right:
            raise ValueError(f"a judgement compares two different runs, got {self.left!r} twice")

    @property
    def winner(self) -> Hashable | None:
        return {"left": self.left, "right": self.right}.get(self.outcome)


@dataclass(frozen=True)
class Strengths:
    """Fitted log-strengths θ (Σθ = 0) per player, in `players` order, and the tie parameter
    ν (Davidson; None when ties were split)."""

    players: tuple[Hashable, ...]
    theta: np.ndarray
    tie_nu: float | None
    ties: str
    judgements: int

    def of(self, player: Hashable) -> float:
        return float(self.theta[self.players.index(player)])

    def win_probability(self, i: Hashable, j: Hashable) -> float:
        """P(i beats j) under the fitted model (Davidson: a decisive win, ties apart)."""
        a, b = math.exp(self.of(i)), math.exp(self.of(j))
        nu = self.tie_nu or 0.0
        return a / (a + b + nu * math.sqrt(a * b))

    def ranking(self) -> list[Hashable]:
        """Players from strongest to weakest."""
        order = np.argsort(-self.theta, kind="stable")
        return [self.players[k] for k in order]


def _tally(judgements: Sequence[Judgement], players: Sequence[Hashable]):
    """Per unordered pair (i < j by index): (wins of i, wins of j, ties)."""
    index = {player: k for k, player in enumerate(players)}
    counts: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for judgement in judgements:
        a, b = index[judgement.left], index[judgement.right]
        first, second = min(a, b), max(a, b)
        row = counts[(first, second)]
        if judgement.outcome == "tie":
            row[2] += 1
        elif (judgement.winner == players[first]):
            row[0] += 1
        else:
            row[1] += 1
    pairs = np.array(sorted(counts), dtype=np.int64).reshape(-1, 2)
    table = np.array([counts[tuple(p)] for p in pairs.tolist()], dtype=np.float64).reshape(-1, 3)
    return pairs, table


def fit_bradley_terry(judgements: Iterable[Judgement], players: Sequence[Hashable] | None = None, *,
                      ties: str = "davidson", prior: float = DEFAULT_PRIOR) -> Strengths:
    """The maximum (penalised) likelihood Bradley–Terry strengths (module docstring)."""
    from scipy.optimize import minimize

    judgements = list(judgements)
    if ties not in TIE_MODELS:
        raise ValueError(f"ties must be one of {', '.join(TIE_MODELS)}, got {ties!r}")
    if prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    if players is None:
        players = sorted({j.left for j in judgements} | {j.right for j in judgements}, key=repr)
    players = tuple(players)
    if len(players) < 2:
        raise ValueError("a ranking needs judgements between at least two runs")
    pairs, table = _tally(judgements, players)
    n = len(players)
    i, j = pairs[:, 0], pairs[:, 1]
    wins_i, wins_j, tie_counts = table[:, 0], table[:, 1], table[:, 2]
    davidson = ties == "davidson" and tie_counts.sum() > 0
    if not davidson:
        wins_i, wins_j = wins_i + tie_counts / 2, wins_j + tie_counts / 2

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = x[:n] - x[:n].mean()
        d = theta[i] - theta[j]
        gradient_d = np.zeros_like(d)
        if davidson:
            log_nu = x[n]
            # log D − (θ_i + θ_j)/2 = log(e^{d/2} + e^{−d/2} + ν), stably
            m = np.maximum(np.maximum(d / 2, -d / 2), log_nu)
            s = np.exp(d / 2 - m) + np.exp(-d / 2 - m) + np.exp(log_nu - m)
            log_rest = m + np.log(s)  # log(e^{d/2} + e^{-d/2} + ν)
            total = wins_i + wins_j + tie_counts
            loglik = (wins_i * (d / 2) + wins_j * (-d / 2) + tie_counts * log_nu - total * log_rest).sum()
            share_i = np.exp(d / 2 - log_rest)
            share_j = np.exp(-d / 2 - log_rest)
            share_tie = np.exp(log_nu - log_rest)
            gradient_d = (wins_i - wins_j) / 2 - total * (share_i - share_j) / 2
            gradient_nu = (tie_counts - total * share_tie).sum()
        else:
            log_p = -np.logaddexp(0.0, -d)  # log σ(d)
            log_q = -np.logaddexp(0.0, d)
            loglik = (wins_i * log_p + wins_j * log_q).sum()
            p = np.exp(log_p)
            gradient_d = wins_i - (wins_i + wins_j) * p
        gradient_theta = np.zeros(n)
        np.add.at(gradient_theta, i, gradient_d)
        np.add.at(gradient_theta, j, -gradient_d)
        loglik -= prior * (theta ** 2).sum() / 2
        gradient_theta -= prior * theta
        gradient_theta -= gradient_theta.mean()  # through the centring
        gradient = np.concatenate([gradient_theta, [gradient_nu] if davidson else []])
        return -loglik, -gradient

    start = np.zeros(n + (1 if davidson else 0))
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-10,
                                                                               "ftol": 1e-15})
    theta = result.x[:n] - result.x[:n].mean()
    nu = float(math.exp(result.x[n])) if davidson else (0.0 if ties == "davidson" else None)
    return Strengths(players, theta, nu, ties, len(judgements))


@dataclass(frozen=True)
class RankedStrengths:
    """Strengths with percentile bootstrap intervals over samples, for θ and for the rank
    (1 = strongest)."""

    fit: Strengths
    low: np.ndarray
    high: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray
    resamples: int
    confidence: float
    samples: int


def bootstrap_strengths(judgements: Iterable[Judgement], players: Sequence[Hashable] | None = None, *,
                        ties: str = "davidson", prior: float = DEFAULT_PRIOR, resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> RankedStrengths:
    """The fit, and percentile intervals of θ and of the ranks from refits on samples drawn
    with replacement (all judgements of a drawn sample, once per draw)."""
    judgements = list(judgements)
    fit = fit_bradley_terry(judgements, players, ties=ties, prior=prior)
    by_sample: dict[Hashable, list[Judgement]] = defaultdict(list)
    for judgement in judgements:
        by_sample[judgement.sample].append(judgement)
    keys = sorted(by_sample, key=repr)
    rng = np.random.default_rng(seed)
    thetas = np.empty((resamples, len(fit.players)))
    for k in range(resamples):
        drawn = rng.integers(0, len(keys), size=len(keys))
        resampled = [j for index in drawn for j in by_sample[keys[index]]]
        thetas[k] = fit_bradley_terry(resampled, fit.players, ties=ties, prior=prior).theta
    ranks = (-thetas).argsort(axis=1, kind="stable").argsort(axis=1, kind="stable") + 1
    alpha = 1 - confidence
    low, high = np.quantile(thetas, [alpha / 2, 1 - alpha / 2], axis=0)
    rank_low, rank_high = np.quantile(ranks, [alpha / 2, 1 - alpha / 2], axis=0)
    return RankedStrengths(fit, low, high, rank_low, rank_high, resamples, confidence, len(keys))


def win_matrix(judgements: Iterable[Judgement], players: Sequence[Hashable]) -> np.ndarray:
    """M[a, b] = share of the comparisons of a with b that a won, a tie counting half; NaN
    where the two were never compared (and on the diagonal)."""
    index = {player: k for k, player in enumerate(players)}
    points = np.zeros((len(players), len(players)))
    games = np.zeros_like(points)
    for judgement in judgements:
        a, b = index[judgement.left], index[judgement.right]
        games[a, b] += 1
        games[b, a] += 1
        if judgement.outcome == "tie":
            points[a, b] += 0.5
            points[b, a] += 0.5
        else:
            winner = a if judgement.outcome == "left" else b
            points[winner, b if winner == a else a] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(games > 0, points / np.where(games > 0, games, 1), np.nan)


@dataclass(frozen=True)
class PositionBias:
    """Decisive judgements won by the left side: count, share with its Wilson interval, and
    the exact two-sided binomial p-value against 1/2 (no bias)."""

    left_wins: int
    decisive: int
    share: float
    low: float
    high: float
    p_value: float


def position_bias(judgements: Iterable[Judgement], confidence: float = 0.95) -> PositionBias:
    from scipy.stats import binomtest

    from engine.metrics.detection import wilson_interval

    outcomes = Counter(j.outcome for j in judgements)
    left, decisive = outcomes["left"], outcomes["left"] + outcomes["right"]
    if decisive == 0:
        return PositionBias(0, 0, math.nan, math.nan, math.nan, 1.0)
    low, high = wilson_interval(left, decisive, confidence)
    return PositionBias(left, decisive, left / decisive, low, high, float(binomtest(left, decisive, 0.5).pvalue))


# --- agreement between raters -------------------------------------------------------------

def _unit_answers(judgements: Iterable[Judgement]) -> dict[tuple, list[str]]:
    """Per unit (sample, unordered pair), each answer recoded relative to the pair's order
    (by repr): "first", "second" or "tie"."""
    units: dict[tuple, list[str]] = defaultdict(list)
    for judgement in judgements:
        first, second = sorted((judgement.left, judgement.right), key=repr)
        if judgement.outcome == "tie":
            answer = "tie"
        else:
            answer = "first" if judgement.winner == first else "second"
        units[(judgement.sample, first, second)].append(answer)
    return units


def fleiss_kappa(counts) -> float:
    """Fleiss' κ of an (items × categories) table of counts, each row summing to the same
    number of raters n ≥ 2:
        P_i = (Σ_c n_ic² − n) / (n(n − 1)),  P̄ = mean P_i,  p_c = Σ_i n_ic / (N n),
        P̄_e = Σ_c p_c²,  κ = (P̄ − P̄_e) / (1 − P̄_e)."""
    table = np.asarray(counts, dtype=np.float64)
    raters = table.sum(axis=1)
    if table.ndim != 2 or table.shape[0] == 0 or not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs a non-empty table whose rows each sum to the same n >= 2 raters")
    n = raters[0]
    agreement = ((table ** 2).sum(axis=1) - n) / (n * (n - 1))
    p = table.sum(axis=0) / table.sum()
    expected = (p ** 2).sum()
    if expected == 1.0:
        return math.nan  # every answer in one category: agreement is undefined
    return float((agreement.mean() - expected) / (1 - expected))


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> float:
    """Krippendorff's α for nominal values; `units` holds each unit's answers (any number;
    units with fewer than 2 are not pairable and are dropped). From the coincidence matrix
    o_ck = Σ_u (number of c-k pairs of answers in u) / (m_u − 1):
        n_c = Σ_k o_ck, n = Σ_c n_c,  D_o = Σ_{c≠k} o_ck,  D_e = Σ_{c≠k} n_c n_k / (n − 1),
        α = 1 − D_o / D_e."""
    coincidences: Counter = Counter()
    for answers in units:
        m = len(answers)
        if m < 2:
            continue
        counts = Counter(answers)
        for c, count_c in counts.items():
            for k, count_k in counts.items():
                pairs = count_c * (count_k - (1 if c == k else 0))
                if pairs:
                    coincidences[(c, k)] += pairs / (m - 1)
    values = sorted({c for c, _ in coincidences}, key=repr)
    totals = {c: sum(coincidences[(c, k)] for k in values) for c in values}
    n = sum(totals.values())
    if n <= 1:
        return math.nan
    observed = sum(coincidences[(c, k)] for c in values for k in values if c != k)
    expected = sum(totals[c] * totals[k] for c in values for k in values if c != k) / (n - 1)
    if expected == 0:
        return math.nan  # one value throughout: no disagreement to expect
    return float(1 - observed / expected)


@dataclass(frozen=True)
class RaterAgreement:
    units: int  # units answered by at least two raters
    krippendorff_alpha: float
    fleiss_kappa: float | None  # None unless every such unit has the same number of answers


def rater_agreement(judgements: Iterable[Judgement]) -> RaterAgreement:
    shared = [answers for answers in _unit_answers(judgements).values() if len(answers) >= 2]
    alpha = krippendorff_alpha_nominal(shared)
    kappa = None
    if shared and len({len(a) for a in shared}) == 1:
        categories = ("first", "second", "tie")
        kappa = fleiss_kappa([[answers.count(c) for c in categories] for answers in shared])
    return RaterAgreement(len(shared), alpha, kappa)


# --- metrics against people ---------------------------------------------------------------

@dataclass(frozen=True)
class MetricAgreement:
    metric: str
    agreeing: int
    units: int  # units with a majority and unequal metric values
    share: float
    low: float
    high: float


def metric_agreement(judgements: Iterable[Judgement], metric: str,
                     value: Callable[[Hashable, Hashable], float | None], higher_is_better: bool,
                     confidence: float = 0.95) -> MetricAgreement:
    """How often the metric prefers the side the majority of raters chose. `value(run,
    sample)` is the metric of that run's output for the sample (None: missing, unit left out)."""
    from engine.metrics.detection import wilson_interval

    agreeing = units = 0
    for (sample, first, second), answers in _unit_answers(judgements).items():
        counts = Counter(answers)
        majority, top = counts.most_common(1)[0]
        if majority == "tie" or list(counts.values()).count(top) > 1:
            continue  # no majority for one side
        a, b = value(first, sample), value(second, sample)
        if a is None or b is None or a == b or not (math.isfinite(a) and math.isfinite(b)):
            continue
        metric_first = (a > b) == higher_is_better
        units += 1
        agreeing += metric_first == (majority == "first")
    if units == 0:
        return MetricAgreement(metric, 0, 0, math.nan, math.nan, math.nan)
    low, high = wilson_interval(agreeing, units, confidence)
    return MetricAgreement(metric, agreeing, units, agreeing / units, low, high)


# --- what to show a rater -------------------------------------------------------------------

@dataclass(frozen=True)
class Trial:
    """One screen of a blind judging session: a sample and two runs' outputs, in the order
    shown. Only the faces know the runs; a rater sees the images alone."""

    sample: Hashable
    left: Hashable
    right: Hashable


def schedule_trials(runs: Sequence[Hashable], samples: Sequence[Hashable], *, seed: int = 0,
                    done: Iterable[Judgement] = ()) -> list[Trial]:
    """Every unordered pair of `runs` on every sample once, balanced and blind:
    - sides: for each pair, the samples are split so that each run is on the left in half of
      them (within one when the count is odd), the split drawn at random;
    - order: shuffled, so neither the pair nor the sample sequence gives runs away;
    - resumable: units (sample, unordered pair) in `done` are left out, the rest keep the
      order and sides the same seed gives (a resumed session shows what it would have shown).
    Deterministic for the same runs, samples and seed."""
    runs, samples = list(runs), list(samples)
    if len(set(runs)) != len(runs) or len(runs) < 2:
        raise ValueError("a judging session needs at least two different runs")
    rng = np.random.default_rng(seed)
    trials = []
    for a in range(len(runs)):
        for b in range(a + 1, len(runs)):
            first_left = rng.permutation(len(samples)) < (len(samples) + rng.integers(0, 2)) // 2
            for sample, flip in zip(samples, first_left):
                left, right = (runs[a], runs[b]) if flip else (runs[b], runs[a])
                trials.append(Trial(sample, left, right))
    order = rng.permutation(len(trials))
    judged = {(j.sample, frozenset((j.left, j.right))) for j in done}
    return [trials[k] for k in order if (trials[k].sample, frozenset((trials[k].left, trials[k].right))) not in judged]


# --- simulated raters (tests, demos) ------------------------------------------------------

def simulate_judgements(utility: Callable[[Hashable, Hashable], float], runs: Sequence[Hashable],
                        samples: Sequence[Hashable], *, raters: Sequence[str] = ("sim",), noise: float = 0.1,
                        tie_margin: float = 0.0, seed: int = 0) -> list[Judgement]:
    """Every pair of `runs` on every sample, judged by each rater, in a random left/right
    order: the rater sees utility(run, sample) plus Gaussian noise (sd `noise`) on each side
    and picks the higher, or a tie when they differ by at most `tie_margin`. A simulated rater
    preferring the better value of a metric takes utility = ±metric (by its direction)."""
    rng = np.random.default_rng(seed)
    made = []
    for sample in samples:
        for a_index in range(len(runs)):
            for b_index in range(a_index + 1, len(runs)):
                for rater in raters:
                    left, right = (runs[a_index], runs[b_index]) if rng.random() < 0.5 else (runs[b_index], runs[a_index])
                    outcome = simulated_answer(utility(left, sample), utility(right, sample), rng, noise=noise,
                                               tie_margin=tie_margin)
                    made.append(Judgement(sample, left, right, outcome, rater))
    return made


def simulated_answer(left: float, right: float, rng: np.random.Generator, *, noise: float,
                     tie_margin: float = 0.0) -> str:
    """A simulated rater's answer for a pair with these utilities: each side seen with
    Gaussian noise (sd `noise`), the higher chosen, a tie within `tie_margin`."""
    seen_left = left + noise * rng.standard_normal()
    seen_right = right + noise * rng.standard_normal()
    if abs(seen_left - seen_right) <= tie_margin:
        return "tie"
    return "left" if seen_left > seen_right else "right"


def simulate_bradley_terry(theta: Mapping[Hashable, float], samples: Sequence[Hashable], *, per_pair: int = 1,
                           tie_nu: float = 0.0, seed: int = 0) -> list[Judgement]:
    """Judgements drawn from the (Davidson) Bradley–Terry model with the given log-strengths:
    for every sample and pair, `per_pair` judgements with random sides."""
    rng = np.random.default_rng(seed)
    players = list(theta)
    made = []
    for sample in samples:
        for a_index in range(len(players)):
            for b_index in range(a_index + 1, len(players)):
                a, b = players[a_index], players[b_index]
                pa, pb = math.exp(theta[a]), math.exp(theta[b])
                tie_weight = tie_nu * math.sqrt(pa * pb)
                total = pa + pb + tie_weight
                for _ in range(per_pair):
                    draw = rng.random() * total
                    left, right = (a, b) if rng.random() < 0.5 else (b, a)
                    if draw < pa:
                        winner = a
                    elif draw < pa + pb:
                        winner = b
                    else:
                        winner = None
                    outcome = "tie" if winner is None else ("left" if winner == left else "right")
                    made.append(Judgement(sample, left, right, outcome))
    return made


__all__ = ["Judgement", "MetricAgreement", "Trial", "schedule_trials", "PositionBias", "RankedStrengths", "RaterAgreement", "Strengths",
           "bootstrap_strengths", "fit_bradley_terry", "fleiss_kappa", "krippendorff_alpha_nominal",
           "metric_agreement", "position_bias", "rater_agreement", "simulate_bradley_terry", "simulate_judgements",
           "win_matrix"]
