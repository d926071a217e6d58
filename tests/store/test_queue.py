"""The queue in one process: claims, heartbeats and stale workers, cancellation, resume,
delete, progress rows, previews and animations, sweeps. Real SQLite files and a real
PostgreSQL server (each test on both); separate `Store` objects (separate connections) stand
in for separate processes where it matters. The
multi-process behaviour (kill -9, several workers, detach) is in test_workers.py."""

import os
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, text

from engine.params import ParamError
from inpaint_tui.jobs.execute import RunProgress
from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.jobs.sweeps import expand_grid, expand_techniques, parse_grid, queue_sweep
from inpaint_tui.jobs.worker import Worker, execute_run
from inpaint_tui.store import ClaimLost, RunBusy, RunStatus, Store, StoreError, WorkerStatus
from inpaint_tui.store.db import server_epoch
from inpaint_tui.store.queue import RunControl
from tests.conftest import queue, sql, upgrade_to

BACKGROUND_ONLY = {"groups": ["background"], "models": "tiny"}


def _queue(store, technique="blended", **overrides):
    settings = dict(technique=technique, params=None, model="tiny", sample_set="demo", seed=0, steps=3, guidance=7.5,
                    eval_config=BACKGROUND_ONLY)
    settings.update(overrides)
    return queue(store, **settings)


def _images(store, run_id):
    return {s.sample_name: np.asarray(Image.open(s.image_path)) for s in store.run_detail(run_id).samples}


def test_a_database_at_the_first_schema_is_upgraded_in_place(empty_db):
    upgrade_to(empty_db, "0001")
    sql(empty_db,
        "INSERT INTO run (technique, params, model, seed, steps, guidance, negative_prompt, sample_set, status, "
        "config_hash, versions, eval_config, sample_count, created_at) VALUES ('blended', '{}', 'tiny', 0, 2, 7.5, "
        "'', 'demo', 'finished', 'h', '{}', '{}', 0, '2026-01-01 00:00:00')")
    store = Store(empty_db)
    run = store.run(1)
    assert (run.status, run.options, run.cancel_requested, run.worker_id) == ("finished", {}, False, None)
    assert store.workers() == [] and store.sweeps() == []


def test_concurrent_claims_take_each_run_exactly_once(db):
    store = Store(db)
    ensure_demo(store)
    runs = [_queue(store, seed=seed) for seed in range(12)]
    claims: dict[int, list[int]] = {}
    lock = threading.Lock()

    def claimer() -> None:
        own = Store(db)  # its own engine and connections, as another process
        worker = own.register_worker("daemon", pid=None)
        while (claimed := own.claim_next_run(worker)) is not None:
            with lock:
                claims.setdefault(claimed[0], []).append(worker)
        own.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claims) == runs
    assert all(len(workers) == 1 for workers in claims.values())
    assert {info.status for info in store.runs()} == {RunStatus.RUNNING}
    assert all(store.run(r).worker_id == claims[r][0] for r in runs)


def test_a_worker_prefers_runs_on_the_model_it_has_loaded(store):
    ensure_demo(store)
    first = _queue(store, model="sd15")
    second = _queue(store)
    worker = store.register_worker("daemon")
    assert store.claim_next_run(worker, prefer_model="tiny")[0] == second
    assert store.claim_next_run(worker, prefer_model="tiny")[0] == first
    assert store.claim_next_run(worker) is None


def test_a_silent_worker_is_declared_lost_and_its_run_requeued_under_a_new_claim(store):
    ensure_demo(store)
    run_id = _queue(store)
    worker = store.register_worker("daemon", pid=None)
    run, claim = store.claim_next_run(worker)
    first_sample = store.pending_samples(run_id)[0][1].id
    store.mark_sample_running(run_id, first_sample, claim=claim)
    store.write_progress(run_id, claim, worker, phase="generating", step=1, steps=3)
    assert store.check_claim(run_id, claim) == RunControl.CONTINUE

    assert store.reap_stale_workers(stale_after=60) == []  # fresh heartbeat: left alone
    time.sleep(0.3)
    assert store.reap_stale_workers(stale_after=0.2) == [run_id]
    assert store.worker(worker).status == WorkerStatus.LOST
    info = store.run(run_id)
    assert info.status == RunStatus.QUEUED and info.worker_id is None and info.progress is None
    assert store.run_detail(run_id).samples[0].status == "pending"
    assert store.heartbeat(worker) is False  # the lost worker learns it must stop

    # The old claim is void: the presumed-dead worker cannot write, the next claimer can.
    assert store.check_claim(run_id, claim) == RunControl.LOST
    with pytest.raises(ClaimLost):
        store.record_sample(run_id, first_sample, image_path=None, metrics={}, seconds=None, width=None, height=None,
                            claim=claim)
    successor = store.register_worker("daemon")
    _, new_claim = store.claim_next_run(successor)
    assert new_claim == claim + 1
    store.mark_sample_running(run_id, first_sample, claim=new_claim)
    assert store.run_detail(run_id).samples[0].attempts == 2


