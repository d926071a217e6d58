"""Per-run metrics: one row per (run, name) guarded by the key, migrated from the old layout,
summaries independent of database row order, and rankings in the metric's direction."""

import json

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from engine.evaluate import summarize
from engine.metrics.catalogue import METRICS
from inpaint_tui.jobs.evaluate import summarize_samples
from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.store import MetricSummary, Store
from tests.conftest import queue, sql, upgrade_to

EVAL = {"groups": ["background"], "models": "tiny"}


def _finished_run(store, values: dict[str, list[float]], *, order=None, run_metrics=None, technique="blended",
                  seed=0) -> int:
    """A finished run with the given per-sample values (sample order `order`), written
    through the store's own API (no generation)."""
    run_id = queue(store, technique, seed=seed, steps=2, eval_config=EVAL)
    worker = store.register_worker("daemon", device="cpu", pid=None)
    claim = store.claim_run(run_id, worker)
    pending = store.pending_samples(run_id)
    for index in order or range(len(pending)):
        _, sample = pending[index]
        store.mark_sample_running(run_id, sample.id, claim=claim)
        store.record_sample(run_id, sample.id, image_path=None, width=64, height=64, seconds=1.0, claim=claim,
                            metrics={name: column[index] for name, column in values.items()})
    summarize_samples(store, run_id)
    if run_metrics:
        store.record_run_metrics(run_id, {name: MetricSummary(value=value, n=6) for name, value in run_metrics.items()})
    store.finish_run(run_id, claim=claim)
    return run_id


def test_a_run_has_one_row_per_metric_enforced_by_the_database(store):
    """The defect: UNIQUE(run_id, run_sample_id, name) never applied to per-run rows (NULL
    run_sample_id), so two KID rows for one run could be inserted."""
    ensure_demo(store)
    run_id = _finished_run(store, {"bg_mse": [0.1] * 6}, run_metrics={"kid": 1.0})
    with pytest.raises(IntegrityError):
        sql(store.url, "INSERT INTO run_metric (run_id, name, value) VALUES (:r, 'kid', 2.0)", r=run_id)
    with pytest.raises(IntegrityError):
        sql(store.url, "INSERT INTO metric (run_id, run_sample_id, name, value) VALUES (:r, NULL, 'kid', 2.0)", r=run_id)
    assert sql(store.url, "SELECT COUNT(*) FROM run_metric WHERE run_id = :r AND name = 'kid'", r=run_id) == [(1,)]
    store.record_run_metrics(run_id, {"kid": MetricSummary(value=3.0, std=0.5, n=6)})  # replaces, never adds
    assert store.run_detail(run_id).summaries["kid"].value == 3.0


def test_migration_moves_per_run_rows_keeping_the_newest(empty_db):
    """A database written before 0004, with a duplicated per-run KID row, is carried over."""
    upgrade_to(empty_db, "0003")
    metric = "INSERT INTO metric (run_id, run_sample_id, name, value, std, n, note) VALUES "
    sql(empty_db,
        "INSERT INTO sample (id, key, name, prompt, image_path, mask_path, width, height, source, meta, "
        "created_at) VALUES (1, 'k', 's', 'p', 'i', 'm', 8, 8, 'x', '{}', '2026-01-01')",
        "INSERT INTO run (id, technique, params, model, seed, steps, guidance, negative_prompt, sample_set, "
        "status, config_hash, versions, eval_config, options, sample_count, created_at, claim, "
        "cancel_requested, tags, note) VALUES (1, 'blended', '{}', 'tiny', 0, 2, 7.5, '', 'demo', "
        "'finished', 'h', '{}', '{}', '{}', 1, '2026-01-01', 0, false, '[]', '')",
        "INSERT INTO run_sample (id, run_id, sample_id, position, seed, status, attempts) "
        "VALUES (1, 1, 1, 0, 5, 'done', 1)",
        # one statement per row, in this order: the ids (hence "newest") follow it
        metric + "(1, 1, 'bg_mse', 0.25, NULL, NULL, NULL)", metric + "(1, NULL, 'kid', 1.0, 0.1, 6, 'old')",
        metric + "(1, NULL, 'kid', 2.0, 0.2, 6, 'new')", metric + "(1, NULL, 'bg_mse', 0.25, NULL, 1, NULL)")
    store = Store(empty_db)
    try:
        detail = store.run_detail(1)
        assert detail.summaries["kid"].value == 2.0 and detail.summaries["kid"].note == "new"
        assert detail.samples[0].metrics == {"bg_mse": 0.25} and detail.summaries["bg_mse"].n == 1
    finally:
        store.close()
    assert sql(empty_db, "SELECT COUNT(*) FROM run_metric") == [(2,)]
    assert sql(empty_db, "SELECT COUNT(*) FROM metric") == [(1,)]
    if "://" not in str(empty_db):
        assert sql(empty_db, "PRAGMA integrity_check") == [("ok",)]


