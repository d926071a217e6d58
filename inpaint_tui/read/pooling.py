"""One rule for pooling runs, used by the leaderboard's grouping (TUI and `leaderboard
--group-by`) and by the sweep plots (and so by the report):

- which runs pool: by `seed`, runs differing only in their seed (same technique, parameters,
  model, steps, guidance and sample set: `seed_group_key`, one configuration); by any other
  key (`GROUP_FIELDS`, `param.NAME`), every run with the same value of that key, whatever else
  differs (`group_runs` counts the configurations a group mixes). A run that does not record
  a parameter has its technique's default (as `--filter` reads it); a run whose technique has
  no such parameter, or that has no value for the key, is in the "(none)" group. Values are
  compared exactly (`_comparable`);
- the pooled value of a metric is the mean of the runs' per-run values (runs without the
  value, or with NaN, are left out; an infinite value makes the mean infinite);
- its spread is the lowest to the highest of those run values: with a handful of seeds an
  interval estimate would claim more than the runs can show. One run is not pooled: it keeps
  its own summary (its 95% bootstrap interval over samples, or KID's std).
"""

from __future__ import annotations

import difflib
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from inpaint_tui.read.present import plural
from inpaint_tui.store import MetricSummary

SEED = "seed"  # the key that pools configurations: runs differing only in their seed
# The run fields a group can be keyed by, named as in the query language (read/query.py),
# with the attribute of a run (or leaderboard row) that holds each.
GROUP_FIELDS = {"technique": "technique", "model": "model", "steps": "steps", "guidance": "guidance",
                "set": "sample_set"}
PARAM_PREFIX = "param."
NONE_LABEL = "(none)"  # the group of runs without a value for the key


def has_value(value: float | None) -> bool:
    """A value to rank or pool: present and not NaN (inf is a value: a PSNR of an exact copy)."""
    return value is not None and not math.isnan(value)


def _params_key(params: dict[str, Any]) -> Any:
    try:
        key = tuple(sorted(params.items()))
        hash(key)
        return key
    except TypeError:  # unorderable or unhashable values (a list)
        return json.dumps(params, sort_keys=True, default=str)


def seed_group_key(run: Any) -> tuple:
    """Everything that defines a configuration except the seed, for a run or leaderboard row."""
    return (run.technique, _params_key(run.params), run.model, run.steps, run.sample_set,
            getattr(run, "guidance", None))


def pool(values: Sequence[float | None], summaries: Sequence[MetricSummary | None] = (),
         across: str = "seeds") -> MetricSummary:
    """The pooled summary of one metric over runs (`values[i]` and `summaries[i]` of run i);
    `across` says in the note what the runs differ in."""
    present = [(value, summaries[i] if i < len(summaries) else None) for i, value in enumerate(values)
               if has_value(value)]
    if not present:
        return MetricSummary(value=None, note="missing in every run")
    if len(values) == 1:
        value, summary = present[0]
        return summary if summary is not None else MetricSummary(value=value, n=None)
    means = [value for value, _ in present]
    return MetricSummary(value=statistics.fmean(means), ci_low=min(means), ci_high=max(means), n=len(means),
                         note=f"{plural(len(means), 'run')} ({across}): lowest to highest run value")


# --- grouping by a key -------------------------------------------------------------------------


class _Missing:
    """The value of a key a run has none for: its runs make one group, shown as NONE_LABEL."""

    def __repr__(self) -> str:
        return NONE_LABEL


MISSING = _Missing()


def resolve_group_key(name: str, option: str = "--group-by") -> str:
    """The key `name` stands for, spelled as the query language spells it (`set`,
    `param.blend_start`; `seed` for configurations); a QueryError naming `option` otherwise."""
    from inpaint_tui.read.query import ALIASES, PARAM_PREFIXES, QueryError, resolve_field

    stripped = name.strip()
    lowered = stripped.lower()
    if lowered == SEED:
        return SEED
    allowed = f"{SEED} (configurations), {', '.join(GROUP_FIELDS)} or param.NAME"
    if not stripped:
        raise QueryError(f"a key to group by is needed: {allowed}", name, 0, option=option)
    named = ALIASES.get(lowered, lowered)  # set -> sample_set, as in a filter
    for key, attribute in GROUP_FIELDS.items():
        if named in (key, attribute):
            return key
    if lowered.startswith(PARAM_PREFIXES):  # an unknown parameter: its error lists the known ones
        return PARAM_PREFIX + resolve_field(stripped, option=option).name
    close = difflib.get_close_matches(lowered, [SEED, *GROUP_FIELDS], n=1, cutoff=0.75)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise QueryError(f"cannot group by {stripped!r}: {hint}group by {allowed}", name, 0, len(name), option=option)


class _Defaults:
    """Each technique's parameter defaults, looked up once per grouping (the schema is the
    owner: engine.spec.recorded_params's rule, a run recorded before a parameter existed ran
    with its default)."""

    def __init__(self) -> None:
        self._by_technique: dict[str, dict[str, Any]] = {}

    def of(self, technique: str) -> dict[str, Any]:
        if technique not in self._by_technique:
            from engine.params import ParamError
            from engine.techniques import get_technique

            try:
                self._by_technique[technique] = get_technique(technique).full_schema.defaults()
            except ParamError:  # a technique no longer registered: what the run recorded only
                self._by_technique[technique] = {}
        return self._by_technique[technique]


