"""Metrics at the end of a run, recomputation, missing models, and paired comparisons, on
real runs of the tiny model in a real store (SQLite and PostgreSQL)."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.evaluate import evaluate
from engine.metrics.kid import MemoryReferenceCache
from engine.spec import EvalConfig
from inpaint_tui.cli import app
from inpaint_tui.jobs.evaluate import eval_items, evaluate_run
from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.jobs.worker import execute_run
from tests.conftest import queue

ALL = ("background", "clip", "precision", "kid")
# CI time: each test here generates and evaluates a run (15-30 s on PostgreSQL). What they check
# is the metric computation, the same on either database; storing per-sample and per-run
# values on both is the first test's, replacing them on recompute the third's.
COMPUTATION_ONLY = "slow, and the metric computation it checks does not depend on the database kind"


def _run(store, technique="blended", models="tiny", groups=ALL, **params):
    ensure_demo(store)
    run_id = queue(store, technique=technique, params=params or None, model="tiny", sample_set="demo", seed=0,
                       steps=2, guidance=7.5, eval_config=EvalConfig(groups=groups, models=models).to_dict())
    messages = []
    execute_run(store, run_id, device="cpu", on_message=messages.append)
    return run_id, messages


def test_end_of_run_metrics_are_stored_per_sample_and_per_run(store, tiny_model):
    run_id, messages = _run(store)
    assert messages == []
    detail = store.run_detail(run_id)
    for sample in detail.samples:
        assert {"bg_mse", "bg_ssim", "ring_mse", "clip_local", "clip_global", "prompt_hit"} <= set(sample.metrics)
        assert 0 <= sample.metrics["clip_local"] <= 100 and sample.metrics["prompt_hit"] in (0.0, 1.0)
    summaries = detail.summaries
    kid = summaries["kid"]
    assert kid.value is not None and kid.std is not None and kid.n == 6 and "reduced" in kid.note
    precision = summaries["prompt_precision"]
    hits = [s.metrics["prompt_hit"] for s in detail.samples]
    assert precision.value == pytest.approx(np.mean(hits)) and precision.ci_low <= precision.value <= precision.ci_high
    for name in ("bg_mse", "clip_local", "seconds"):
        values = [s.metrics[name] for s in detail.samples]
        assert summaries[name].value == pytest.approx(np.mean(values)) and summaries[name].n == 6
        assert summaries[name].ci_low <= summaries[name].value <= summaries[name].ci_high
    assert detail.metrics["bg_mse"] == summaries["bg_mse"].value


@pytest.mark.sqlite_only(COMPUTATION_ONLY)
def test_unavailable_models_are_recorded_missing_never_zero(store, tiny_model):
    run_id, messages = _run(store, models="real")
    assert {m.split(" ")[0] for m in messages} == {"clip", "precision", "kid"}
    assert any("openai/clip-vit-base-patch16" in m for m in messages)
    detail = store.run_detail(run_id)
    for name in ("clip_local", "clip_global", "prompt_hit", "prompt_precision", "kid"):
        assert detail.summaries[name].value is None and detail.summaries[name].note, name
        assert name not in detail.metrics
    assert all("clip_local" not in s.metrics for s in detail.samples)
    assert detail.run.status == "finished"  # generation results are kept
    board = store.leaderboard("kid", descending=False)
    assert board[0].run_id == run_id and "kid" not in board[0].metrics


def test_recompute_replaces_only_the_named_metrics(store, tiny_model):
    run_id, _ = _run(store)
    first = store.run_detail(run_id)
    sample_id = first.samples[0].sample_id
    store.record_sample_metrics(run_id, {sample_id: {"clip_local": -5.0, "bg_mse": 0.5}})
    evaluate_run(store, run_id, metrics=["clip_local"])
    again = store.run_detail(run_id)
    assert again.samples[0].metrics["clip_local"] == first.samples[0].metrics["clip_local"]  # recomputed
    assert again.samples[0].metrics["bg_mse"] == 0.5  # untouched
    assert again.summaries["kid"].value == first.summaries["kid"].value


@pytest.mark.slow
@pytest.mark.sqlite_only(COMPUTATION_ONLY)
def test_recomputing_background_from_files_gives_the_runner_values(store, tiny_model):
    run_id, _ = _run(store, groups=("background",))
    before = {s.sample_id: s.metrics for s in store.run_detail(run_id).samples}
    evaluate_run(store, run_id, metrics=["background"])
    for s in store.run_detail(run_id).samples:
        for name in ("bg_mse", "bg_psnr", "bg_ssim", "ring_mse"):
            assert s.metrics[name] == before[s.sample_id][name]


@pytest.mark.slow
@pytest.mark.sqlite_only(COMPUTATION_ONLY)
def test_kid_reference_features_are_cached_across_runs(store, tiny_model):
    first, _ = _run(store, groups=("kid",))
    second, _ = _run(store, technique="vanilla", groups=("kid",))
    cache = MemoryReferenceCache()
    config = EvalConfig(groups=("kid",), models="tiny")
    items_a, _, _ = eval_items(store, first)
    items_b, _, _ = eval_items(store, second)
    value_a = evaluate(items_a, config, kid_cache=cache).per_run["kid"].value
    assert (cache.hits, cache.misses) == (0, 6)
    value_b = evaluate(items_b, config, kid_cache=cache).per_run["kid"].value
    assert (cache.hits, cache.misses) == (6, 6)  # the second run's references come from the cache
    assert value_a == store.run_detail(first).summaries["kid"].value
    assert value_b == store.run_detail(second).summaries["kid"].value
    assert any((store.data_dir / "cache" / "kid").iterdir())  # runs use a cache beside the database


@pytest.mark.sqlite_only(COMPUTATION_ONLY)
def test_evaluation_models_are_built_once_per_process_and_shared_without_effect(store, tiny_model, monkeypatch):
    """A worker draining a sweep evaluates run after run: CLIP, the detector and the KID
    features are built once for a configuration (another tiny seed: other random weights,
    built anew), and an evaluation with the shared models gets exactly what the run's own
    evaluation, with models built for it, stored."""
    import engine.evaluate as evaluation
    import engine.metrics.clip as clip
    import engine.metrics.detectors as detectors
    import engine.metrics.kid as kid

    builds = []
    for module, name in ((clip, "tiny_clip_scorer"), (detectors, "tiny_detector"), (kid, "tiny_extractor")):
        def counted(*args, _build=getattr(module, name), _name=name, **kwargs):
            builds.append(_name)
            return _build(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    for cache in (evaluation.clip_scorer, evaluation.detector, evaluation.kid_features):
        cache.cache_clear()
    run_id, _ = _run(store)  # the worker's evaluation builds each model
    assert sorted(builds) == ["tiny_clip_scorer", "tiny_detector", "tiny_extractor"]
    stored = store.run_detail(run_id)
    items, ids, phrases = eval_items(store, run_id)
    again = evaluate(items, EvalConfig(groups=ALL, models="tiny"), phrases=phrases)  # as the next run would
    assert len(builds) == 3
    by_id = {ids[key]: values for key, values in again.per_sample.items()}
    for sample in stored.samples:
        for name in ("clip_local", "clip_global", "prompt_hit"):
            assert sample.metrics[name] == by_id[sample.sample_id][name], name
    assert stored.summaries["kid"].value == again.per_run["kid"].value
    evaluate(items, EvalConfig(groups=("clip",), models="tiny", seed=1))
    assert builds.count("tiny_clip_scorer") == 2  # another seed: other weights


def test_cli_compare_and_metrics_compute(tmp_path, tiny_model):
    runner = CliRunner()
    db = str(tmp_path / "e.db")

    def cli(*args, expect=0):
        result = runner.invoke(app, ["--db", db, *args])
        assert result.exit_code == expect, result.stderr
        return result

    cli("samples", "import", "demo")
    cli("run", "-t", "blended", "--steps", "2", "--metrics", "background")
    cli("run", "-t", "blended", "--steps", "2", "--metrics", "background", "-p", "background=paste")
    comparison = json.loads(cli("compare", "1", "2", "--json").stdout)["comparisons"]
    bg = next(c for c in comparison if c["metric"] == "bg_mse")
    assert bg["n"] == 6 and bg["mean_b"] == 0.0 and bg["difference"] < 0
    assert bg["ci_high"] < 0 and bg["p_value"] == pytest.approx(2 / 2**6)  # all six pairs improve
    assert "run 2 better" in cli("compare", "1", "2", "-m", "bg_mse").stdout
    computed = json.loads(cli("metrics", "compute", "1", "-m", "clip", "--json").stdout)
    assert computed["clip_local"]["value"] is not None and computed["bg_mse"]["n"] == 6
    assert "unknown metric 'beauty'" in cli("metrics", "compute", "1", "-m", "beauty", expect=2).stderr
    board = json.loads(cli("leaderboard", "--json").stdout)
    assert board[0]["run_id"] == 2 and board[0]["summaries"]["bg_mse"]["value"] == 0.0
    assert math.isinf(float(board[0]["metrics"]["bg_psnr"])) or board[0]["metrics"]["bg_psnr"] == "inf"


@pytest.mark.sqlite_only(COMPUTATION_ONLY)
def test_crop_policy_runs_and_recomputes_on_the_same_pixels(store, tiny_model):
    run_id, _ = _run(store, groups=("background",), resize="crop")
    detail = store.run_detail(run_id)
    assert detail.run.status == "finished" and detail.run.params["resize"] == "crop"
    before = {s.sample_id: s.metrics["bg_mse"] for s in detail.samples}
    evaluate_run(store, run_id, metrics=["background"])
    assert {s.sample_id: s.metrics["bg_mse"] for s in store.run_detail(run_id).samples} == before
    from PIL import Image

    assert all(Image.open(s.image_path).size == (128, 128) for s in detail.samples)


def test_cli_evaluation_settings_are_recorded_with_the_run(tmp_path, tiny_model):
    runner = CliRunner()
    db = str(tmp_path / "e.db")
    assert runner.invoke(app, ["--db", db, "samples", "import", "demo"]).exit_code == 0
    result = runner.invoke(app, ["--db", db, "run", "-t", "blended", "--steps", "2", "--metrics", "background,clip",
                                 "--eval-models", "real", "--clip-model", "/nonexistent/clip", "--ring-width", "3",
                                 "--json"])
    assert result.exit_code == 0, result.stderr
    detail = json.loads(result.stdout)
    config = detail["run"]["eval_config"]
    assert config["clip_model"] == "/nonexistent/clip" and config["ring_width"] == 3 and config["models"] == "real"
    from engine.metrics.background import ring_mse
    from inpaint_tui.store import Store

    store = Store(db)
    items, ids, _ = eval_items(store, detail["run"]["id"])
    stored = {s["sample_id"]: s["metrics"]["ring_mse"] for s in detail["samples"]}
    for item in items:  # the ring width the run asked for, not the default 8
        assert stored[ids[item.sample_id]] == ring_mse(item.output, item.source, item.mask, 3)
    assert detail["summaries"]["clip_local"]["value"] is None and "/nonexistent/clip" in detail["summaries"]["clip_local"]["note"]


@pytest.mark.sqlite_only(COMPUTATION_ONLY)
def test_every_stored_metric_is_in_the_catalogue(store, tiny_model):
    """Whatever any code path stores (generation-time, end-of-run, summaries), the catalogue
    knows it: its direction, level and group are never guessed."""
    from engine.metrics.catalogue import METRICS

    run_id, _ = _run(store)
    with store.engine.connect() as connection:
        from sqlalchemy import text

        names = {row[0] for row in connection.execute(text("SELECT name FROM metric UNION SELECT name FROM run_metric"))}
    assert {"bg_mse", "clip_local", "prompt_hit", "prompt_precision", "kid", "seconds", "unet_calls"} <= names
    assert names <= set(METRICS), names - set(METRICS)
    assert "prompt_hit" not in store.run_detail(run_id).summaries  # summarised as prompt_precision, not twice


@pytest.mark.sqlite_only(COMPUTATION_ONLY)
def test_only_the_groups_asked_for_are_computed_once_with_the_runs_settings(store, tiny_model):
    """The defects: the runner computed background metrics live with the default ring width and
    the evaluation again with the run's --ring-width, overwriting; a `--metrics clip` run
    still stored background metrics."""
    from engine.metrics.background import sample_metrics

    ensure_demo(store)
    clip_only, _ = _run(store, groups=("clip",))
    for sample in store.run_detail(clip_only).samples:
        assert not any(name.startswith(("bg_", "ring_")) for name in sample.metrics), sample.metrics
        assert "clip_local" in sample.metrics and "seconds" in sample.metrics  # cost is always recorded
    ring3 = queue(store, "blended", steps=2, eval_config=EvalConfig(groups=("background",), models="tiny",
                                                                     ring_width=3))
    seen = []
    # The values stored as each sample finishes are already those of the run's ring width.
    execute_run(store, ring3, device="cpu", on_progress=lambda p: seen.append(
        {s.sample_name: s.metrics.get("ring_mse") for s in store.run_detail(ring3).samples if s.status == "done"}))
    items, _, _ = eval_items(store, ring3)
    stored = {s.sample_name: s.metrics["ring_mse"] for s in store.run_detail(ring3).samples}
    by_key = {info.key: info.name for info in store.samples("demo")}
    for item in items:
        width3 = sample_metrics(item.output, item.source, item.mask, ring_width=3)["ring_mse"]
        width8 = sample_metrics(item.output, item.source, item.mask, ring_width=8)["ring_mse"]
        assert stored[by_key[item.sample_id]] == width3 != width8
    live = [values for values in seen if values]
    assert live and all(stored[name] == value for values in live for name, value in values.items())
