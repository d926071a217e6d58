"""One rule for pooling runs that differ only in their seed, used by the leaderboard's
grouping and by the sweep plots (and so by the report):

- which runs pool: same technique, parameters, model, steps, guidance and sample set
  (`seed_group_key`);
- the pooled value of a metric is the mean of the runs' per-run values (runs without the
  value, or with NaN, are left out; an infinite value makes the mean infinite);
- its spread is the lowest to the highest of those run values: with a handful of seeds an
  interval estimate would claim more than the runs can show. One run is not pooled: it keeps
  its own summary (its 95% bootstrap interval over samples, or KID's std).
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any, Sequence

from inpaint_tui.read.present import plural
from inpaint_tui.store import MetricSummary


def has_value(value: float | None) -> bool:
    """A value to rank or pool: present and not NaN (inf is a value: a PSNR of an exact copy)."""
    return value is not None and not math.isnan(value)


def _params_key(params: dict[str, Any]) -> Any:
    try:
        return tuple(sorted(params.items()))
    except TypeError:  # unorderable or unhashable values
        return json.dumps(params, sort_keys=True, default=str)


def seed_group_key(run: Any) -> tuple:
    """Everything that defines a configuration except the seed, for a run or leaderboard row."""
    return (run.technique, _params_key(run.params), run.model, run.steps, run.sample_set,
            getattr(run, "guidance", None))


def pool(values: Sequence[float | None], summaries: Sequence[MetricSummary | None] = ()) -> MetricSummary:
    """The pooled summary of one metric over runs (`values[i]` and `summaries[i]` of run i)."""
    present = [(value, summaries[i] if i < len(summaries) else None) for i, value in enumerate(values)
               if has_value(value)]
    if not present:
        return MetricSummary(value=None, note="missing in every run")
    if len(values) == 1:
        value, summary = present[0]
        return summary if summary is not None else MetricSummary(value=value, n=None)
    means = [value for value, _ in present]
    return MetricSummary(value=statistics.fmean(means), ci_low=min(means), ci_high=max(means), n=len(means),
                         note=f"{plural(len(means), 'run')} (seeds): lowest to highest run value")


__all__ = ["has_value", "pool", "seed_group_key"]
