"""A database for TUI tests, built through the store's own API without torch: the demo
samples; finished runs of three techniques with deterministic metrics and images; a running
run with live progress and a worker; a failed run; a cancelled run; a sweep. Times are fixed
so snapshots do not change from one test run to the next."""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone

import numpy as np
from PIL import Image
from sqlalchemy import text

from inpaint_tui.jobs.evaluate import summarize_samples
from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.jobs.sweeps import expand_grid, parse_grid, queue_sweep
from inpaint_tui.store import Store
from tests.conftest import queue as queue_spec

EVAL = {"groups": ["background"], "models": "tiny"}
CREATED = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)


def _output(sample, shift: int) -> bytes:
    """A deterministic 'output': the input with its masked region tinted by `shift`."""
    with Image.open(sample.image_path) as opened:
        pixels = np.asarray(opened.convert("RGB").resize((64, 64)), dtype=np.int16)
    with Image.open(sample.mask_path) as opened:
        mask = np.asarray(opened.convert("L").resize((64, 64))) > 127
    pixels[mask] = (pixels[mask] + shift) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _finish(store: Store, run_id: int, worker: int, quality: float, *, fail: set[int] = frozenset()) -> None:
    claim = store.claim_run(run_id, worker)
    store.set_run_device(run_id, "cpu (float32)", claim=claim)
    for position, (row, sample) in enumerate(store.pending_samples(run_id)):
        store.mark_sample_running(run_id, sample.id, claim=claim)
        if position in fail:
            store.record_sample(run_id, sample.id, image_path=None, metrics={}, seconds=None, width=None, height=None,
                                error="RuntimeError: boom", traceback="Traceback (most recent call last):\n  boom",
                                claim=claim)
            continue
        path = store.save_output(run_id, row.position, sample.name, _output(sample, int(quality * 40) + position))
        metrics = {"bg_mse": quality * 0.01 + position * 0.001, "bg_psnr": 30 - quality * 5 + position * 0.1,
                   "unet_calls": 20.0, "seconds": 1.0 + position * 0.1}
        store.record_sample(run_id, sample.id, image_path=path, metrics=metrics, seconds=metrics["seconds"], width=64,
                            height=64, claim=claim)
    summarize_samples(store, run_id)
    store.finish_run(run_id, claim=claim)


def build(path) -> Store:
    store = Store(path)
    ensure_demo(store)
    # A worker of another box that sees the data root at its own path (the id is what must match).
    worker = store.register_worker("daemon", device="cuda:0", pid=None, data_root="/mnt/lab/inpaint_data",
                                   data_root_id=store.data_root_id)

    def queue(technique, seed=0, **params):
        return queue_spec(store, technique=technique, params=params or None, model="tiny", sample_set="demo",
                         seed=seed, steps=20, guidance=7.5, eval_config=EVAL)

    finished = [queue("vanilla"), queue("blended", progressive_shrink=2), queue("tdpaint")]
    for run_id, quality in zip(finished, (3.0, 1.0, 2.0)):
        _finish(store, run_id, worker, quality)
    failed = queue("repaint")
    _finish(store, failed, worker, 0.0, fail=set(range(6)))
    with_errors = queue("latentpaint")
    _finish(store, with_errors, worker, 1.5, fail={4})
    cancelled = queue("diffdiff")
    store.request_cancel(cancelled)

    sweep_points = expand_grid(["blended"], parse_grid(["blend_start=0,0.25"]), seeds=[0], steps=[20], guidance=[7.5])
    swept = queue_sweep(store, sweep_points, model="tiny", sample_set="demo", evaluation=EVAL)
    for run_id, quality in zip(swept.new, (1.2, 0.8)):
        _finish(store, run_id, worker, quality)

    running = queue("blended", seed=1)
    claim = store.claim_run(running, worker)
    store.set_run_device(running, "cuda:0 (float16)", claim=claim)
    rows = store.pending_samples(running)
    for row, sample in rows[:2]:
        store.mark_sample_running(running, sample.id, claim=claim)
        output = store.save_output(running, row.position, sample.name, _output(sample, 9))
        store.record_sample(running, sample.id, image_path=output, metrics={"bg_mse": 0.02}, seconds=1.0, width=64,
                            height=64, claim=claim)
    store.mark_sample_running(running, rows[2][1].id, claim=claim)
    preview = store.save_run_file(running, "preview.png", _output(rows[2][1], 30))
    store.write_progress(running, claim, worker, phase="generating", samples_done=2, sample_count=6,
                         sample_position=2, sample_name=rows[2][1].name, step=7, steps=20, steps_per_second=3.5,
                         seconds_per_sample=6.0, preview_path=preview, preview_step=5)
    queued = queue("vanilla", seed=2)

    with store.engine.begin() as connection:  # fixed times: snapshots must not depend on the clock
        connection.execute(text("UPDATE run SET created_at = :t, started_at = :t, finished_at = "
                                "CASE WHEN finished_at IS NULL THEN NULL ELSE :t END"), {"t": CREATED})
        connection.execute(text("UPDATE worker SET started_at = :now, heartbeat_at = :now, host = 'gpu-box-1'"),
                           {"now": time.time()})
        connection.execute(text("UPDATE run SET git_commit = '0123456789abcdef', versions = :v"),
                           {"v": '{"python": "3.11", "inpaint-tui": "0.1.0", "torch": "2.x", "diffusers": "0.x"}'})
    store.ids = dict(finished=finished, failed=failed, with_errors=with_errors, cancelled=cancelled, running=running,
                     queued=queued, swept=swept.new, sweep=swept.sweep_id, worker=worker)
    return store