def test_a_worker_whose_process_is_gone_is_lost_at_once(store):
    import subprocess
    import sys

    ensure_demo(store)
    run_id = _queue(store)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    worker = store.register_worker("daemon", pid=process.pid)
    store.claim_next_run(worker)
    assert store.reap_stale_workers(stale_after=3600) == [run_id]  # no waiting for the heartbeat to age


def test_a_dead_pid_on_another_box_with_the_same_hostname_waits_for_its_heartbeat(store):
    """Two boxes (or containers) with one hostname: a pid absent here says nothing about the
    other box, so only the heartbeat decides there."""
    import subprocess
    import sys

    ensure_demo(store)
    run_id = _queue(store)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    worker = store.register_worker("daemon", pid=process.pid)
    store.claim_next_run(worker)
    sql(store.url, "UPDATE worker SET host_id = 'another-box/1' WHERE id = :w", w=worker)
    assert store.worker(worker).host == socket.gethostname()  # the same hostname as this box
    assert store.reap_stale_workers(stale_after=3600) == []
    assert store.worker(worker).status == WorkerStatus.RUNNING and store.run(run_id).status == RunStatus.RUNNING


def test_heartbeats_and_staleness_are_judged_by_the_database_clock(store, monkeypatch):
    """A client whose clock is an hour off neither declares a fresh worker lost (fast clock)
    nor keeps a silent one alive (slow clock), and its heartbeats carry the server's time."""
    def server_now() -> float:
        with store.engine.connect() as connection:
            return connection.execute(select(server_epoch(store.engine.dialect.name))).scalar()

    fresh = store.register_worker("daemon", pid=None)
    silent = store.register_worker("daemon", pid=None)
    sql(store.url, "UPDATE worker SET heartbeat_at = :t WHERE id = :w", t=server_now() - 120, w=silent)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # this process's clock runs an hour fast
    assert store.reap_stale_workers(stale_after=60) == []
    assert store.worker(fresh).status == WorkerStatus.IDLE
    assert store.worker(silent).status == WorkerStatus.LOST
    assert store.heartbeat(fresh) is True
    assert abs(store.worker(fresh).heartbeat_at - server_now()) < 60
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # an hour slow
    sql(store.url, "UPDATE worker SET heartbeat_at = :t WHERE id = :w", t=server_now() - 120, w=fresh)
    assert store.reap_stale_workers(stale_after=60) == []
    assert store.worker(fresh).status == WorkerStatus.LOST


def test_a_claim_passes_over_a_run_another_claimer_has_locked(postgres_url, tmp_path):
    """PostgreSQL: FOR UPDATE SKIP LOCKED. While another transaction holds the oldest queued
    run's row, a claim takes the next run at once instead of waiting for that transaction."""
    import psycopg
    from sqlalchemy.engine import make_url

    store = Store(postgres_url, data_dir=tmp_path / "data")
    holder = None
    try:
        ensure_demo(store)
        first, second = _queue(store), _queue(store, seed=1)
        parsed = make_url(postgres_url)
        holder = psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database)
        holder.execute("SELECT id FROM run WHERE id = %s FOR UPDATE", (first,))
        # Without SKIP LOCKED the claim would wait for the holder: end its lock after a while,
        # so such a claim returns (with the wrong run) and the test fails instead of hanging.
        release = threading.Timer(20, holder.rollback)
        release.start()
        worker = store.register_worker("daemon")
        claimed = store.claim_next_run(worker)
        release.cancel()
        assert claimed is not None and claimed[0] == second
        assert store.run(first).status == RunStatus.QUEUED
    finally:
        if holder is not None:
            holder.close()
        store.close()


