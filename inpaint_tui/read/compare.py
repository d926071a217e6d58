"""The paired comparison of two runs on their common samples, and its verdict in words
(engine.metrics.stats has the statistics). Torch-free and free of Rich and Textual."""

from __future__ import annotations

from typing import Any, Sequence

from engine.metrics.catalogue import higher_is_better, key_metrics, metric_info


def compare_runs(store, run_a: int, run_b: int, metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Paired comparison on the samples both runs finished: per metric the means, the mean
    difference B − A with its 95% bootstrap interval, and the Wilcoxon signed-rank p-value.
    Means, difference and n cover the pairs actually compared (both values finite);
    `excluded` counts the pairs left out for an infinite value. Raises KeyError naming a
    requested metric not in both runs, UnknownMetric for a name not in the catalogue, and
    NotFound naming a run that does not exist (an empty comparison would look like one)."""
    store.run(run_a), store.run(run_b)
    a_values, b_values = store.sample_metric_values(run_a), store.sample_metric_values(run_b)
    for name in metrics:
        metric_info(name)
    names = list(metrics) or key_metrics(set(a_values) & set(b_values))
    results = []
    for name in names:
        if name not in a_values or name not in b_values:
            raise KeyError(f"metric {name!r} is not in both runs")
        common = sorted(set(a_values[name]) & set(b_values[name]))
        results.append(compare_values(name, [a_values[name][s] for s in common], [b_values[name][s] for s in common]))
    return results


def compare_values(name: str, a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """One metric's comparison entry from values aligned by sample (a[i], b[i] the same
    sample), as `compare_runs` lists them."""
    from engine.metrics.stats import paired_comparison

    entry: dict[str, Any] = {"metric": name, "n": len(a), "higher_is_better": higher_is_better(name)}
    if len(a) < 2:
        entry["note"] = "fewer than 2 common samples"
        return entry
    try:
        paired = paired_comparison(a, b)
    except ValueError as error:
        entry["note"] = str(error)
        return entry
    entry.update(n=paired.n, mean_a=paired.mean_a, mean_b=paired.mean_b, difference=paired.mean_difference,
                 ci_low=paired.low, ci_high=paired.high, p_value=paired.p_value, excluded=paired.excluded)
    return entry


VERDICT_LEVEL = 0.05
# The rule `verdict` applies, in one line for under a table (README: "compare").
VERDICT_RULE = (f"verdict: better/worse (in the metric's direction) only when Wilcoxon p < {VERDICT_LEVEL:g} and "
                "the 95% interval of B − A excludes 0; each metric on its own, no multiple-comparison correction")


def verdict(entry: dict[str, Any], run_b: int) -> str:
    """In words: whether run B is better, worse, or not clearly different from A. "Better" or
    "worse" needs both the Wilcoxon p below 0.05 and the 95% bootstrap interval of B − A
    excluding 0; either alone (they can disagree on small or skewed samples) is "no clear
    difference". Better or worse follows the metric's direction in the catalogue."""
    if "difference" not in entry:
        return entry.get("note", "")
    if entry["p_value"] < VERDICT_LEVEL and not (entry["ci_low"] <= 0 <= entry["ci_high"]):
        better = (entry["difference"] > 0) == bool(entry["higher_is_better"])
        return f"run {run_b} {'better' if better else 'worse'}"
    return "no clear difference"
