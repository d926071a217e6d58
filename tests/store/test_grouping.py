"""Grouping runs by a key (read/pooling: `group_runs`, `resolve_group_key`, `group_keys`),
checked against groups and means computed here with plain Python: which runs share a group
(a parameter the run does not record is its technique's default; a technique without it is
the "(none)" group), the pooled mean and lowest/highest run value, values missing or NaN
left out, a one-run group keeping its own summary."""

from __future__ import annotations

import math
import statistics

import pytest

from engine.techniques import get_technique
from inpaint_tui.read.pooling import (
    MISSING, NONE_LABEL, SEED, best_first, group_keys, group_runs, pool, resolve_group_key,
)
from inpaint_tui.read.query import QueryError
from inpaint_tui.store import LeaderboardRow, MetricSummary


def row(run_id, technique="blended", params=None, *, seed=0, mse=None, psnr=None, sample_set="demo", steps=20,
        guidance=7.5, model="tiny"):
    metrics = {name: value for name, value in (("bg_mse", mse), ("bg_psnr", psnr)) if value is not None}
    summaries = {name: MetricSummary(value=value, ci_low=value - 0.5, ci_high=value + 0.5, n=6)
                 for name, value in metrics.items() if not math.isnan(value)}
    return LeaderboardRow(run_id=run_id, technique=technique, params=dict(params or {}), model=model, steps=steps,
                          seed=seed, sample_set=sample_set, status="finished", samples_done=6, metrics=metrics,
                          summaries=summaries, guidance=guidance)


RUNS = [
    row(1, "blended", {"blend_start": 0.25}, seed=0, mse=0.010, psnr=30.0),
    row(2, "blended", {"blend_start": 0.250}, seed=1, mse=0.014, psnr=float("nan")),  # NaN: left out
    row(3, "tdpaint", {"blend_start": 0.25, "t_bg": 50.0}, seed=0, mse=0.030, psnr=25.0),
    row(4, "blended", {}, seed=0, mse=0.020, psnr=28.0),  # recorded before blend_start: its default
    row(5, "blended", {"blend_start": 0.0}, seed=3, mse=0.022),  # no PSNR: left out
    row(6, "vanilla", {}, seed=0, mse=0.050, psnr=20.0),  # vanilla has no blend_start
    row(7, "repaint", {}, seed=0, mse=0.040, psnr=21.0, sample_set="other"),
    row(8, "blended", {"blend_start": float("inf")}, seed=0, mse=0.060, psnr=19.0),
]


def by_hand(runs, value_of):
    """{value: run ids} and the pooled mean/min/max of each metric, without read/pooling."""
    members: dict = {}
    for run in sorted(runs, key=lambda r: r.run_id):
        members.setdefault(value_of(run), []).append(run)
    expected = {}
    for value, group in members.items():
        stats = {}
        for name in ("bg_mse", "bg_psnr"):
            values = [r.metrics[name] for r in group if name in r.metrics and not math.isnan(r.metrics[name])]
            if values:
                stats[name] = (statistics.fmean(values), min(values), max(values), len(values))
        expected[value] = ([r.run_id for r in group], stats)
    return expected


def test_grouping_by_a_parameter_pools_every_run_with_the_same_value_the_default_for_runs_not_recording_it():
    blended_default = get_technique("blended").full_schema.defaults()["blend_start"]
    assert blended_default == 0.0  # so run 4 joins run 5

    def blend_start(run):
        if "blend_start" in run.params:
            return run.params["blend_start"]
        return {"blended": blended_default}.get(run.technique, "none")  # vanilla, repaint: no such parameter

    expected = by_hand(RUNS, blend_start)
    groups = group_runs(RUNS, "param.blend_start")
    found = {("none" if g.value is MISSING else g.value): g for g in groups}
    assert set(found) == set(expected) == {0.25, 0.0, "none", float("inf")}
    for value, (ids, stats) in expected.items():
        group = found[value]
        assert [r.run_id for r in group.runs] == ids
        for name, (mean, low, high, count) in stats.items():
            summary = group.summaries[name]
            if len(ids) == 1:  # one run: its own summary, not a pooled one
                assert summary == group.runs[0].summaries[name]
                assert group.metrics[name] == group.runs[0].metrics[name]
                continue
            assert summary.value == mean and group.metrics[name] == mean
            assert (summary.ci_low, summary.ci_high, summary.n) == (low, high, count)
        assert set(group.metrics) == set(stats)
    # 0.25 pools two blended runs (seeds) and a tdpaint run: two configurations, told
    assert found[0.25].configurations == 2 and found[0.0].configurations == 2
    assert found[0.25].label == "blend_start=0.25" and found["none"].label == f"blend_start={NONE_LABEL}"
    assert found[float("inf")].label == "blend_start=inf"
    # NaN and missing values are left out of the mean: PSNR of 0.25 is the mean of runs 1 and 3
    assert found[0.25].summaries["bg_psnr"].value == statistics.fmean([30.0, 25.0])
    assert found[0.0].summaries["bg_psnr"].n == 1 and found[0.0].summaries["bg_psnr"].value == 28.0


