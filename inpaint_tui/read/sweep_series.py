"""A sweep's runs as plot series: a metric against one swept parameter, one line per
technique (and per value of any other swept key but the seed), the mean over seeds at each
point, with an error bar where one is known. Shared by the TUI's sweep plot and the
report's PNG plots."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inpaint_tui.read.pooling import has_value, pool
from inpaint_tui.read.present import format_number
from inpaint_tui.store import MetricSummary, RunInfo, SweepInfo

if TYPE_CHECKING:
    from inpaint_tui.store import Store

NOT_AXES = ("technique", "seed")


@dataclass(frozen=True)
class SweepData:
    sweeps: list[SweepInfo]
    sweep: SweepInfo | None
    runs: dict[int, RunInfo] = field(default_factory=dict)
    values: dict[int, dict[str, float]] = field(default_factory=dict)
    summaries: dict[int, dict[str, MetricSummary]] = field(default_factory=dict)  # for error bars


@dataclass(frozen=True)
class Series:
    label: str
    xs: list[Any]  # parameter values, in axis order
    ys: list[float]  # the metric: mean over the runs (seeds) at each x
    # The bar at each x, (low, high) or None: one run there, its 95% bootstrap interval over
    # samples; several (seeds), the lowest and highest of their values (read.pooling).
    bars: list[tuple[float, float] | None] = field(default_factory=list)
    pooled: bool = False  # some x has several runs (seeds)


def load_sweep_data(store: "Store", sweep: SweepInfo, sweeps: list[SweepInfo] | None = None) -> SweepData:
    """A sweep's runs and per-run metrics (values and intervals) read from the store."""
    values, summaries = store.run_metrics(sweep.run_ids)
    return SweepData(sweeps=sweeps if sweeps is not None else [sweep], sweep=sweep,
                     runs={run.id: run for run in store.runs(sweep.run_ids)}, values=values, summaries=summaries)


def sweep_axes(sweep: SweepInfo) -> list[str]:
    """The swept keys a plot can use as x (every key but technique and seed)."""
    keys = list(dict.fromkeys(key for point in sweep.points for key in point))
    return [key for key in keys if key not in NOT_AXES]


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def axis_values(values: list[Any]) -> tuple[list[Any], bool]:
    """The distinct x values in axis order, and whether the axis is numeric (else they are
    categories shown at positions 1..n with their labels: bools, choices, inf)."""
    distinct = list(dict.fromkeys(values))
    if _numeric(distinct):
        return sorted(distinct), True
    try:
        return sorted(distinct), False  # False < True; choices alphabetically
    except TypeError:
        return distinct, False


def point_of(sweep: SweepInfo, run: RunInfo | None, index: int) -> dict[str, Any]:
    """A sweep point's swept values, with the run's technique and seed where not swept."""
    point = dict(sweep.points[index])
    if run is not None:
        point.setdefault("technique", run.technique)
        point.setdefault("seed", run.seed)
    return point


def build_series(data: SweepData, metric: str, x: str) -> tuple[list[Series], list[Any], bool]:
    """One series per technique (and per value of any other swept key but the seed), the
    metric averaged over the runs at each x."""
    sweep = data.sweep
    if sweep is None:
        return [], [], True
    others = [key for key in sweep_axes(sweep) if key != x]
    groups: dict[tuple, dict[Any, list[int]]] = {}  # label -> x -> run ids
    xs_all = []
    for index, run_id in enumerate(sweep.run_ids):
        point = point_of(sweep, data.runs.get(run_id), index)
        if x not in point:
            continue
        xs_all.append(point[x])
        label = (point.get("technique", "?"),) + tuple(f"{key}={point.get(key)}" for key in others)
        if has_value(data.values.get(run_id, {}).get(metric)):
            groups.setdefault(label, {}).setdefault(point[x], []).append(run_id)
        else:
            groups.setdefault(label, {})
    axis, numeric = axis_values(xs_all)
    series = []
    for label, per_x in groups.items():
        xs = [value for value in axis if value in per_x]
        pooled = [pool([data.values[r][metric] for r in per_x[v]],
                       [data.summaries.get(r, {}).get(metric) for r in per_x[v]]) for v in xs]
        bars = [(p.ci_low, p.ci_high) if p.ci_low is not None and p.ci_high is not None else None for p in pooled]
        series.append(Series(" ".join(label), xs, [p.value for p in pooled], bars,
                             pooled=any(len(per_x[v]) > 1 for v in xs)))
    return series, axis, numeric


def bar_caption(series: list[Series]) -> str:
    """What a plot's bars are, for its caption ('' when it has none)."""
    if not any(bar is not None for s in series for bar in s.bars):
        return ""
    if any(s.pooled for s in series):
        return "bars: lowest to highest value over seeds"
    return "bars: 95% bootstrap interval over samples"


def tick_label(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value) if not math.isfinite(value) else f"{value:g}"
    return str(value)