def test_a_stop_requested_in_the_store_holds_until_the_worker_has_stopped(store):
    ensure_demo(store)
    run_id = _queue(store)
    worker = store.register_worker("daemon", pid=os.getpid())
    assert store.request_worker_stop(worker).status == WorkerStatus.STOPPING
    # Neither a claim, nor the worker's own status updates, nor adopting its row undo the request.
    _, claim = store.claim_next_run(worker)
    assert store.worker(worker).status == WorkerStatus.STOPPING
    assert store.heartbeat(worker, status=WorkerStatus.IDLE) is False  # told at every beat
    assert store.register_worker("daemon", worker_id=worker) == worker
    assert store.worker(worker).status == WorkerStatus.STOPPING
    assert store.reap_stale_workers(stale_after=3600) == []  # still alive: its run is not orphaned
    store.release_run(run_id, claim)
    store.stop_worker(worker)
    assert store.worker(worker).status == WorkerStatus.STOPPED and store.run(run_id).status == RunStatus.QUEUED
    with pytest.raises(StoreError, match=f"worker {worker} is not running \\(status stopped\\)"):
        store.request_worker_stop(worker)
    with pytest.raises(StoreError, match="no worker 99 "):
        store.request_worker_stop(99)


def test_a_worker_sees_a_stop_request_at_its_next_heartbeat(store):
    ensure_demo(store)
    with Worker(store, heartbeat=0.05) as worker:
        store.request_worker_stop(worker.id)
        assert worker.stop_requested.wait(timeout=30)
        assert worker.serve(poll=0.05) == 0  # a stopped worker claims nothing
    assert store.worker(worker.id).status == WorkerStatus.STOPPED


def test_cancel_resume_and_delete_follow_the_run_state(store):
    ensure_demo(store)
    queued = _queue(store)
    assert store.request_cancel(queued) == RunStatus.CANCELLED
    with pytest.raises(StoreError, match="already ended"):
        store.request_cancel(queued)

    running = _queue(store)
    worker = Worker(store).__enter__()
    try:
        _, claim = store.claim_next_run(worker.id)
        assert store.request_cancel(running) == RunStatus.RUNNING
        assert store.check_claim(running, claim) == RunControl.CANCEL
        with pytest.raises(RunBusy, match="cancel it first"):
            store.requeue_for_resume(running, stale_after=60)
        with pytest.raises(RunBusy, match="cancel it first"):
            store.delete_run(running, stale_after=60)
    finally:
        worker.__exit__(None, None, None)
    # Its worker stopped without finishing it: the run is an orphan, resumable and deletable.
    store.requeue_for_resume(running, stale_after=60)
    info = store.run(running)
    assert info.status == RunStatus.QUEUED and not info.cancel_requested

    with pytest.raises(StoreError, match="nothing to resume"):
        finished = _queue(store)
        execute_run(store, finished, device="cpu")
        store.requeue_for_resume(finished, stale_after=60)
    files = list((store.data_dir / "runs" / str(finished)).iterdir())
    assert len(files) == 6
    assert store.delete_run(finished, stale_after=60) == 6
    assert not (store.data_dir / "runs" / str(finished)).exists()
    with store.engine.connect() as connection:
        for table in ("run_sample", "metric", "run_progress"):
            assert connection.execute(text(f"SELECT COUNT(*) FROM {table} WHERE run_id = :r"), {"r": finished}).scalar() == 0


def test_cancel_takes_effect_within_one_step_and_resume_completes_identically(db, tiny_model):
    store = Store(db)
    ensure_demo(store)
    reference = _queue(store, seed=3, steps=6)
    execute_run(store, reference, device="cpu")
    run_id = _queue(store, seed=3, steps=6)
    other_process = Store(db)
    seen: list[tuple[int, int]] = []
    requested_at: list[int] = []

    def cancel_mid_sample(progress: RunProgress) -> None:
        seen.append((progress.samples_done, progress.step))
        if progress.samples_done == 1 and progress.step == 3 and not requested_at:
            other_process.request_cancel(run_id)
            requested_at.append(len(seen))

    assert execute_run(store, run_id, device="cpu", on_progress=cancel_mid_sample) == RunStatus.CANCELLED
    # The step in flight when the request landed finished; its callback raised before reporting.
    assert seen[requested_at[0]:] == []
    detail = store.run_detail(run_id)
    assert [s.status for s in detail.samples] == ["done"] + ["pending"] * 5
    assert detail.run.status == RunStatus.CANCELLED and detail.run.progress is None

    store.requeue_for_resume(run_id, stale_after=60)
    assert execute_run(store, run_id, device="cpu") == RunStatus.FINISHED
    expected, resumed = _images(store, reference), _images(store, run_id)
    assert expected.keys() == resumed.keys()
    for name in expected:
        np.testing.assert_array_equal(resumed[name], expected[name])
    assert [s.attempts for s in store.run_detail(run_id).samples] == [1, 2, 1, 1, 1, 1]