def test_grouping_by_a_run_field_and_by_seed():
    for key, attribute in (("technique", "technique"), ("set", "sample_set"), ("steps", "steps")):
        expected = by_hand(RUNS, lambda run: getattr(run, attribute))
        groups = group_runs(RUNS, key)
        assert {g.value: [r.run_id for r in g.runs] for g in groups} == {v: ids for v, (ids, _) in expected.items()}
        for group in groups:
            ids, stats = expected[group.value]
            if len(ids) > 1:
                assert {n: group.summaries[n].value for n in stats} == {n: s[0] for n, s in stats.items()}
    # seed: runs differing only in their seed (1 and 2, blend_start 0.25 and 0.250), one configuration each
    groups = group_runs(RUNS, SEED)
    assert [[r.run_id for r in g.runs] for g in groups] == [[1, 2], [3], [4], [5], [6], [7], [8]]
    assert all(g.configurations == 1 for g in groups)
    assert groups[0].summaries["bg_mse"] == pool([0.010, 0.014])


def test_values_are_compared_exactly_bools_apart_from_numbers_unhashable_by_json():
    runs = [row(1, "blended", {"x": True}, mse=1.0), row(2, "blended", {"x": 1}, mse=2.0),
            row(3, "blended", {"x": 1.0}, mse=3.0), row(4, "blended", {"x": [1, 2]}, mse=4.0),
            row(5, "blended", {"x": [1, 2]}, mse=5.0), row(6, "blended", {"x": float("nan")}, mse=6.0),
            row(7, "blended", {"x": float("nan")}, mse=7.0), row(8, "blended", {"x": 0.1 + 0.2}, mse=8.0),
            row(9, "blended", {"x": 0.3}, mse=9.0), row(10, "blended", {"x": False}, mse=10.0),
            row(11, "blended", {"x": 0}, mse=11.0)]
    groups = group_runs(runs, "param.x")
    assert [[r.run_id for r in g.runs] for g in groups] == [[1], [2, 3], [4, 5], [6, 7], [8], [9], [10], [11]]
    assert [g.label for g in groups] == ["x=true", "x=1", "x=[1, 2]", "x=nan", "x=0.30000000000000004", "x=0.3",
                                         "x=false", "x=0"]
    # a recorded null, like guidance None, is the "(none)" group
    assert [g.label for g in group_runs([row(1, params={"x": None}, mse=1.0), row(2, mse=2.0)], "param.x")] == \
        [f"x={NONE_LABEL}"]
    assert [g.label for g in group_runs([row(1, guidance=None, mse=1.0), row(2, mse=2.0)], "guidance")] == \
        [f"guidance={NONE_LABEL}", "guidance=7.5"]


def test_a_value_missing_in_every_run_of_a_group_is_missing_not_zero():
    groups = group_runs([row(1, mse=1.0), row(2, seed=1, mse=float("nan")), row(3, seed=2)], "technique")
    assert groups[0].summaries["bg_mse"].value == 1.0 and groups[0].summaries["bg_mse"].n == 1
    groups = group_runs([row(1, psnr=1.0), row(2, seed=1, mse=float("nan"))], "technique")
    assert groups[0].summaries["bg_mse"].value is None and "bg_mse" not in groups[0].metrics


def test_keys_use_the_query_languages_names_and_a_bad_key_names_the_option():
    assert [resolve_group_key(k) for k in ("seed", "Technique", "set", "sample_set", "param.blend_start",
                                           "params.t_bg", "guidance", "model", "steps")] == \
        ["seed", "technique", "set", "set", "param.blend_start", "param.t_bg", "guidance", "model", "steps"]
    for bad, said in (("status", "cannot group by 'status'"), ("tecnique", "did you mean 'technique'"),
                      ("param.nope", "unknown parameter 'nope'"), ("", "a key to group by is needed")):
        with pytest.raises(QueryError) as raised:
            resolve_group_key(bad)
        assert str(raised.value).startswith("--group-by: ") and said in str(raised.value)


def test_group_keys_offer_the_fields_and_every_parameter_of_the_runs_techniques():
    keys = dict(group_keys(RUNS))
    assert list(keys)[:5] == ["technique", "model", "steps", "guidance", "set"]
    assert keys["technique"] == 4 and keys["set"] == 2 and keys["model"] == 1
    assert keys["param.blend_start"] == 4  # 0.25, 0.0, inf, none
    expected = set()
    for technique in {run.technique for run in RUNS}:
        expected |= set(get_technique(technique).full_schema.defaults())
    assert {key for key in keys if key.startswith("param.")} == {f"param.{name}" for name in expected}


def test_groups_rank_best_first_in_the_catalogues_direction_without_a_value_last():
    groups = group_runs(RUNS, "param.blend_start")
    by_mse = best_first(groups, "bg_mse")  # lower is better
    means = [g.metrics["bg_mse"] for g in by_mse]
    assert means == sorted(means)
    by_psnr = best_first(groups, "bg_psnr")  # higher is better
    assert [g.metrics["bg_psnr"] for g in by_psnr] == sorted((g.metrics["bg_psnr"] for g in groups), reverse=True)
    worst = best_first(groups, "bg_psnr", reverse=True)
    assert worst == by_psnr[::-1]
    lacking = group_runs([row(1, mse=1.0), row(2, "vanilla", psnr=3.0), row(3, "tdpaint", mse=0.5)], "technique")
    assert [g.value for g in best_first(lacking, "bg_mse")] == ["tdpaint", "blended", "vanilla"]
    assert [g.value for g in best_first(lacking, "bg_mse", reverse=True)] == ["blended", "tdpaint", "vanilla"]
