"""How values are shown and compared, for both faces (CLI tables and TUI widgets): number
formats, parameters that differ from defaults, best values per metric direction, progress
lines, the paired comparison of two runs. Torch-free and free of Rich and Textual."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from engine.metrics.catalogue import higher_is_better, key_metrics, metric_info

def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}"


def short(value: float) -> str:
    return ("inf" if value > 0 else "-inf") if math.isinf(value) else f"{value:.3g}"


def format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "-"


def changed_params(technique: str, params: dict[str, Any]) -> dict[str, Any]:
    """Only parameters that differ from the technique's defaults: tables stay readable."""
    from engine.params import ParamError
    from engine.techniques import get_technique

    try:
        defaults = get_technique(technique).full_schema.defaults()
    except ParamError:
        return dict(params)
    return {k: v for k, v in params.items() if defaults.get(k, object()) != v}


def format_summary(summary, value: float | None = None) -> str:
    """`mean [low–high]` (bootstrap interval), `value ±std` (set-level), or "missing"."""
    if summary is None or summary.value is None:
        return "missing" if summary is not None else format_number(value)
    text = format_number(summary.value)
    if summary.std is not None:
        return f"{text} ±{short(summary.std)}"
    if summary.ci_low is not None and summary.ci_high is not None:
        return f"{text} [{short(summary.ci_low)}–{short(summary.ci_high)}]"
    return text


def best_values(rows: Sequence[Any], names: Iterable[str]) -> dict[str, float]:
    """Per metric, the best value among rows (`row.metrics`), knowing its direction."""
    best = {}
    for name in names:
        direction = higher_is_better(name)
        values = [row.metrics[name] for row in rows if name in row.metrics and not math.isnan(row.metrics[name])]
        if values and direction is not None:
            best[name] = max(values) if direction else min(values)
    return best


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def format_progress(progress) -> str:
    """`sample 3/6 step 12/50 4.1 it/s ETA 1m05s` for a running run; "-" without progress."""
    if progress is None:
        return "-"
    if progress.phase != "generating":
        return progress.phase
    text = f"sample {min(progress.samples_done + 1, progress.sample_count)}/{progress.sample_count} " \
           f"step {progress.step}/{progress.steps}"
    if progress.steps_per_second:
        text += f" {progress.steps_per_second:.1f} it/s"
    if progress.eta_seconds is not None:
        text += f" ETA {format_duration(progress.eta_seconds)}"
    return text


def compare_runs(store, run_a: int, run_b: int, metrics: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Paired comparison on the samples both runs finished: per metric the means, the mean
    difference B − A with its 95% bootstrap interval, and the Wilcoxon signed-rank p-value.
    Means, difference and n cover the pairs actually compared (both values finite);
    `excluded` counts the pairs left out for an infinite value. Raises KeyError naming a
    requested metric not in both runs, UnknownMetric for a name not in the catalogue."""
    from engine.metrics.stats import paired_comparison

    a_values, b_values = store.sample_metric_values(run_a), store.sample_metric_values(run_b)
    for name in metrics:
        metric_info(name)
    names = list(metrics) or key_metrics(set(a_values) & set(b_values))
    results = []
    for name in names:
        if name not in a_values or name not in b_values:
            raise KeyError(f"metric {name!r} is not in both runs")
        common = sorted(set(a_values[name]) & set(b_values[name]))
        entry: dict[str, Any] = {"metric": name, "n": len(common), "higher_is_better": higher_is_better(name)}
        if len(common) < 2:
            entry["note"] = "fewer than 2 common samples"
        else:
            a = [a_values[name][s] for s in common]
            b = [b_values[name][s] for s in common]
            try:
                paired = paired_comparison(a, b)
            except ValueError as error:
                entry["note"] = str(error)
            else:
                entry.update(n=paired.n, mean_a=paired.mean_a, mean_b=paired.mean_b,
                             difference=paired.mean_difference, ci_low=paired.low, ci_high=paired.high,
                             p_value=paired.p_value, excluded=paired.excluded)
        results.append(entry)
    return results


def verdict(entry: dict[str, Any], run_b: int) -> str:
    """In words: whether run B is better, worse, or not clearly different from A. "Better" or
    "worse" needs both the Wilcoxon p below 0.05 and the 95% bootstrap interval of B − A
    excluding 0; either alone (they can disagree on small or skewed samples) is "no clear
    difference". Better or worse follows the metric's direction in the catalogue."""
    if "difference" not in entry:
        return entry.get("note", "")
    if entry["p_value"] < 0.05 and not (entry["ci_low"] <= 0 <= entry["ci_high"]):
        better = (entry["difference"] > 0) == bool(entry["higher_is_better"])
        return f"run {run_b} {'better' if better else 'worse'}"
    return "no clear difference"