def test_a_stopping_worker_hands_its_run_back_to_the_queue(store, tiny_model):
    ensure_demo(store)
    run_id = _queue(store, steps=4)
    with Worker(store, kind="daemon", device="cpu") as worker:
        def stop_in_second_sample(progress: RunProgress) -> None:
            if progress.samples_done == 1 and progress.step == 2:
                worker.request_stop()

        assert worker.execute(run_id, on_progress=stop_in_second_sample) == RunStatus.QUEUED
    detail = store.run_detail(run_id)
    assert detail.run.status == RunStatus.QUEUED and detail.run.worker_id is None
    assert [s.status for s in detail.samples] == ["done"] + ["pending"] * 5


def test_progress_rows_previews_and_animations(db, tiny_model):
    store = Store(db)
    ensure_demo(store)
    plain = _queue(store, steps=4)
    execute_run(store, plain, device="cpu")
    watched = _queue(store, steps=4, options={"preview_every": 2, "animation": "gif"})
    reader = Store(db)
    snapshots = []

    def look(progress: RunProgress) -> None:
        row = reader.run_progress(watched)
        if row is not None:
            snapshots.append(row)

    assert execute_run(store, watched, device="cpu", on_progress=look) == RunStatus.FINISHED
    phases = [s.phase for s in snapshots]
    assert phases[0] == "loading" and "generating" in phases and phases[-1] == "evaluating"
    generating = [s for s in snapshots if s.phase == "generating"]
    assert all(s.sample_count == 6 and s.steps == 4 for s in generating)
    assert [s.samples_done for s in generating] == sorted(s.samples_done for s in generating)
    with_preview = [s for s in generating if s.preview_path is not None]
    assert with_preview and all(s.preview_step in (2, 4) for s in with_preview)
    # Step rows (step > 0) are throttled: at least PROGRESS_INTERVAL apart; a sample's start and
    # end (step 0) are written at once, and do not hold back the next step row.
    from inpaint_tui.jobs.execute import PROGRESS_INTERVAL

    rows = list({s.updated_at: s for s in generating}.values())
    step_rows = [row for row in rows if row.step > 0]
    assert step_rows
    assert all(b.updated_at - a.updated_at >= PROGRESS_INTERVAL * 0.9 for a, b in zip(step_rows, step_rows[1:]))
    boundaries = sum((a.sample_name, a.samples_done) != (b.sample_name, b.samples_done) for a, b in zip(rows, rows[1:]))
    assert boundaries >= 5  # 6 samples: every start after the first was seen

    # Previews and animations never change the images; the preview file goes with the run's end.
    plain_images, watched_images = _images(store, plain), _images(store, watched)
    for name in plain_images:
        np.testing.assert_array_equal(watched_images[name], plain_images[name])
    folder = store.data_dir / "runs" / str(watched)
    assert not (folder / "preview.png").exists() and store.run_progress(watched) is None
    for s in store.run_detail(watched).samples:
        assert s.animation_path is not None and s.animation_path.suffix == ".gif"
        with Image.open(s.animation_path) as animation:
            assert animation.is_animated and animation.size[0] <= 256
    assert sorted(p.suffix for p in folder.iterdir()) == [".gif"] * 6 + [".png"] * 6


def test_a_batched_run_records_every_sample_as_batch_one_does_and_resumes_after_a_cancel(db, tiny_model):
    """batch_size=4 over the six demo samples (of several working sizes): every sample is
    recorded on its own, its pixels within one 8-bit level of batch 1's (the kernels'
    batch-size rounding; exact equality is tests/engine/test_batching.py's), and a cancel
    in the middle of a batch puts all of that batch's samples back to pending."""
    store = Store(db)
    ensure_demo(store)
    alone = _queue(store, seed=3, steps=4)
    assert execute_run(store, alone, device="cpu") == RunStatus.FINISHED
    batched = _queue(store, seed=3, steps=4, options={"batch_size": 4})
    assert store.run(batched).options["batch_size"] == 4
    other_process = Store(db)
    seen = []

    def cancel_in_the_first_batch(progress: RunProgress) -> None:
        seen.append((progress.samples_done, progress.step))
        if progress.step == 2 and len(seen) < 20:
            other_process.request_cancel(batched)

    assert execute_run(store, batched, device="cpu", on_progress=cancel_in_the_first_batch) == RunStatus.CANCELLED
    assert [s.status for s in store.run_detail(batched).samples] == ["pending"] * 6
    store.requeue_for_resume(batched, stale_after=60)
    assert execute_run(store, batched, device="cpu") == RunStatus.FINISHED
    detail = store.run_detail(batched)
    assert [s.status for s in detail.samples] == ["done"] * 6
    expected, got = _images(store, alone), _images(store, batched)
    assert expected.keys() == got.keys()
    for name in expected:
        assert np.abs(got[name].astype(int) - expected[name].astype(int)).max() <= 1, name
    reference = {s.sample_name: s.metrics["unet_calls"] for s in store.run_detail(alone).samples}
    assert {s.sample_name: s.metrics["unet_calls"] for s in detail.samples} == reference