def test_run_summaries_do_not_depend_on_database_row_order(store):
    """The defect: the bootstrap drew over values in the order an unordered SELECT returned
    them; reversing the insertion moved the interval's ends by ~1e-4."""
    values = {"bg_mse": [0.011, 0.052, 0.007, 0.093, 0.031, 0.064]}
    summaries = []
    ensure_demo(store)
    for seed, order in enumerate((range(6), reversed(range(6)))):  # two runs, rows written in opposite orders
        run_id = _finished_run(store, values, order=list(order), seed=seed)
        summaries.append(store.run_detail(run_id).summaries["bg_mse"])
        ids = sorted(store.sample_metric_values(run_id)["bg_mse"])
    assert summaries[0] == summaries[1]
    # ...and equal to the bootstrap over the values in sample-id order (the samples were
    # imported in set order, so id order is set order here).
    expected = summarize(values["bg_mse"])
    assert (summaries[0].value, summaries[0].ci_low, summaries[0].ci_high) == (expected.value, expected.ci_low,
                                                                              expected.ci_high)
    assert ids == sorted(ids)


@pytest.mark.parametrize("metric, descending", [("kid", False), ("prompt_precision", True), ("prompt_hit", True),
                                                 ("bg_mse", False), ("clip_local", True)])
def test_cli_leaderboard_ranks_in_the_catalogue_direction(store, metric, descending):
    """The defect: `leaderboard --metric kid` exited 2 ('unknown metric'), and prompt_hit
    ranked the run with no hits first."""
    from inpaint_tui.cli import app

    ensure_demo(store)
    levels = (0.3, 0.1, 0.2)
    for seed, level in enumerate(levels):
        _finished_run(store, {"bg_mse": [level] * 6, "clip_local": [10 * level] * 6, "prompt_hit": [1.0, 0.0] * 3},
                      run_metrics={"kid": level, "prompt_precision": level}, seed=seed)
    result = CliRunner().invoke(app, ["--db", store.url, "leaderboard", "--metric", metric, "--json"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    ranked = METRICS[metric].summarised_as or metric
    values = [row["metrics"][ranked] for row in board]
    assert values == sorted(values, reverse=descending) and len(values) == 3
    if ranked == metric:
        scale = 10 if metric == "clip_local" else 1
        assert values[0] == pytest.approx((max if descending else min)(levels) * scale)


def test_cli_leaderboard_marks_the_lowest_kid_best(store):
    from inpaint_tui.cli import app

    ensure_demo(store)
    for seed, level in enumerate((0.3, 0.1)):
        _finished_run(store, {"bg_mse": [0.5] * 6}, run_metrics={"kid": level}, seed=seed)
    result = CliRunner().invoke(app, ["--db", store.url, "leaderboard", "--metric", "kid", "--csv"])
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()[1:]
    assert [row.split(",")[1] for row in rows] == ["2", "1"]  # run 2 (KID 0.1) first


def test_compare_means_and_n_cover_the_pairs_used(store):
    """The defect: `compare` printed mean_a = mean_b = inf and n = 4 when two pairs had an
    infinite PSNR; now the means and n are over the two finite pairs."""
    from inpaint_tui.read.compare import compare_runs

    ensure_demo(store)
    inf = float("inf")
    a = _finished_run(store, {"bg_psnr": [20, inf, 21, 23, 19, 18]}, seed=0)
    b = _finished_run(store, {"bg_psnr": [21, 22, inf, 24.5, 20, 18.5]}, seed=1)
    (entry,) = compare_runs(store, a, b, ["bg_psnr"])
    assert entry["n"] == 4 and entry["excluded"] == 2
    assert entry["mean_a"] == pytest.approx(np.mean([20, 23, 19, 18]))
    assert entry["mean_b"] == pytest.approx(np.mean([21, 24.5, 20, 18.5]))
    assert entry["mean_b"] - entry["mean_a"] == pytest.approx(entry["difference"])
