"""A large store built in bulk, for scale tests and the benchmarks (bench/query.py,
bench/tui_scale.py, bench/startup.py, bench/listings.py): `runs` runs over the 6 demo samples
with varied techniques, parameters (a quarter recorded without some, as an older version
would), statuses, seeds and tags, each sample row done, and per-run metric rows (90% of
METRICS per run, with an interval); with `sample_metrics`, also a value per sample for every metric. Rows go in
with executemany in one transaction: through the store's API 50 000 runs would take minutes.
Without torch. Deterministic for a given `runs` and `seed`."""

from __future__ import annotations

import json
import random
from pathlib import Path

METRICS = ("bg_mse", "bg_psnr", "bg_ssim", "ring_mse", "clip_local", "clip_global", "prompt_precision", "kid",
           "unet_calls", "seconds", "peak_memory_mb")
SAMPLE_METRICS = ("bg_mse", "bg_psnr", "bg_ssim", "ring_mse", "clip_local", "clip_global", "unet_calls", "seconds")
TAGS = ("paper", "draft", "baseline", "v2")
STATUSES = ("finished", "finished", "finished", "finished_with_errors", "failed", "cancelled")
CREATED = "2026-11-20 09:30:00.000000"


def build(path: Path, runs: int, *, sample_metrics: bool = False, seed: int = 0):
    """The Store on a new SQLite file at `path`, filled."""
    from engine.techniques import get_technique, technique_names
    from inpaint_tui.jobs.samples import ensure_demo
    from inpaint_tui.store import Store

    store = Store(path)
    ensure_demo(store)
    sample_ids = store.set_sample_ids("demo")
    rng = random.Random(seed)
    techniques = technique_names()
    defaults = {name: get_technique(name).full_schema.defaults() for name in techniques}
    rows, samples, values, per_sample = [], [], [], []
    sample_row = 0
    for run_id in range(1, runs + 1):
        technique = techniques[run_id % len(techniques)]
        params = dict(defaults[technique])
        if "blend_start" in params:
            params["blend_start"] = rng.choice([0.0, 0.1, 0.25, 0.5])
        if rng.random() < 0.25:
            params.pop("blend_start", None)
            params.pop("resize", None)
        tags = sorted(set(rng.sample(TAGS, k=rng.randint(0, 2))))
        rows.append((run_id, technique, json.dumps(params), rng.randint(0, 5), rng.choice(STATUSES), f"hash{run_id}",
                     CREATED, CREATED, CREATED, json.dumps(tags)))
        for position, sample_id in enumerate(sample_ids):
            sample_row += 1
            samples.append((sample_row, run_id, sample_id, position, position, "done", CREATED, CREATED))
            if sample_metrics:
                per_sample.extend((run_id, sample_row, name, rng.random()) for name in SAMPLE_METRICS)
        values.extend((run_id, name, value, value - 0.1, value + 0.1, 6)
                      for name, value in ((name, rng.random()) for name in METRICS) if rng.random() < 0.9)
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.executemany(
            "INSERT INTO run (id, technique, params, model, seed, steps, guidance, negative_prompt, sample_set, status, "
            "config_hash, versions, eval_config, options, sample_count, created_at, started_at, finished_at, claim, "
            "cancel_requested, tags, note) VALUES (?, ?, ?, 'tiny', ?, 20, 7.5, '', 'demo', ?, ?, '{}', '{}', '{}', 6, "
            "?, ?, ?, 1, 0, ?, '')", rows)
        cursor.executemany("INSERT INTO run_sample (id, run_id, sample_id, position, seed, status, started_at, "
                           "finished_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)", samples)
        cursor.executemany("INSERT INTO metric (run_id, run_sample_id, name, value) VALUES (?, ?, ?, ?)", per_sample)
        cursor.executemany("INSERT INTO run_metric (run_id, name, value, ci_low, ci_high, n) VALUES (?, ?, ?, ?, ?, ?)",
                           values)
        raw.commit()
    finally:
        raw.close()
    return store