def test_run_options_are_validated_with_clear_messages(store):
    ensure_demo(store)
    with pytest.raises(ParamError, match="animation must be one of gif, webp"):
        _queue(store, options={"animation": "mp4"})
    with pytest.raises(ParamError, match="preview_every"):
        _queue(store, options={"preview_every": -1})
    with pytest.raises(ParamError, match="unknown run option"):
        _queue(store, options={"speed": "fast"})
    with pytest.raises(ParamError, match="batch_size must be a whole number >= 1 or 'auto', got 0"):
        _queue(store, options={"batch_size": 0})
    with pytest.raises(ParamError, match="batch_size must be a whole number >= 1 or 'auto', got 'many'"):
        _queue(store, options={"batch_size": "many"})
    assert "batch_size" not in store.run(_queue(store, options={"batch_size": "1"})).options
    assert store.run(_queue(store, options={"batch_size": "auto"})).options["batch_size"] == "auto"


def test_sweep_grid_order_swept_values_and_errors():
    points = expand_grid(["blended"], parse_grid(["progressive_shrink=0,1,2", "blend_start=0,0.25"]),
                         seeds=[0, 1], steps=[5], guidance=[7.5])
    assert len(points) == 12
    assert [(p.params["progressive_shrink"], p.params["blend_start"], p.seed) for p in points[:4]] == [
        (0, 0.0, 0), (0, 0.0, 1), (0, 0.25, 0), (0, 0.25, 1)]
    assert points[3].swept == {"progressive_shrink": 0, "blend_start": 0.25, "seed": 1}
    everything = expand_techniques(["all"])
    assert len(everything) >= 6 and len(expand_grid(everything, {}, seeds=[0], steps=[2], guidance=[7.5])) == len(everything)
    assert expand_grid(everything, {"background": ["paste"]}, seeds=[0], steps=[2], guidance=[1, 7.5])[1].swept == {
        "technique": everything[0], "guidance": 7.5}
    with pytest.raises(ParamError, match="technique 'vanilla' has no parameter 'progressive_shrink'"):
        expand_grid(["blended", "vanilla"], {"progressive_shrink": ["0", "1"]}, seeds=[0], steps=[2], guidance=[7.5])
    with pytest.raises(ParamError, match="empty value"):
        parse_grid(["progressive_shrink=0,,1"])
    with pytest.raises(ParamError, match="given twice"):
        parse_grid(["blend_start=0", "blend_start=0.5"])
    with pytest.raises(ParamError, match="progressive_shrink"):
        expand_grid(["blended"], parse_grid(["progressive_shrink=lots"]), seeds=[0], steps=[2], guidance=[7.5])


def test_a_sweep_reuses_identical_runs_unless_forced(store, tiny_model):
    ensure_demo(store)
    points = expand_grid(["blended"], parse_grid(["blend_start=0,0.5"]), seeds=[0], steps=[2], guidance=[7.5])
    settings = dict(model="tiny", sample_set="demo", evaluation=BACKGROUND_ONLY)
    first = queue_sweep(store, points, **settings)
    assert len(first.new) == 2 and first.reused == []
    for run_id in first.new:
        execute_run(store, run_id, device="cpu")
    again = queue_sweep(store, points, **settings)
    assert again.new == [] and again.reused == first.new and again.run_ids == first.new
    assert store.sweep(again.sweep_id).reused == [True, True]
    forced = queue_sweep(store, points, force=True, **settings)
    assert len(forced.new) == 2 and set(forced.new).isdisjoint(first.new)
    # Other evaluation settings or another seed are not identical.
    other = queue_sweep(store, points, model="tiny", sample_set="demo", evaluation={"groups": ["background", "clip"],
                                                                                    "models": "tiny"})
    assert other.reused == []
    # A sample set whose members changed is not identical either.
    from inpaint_tui.jobs.samples import ImportOptions, import_source

    import_source(store, "demo", ImportOptions(set_name="demo-copy"))
    assert queue_sweep(store, points, model="tiny", sample_set="demo-copy", evaluation=BACKGROUND_ONLY).reused == []
    info = store.sweep(first.sweep_id)
    assert info.points == [{"blend_start": 0.0}, {"blend_start": 0.5}] and info.reused == [False, False]