def group_value(run: Any, key: str, defaults: _Defaults | None = None) -> Any:
    """The value of `key` (a resolved key other than `seed`) for a run or leaderboard row:
    a parameter the run does not record is its technique's default; MISSING where the
    technique has no such parameter (or the run no guidance)."""
    if key.startswith(PARAM_PREFIX):
        name = key[len(PARAM_PREFIX):]
        if name in run.params:
            return MISSING if run.params[name] is None else run.params[name]
        return (defaults or _Defaults()).of(run.technique).get(name, MISSING)
    value = getattr(run, GROUP_FIELDS[key], None)
    return MISSING if value is None else value


def _comparable(value: Any) -> Any:
    """A hashable stand-in that is equal exactly when the values are: numbers by value (0.25
    and 0.250, 20 and 20.0 are one group), but a bool never equal to 1 or 0, NaN equal to
    itself, an unhashable value by its JSON."""
    if value is MISSING:
        return ("missing",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, (int, float)):
        return ("number", value)
    try:
        hash(value)
    except TypeError:
        return ("json", json.dumps(value, sort_keys=True, default=str))
    return ("other", value)


def format_group_value(value: Any) -> str:
    """A key's value as a group's label shows it: exact (a float's shortest round-trip form,
    so two groups never read the same), true/false as the query language writes them."""
    if value is MISSING:
        return NONE_LABEL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # 0.25, 1e-05, inf
    if isinstance(value, (str, int)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def group_label(key: str, value: Any) -> str:
    """`blend_start=0.25`, `technique=blended`: the key as a filter names it, less `param.`."""
    name = key[len(PARAM_PREFIX):] if key.startswith(PARAM_PREFIX) else key
    return f"{name}={format_group_value(value)}"


@dataclass(frozen=True)
class RunGroup:
    """Runs pooled into one row: their metrics pooled with `pool` (mean over runs, spread
    lowest to highest run value; a group of one run keeps its own summary)."""

    key: str  # `seed` or the key grouped by
    value: Any  # the key's value (None for a configuration); MISSING: runs without one
    runs: tuple  # in run id order
    configurations: int  # distinct configurations (seed_group_key) among the runs
    metrics: dict[str, float] = field(default_factory=dict)
    summaries: dict[str, MetricSummary] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "configuration" if self.key == SEED else group_label(self.key, self.value)


def pooled_metrics(runs: Sequence[Any], across: str = "seeds") -> tuple[dict[str, float], dict[str, MetricSummary]]:
    """Each metric of the runs pooled (`pool`); one run keeps its own values and summaries."""
    if len(runs) == 1:
        return dict(runs[0].metrics), dict(runs[0].summaries)
    metrics, summaries = {}, {}
    for name in sorted({name for run in runs for name in (*run.metrics, *run.summaries)}):
        summary = pool([run.metrics.get(name) for run in runs], across=across)
        summaries[name] = summary
        if summary.value is not None:
            metrics[name] = summary.value
    return metrics, summaries


def group_runs(runs: Iterable[Any], key: str) -> list[RunGroup]:
    """The runs (leaderboard rows, or anything with their fields and `metrics`/`summaries`)
    partitioned by `key` (resolve_group_key's spelling), groups in order of their first run id."""
    ordered = sorted(runs, key=lambda run: run.run_id)
    buckets: dict[Any, tuple[Any, list]] = {}
    if key == SEED:
        for run in ordered:
            buckets.setdefault(seed_group_key(run), (None, []))[1].append(run)
    else:
        defaults = _Defaults()
        for run in ordered:
            value = group_value(run, key, defaults)
            buckets.setdefault(_comparable(value), (value, []))[1].append(run)
    across = "seeds" if key == SEED else f"same {key}"
    groups = []
    for value, members in buckets.values():
        metrics, summaries = pooled_metrics(members, across)
        configurations = 1 if key == SEED else len({seed_group_key(run) for run in members})
        groups.append(RunGroup(key, value, tuple(members), configurations, metrics, summaries))
    return groups


def best_first(items: Sequence[Any], metric: str, *, first_run: Callable[[Any], int] | None = None,
               reverse: bool = False) -> list:
    """Runs or groups (anything with `metrics`) best first by `metric` in its catalogue
    direction, the worst first with `reverse`; those without a value last either way; ties in
    order of the (first) run id, `first_run(item)` (default: a group's first run)."""
    from engine.metrics.catalogue import higher_is_better

    sign = (-1.0 if higher_is_better(metric) else 1.0) * (-1.0 if reverse else 1.0)
    first_run = first_run or (lambda group: group.runs[0].run_id)

    def key(item: Any):
        value = item.metrics.get(metric)
        return (1, 0.0, first_run(item)) if not has_value(value) else (0, sign * value, first_run(item))

    return sorted(items, key=key)


def group_keys(runs: Iterable[Any]) -> list[tuple[str, int]]:
    """The keys the runs can be grouped by, each with how many distinct values it takes among
    them: the run fields, then every parameter of the runs' techniques (by name)."""
    runs = list(runs)
    defaults = _Defaults()
    counts: list[tuple[str, int]] = []
    for key in GROUP_FIELDS:
        counts.append((key, len({_comparable(group_value(run, key)) for run in runs})))
    # A parameter's value depends on the technique and the recorded parameters only: counted
    # over the distinct parameter sets (thousands of runs share a few).
    configurations = {(run.technique, _params_key(run.params)): run for run in runs}.values()
    names = sorted({name for run in configurations for name in (*defaults.of(run.technique), *run.params)})
    for name in names:
        key = PARAM_PREFIX + name
        counts.append((key, len({_comparable(group_value(run, key, defaults)) for run in configurations})))
    return counts


__all__ = ["GROUP_FIELDS", "MISSING", "NONE_LABEL", "SEED", "RunGroup", "best_first", "format_group_value",
           "group_keys", "group_label", "group_runs", "group_value", "has_value", "pool", "pooled_metrics",
           "resolve_group_key", "seed_group_key"]
