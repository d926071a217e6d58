"""Workers as real processes on a real SQLite file and on a real PostgreSQL server: kill -9 at
several points and resume, several workers on one queue, a sweep drained by two workers, a
reader polling at 10 Hz, cancellation from another process, detached runs. Workers are
started exactly as users start them (`python -m inpaint_tui.cli ... worker`), with a short
heartbeat so the tests need not wait.

CI time: each of these takes 10-40 s, so PostgreSQL (the shared-server case) gets the ones
where a shared server matters: kill -9 recovery and resume, racing claims of independent
workers on a sweep, resume by hand under a polling reader. The others are SQLite-only."""

import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

from inpaint_tui.jobs.execute import CRASH_ENV
from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.jobs.sweeps import expand_grid, parse_grid, queue_sweep
from inpaint_tui.store import RunStatus, Store, WorkerStatus
from tests.worker_processes import (
    ENV,
    EVAL,
    FAST,
    assert_exactly_once,
    command,
    queue_small,
    run_cli,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.slow  # real worker processes / a real terminal: minutes
# Why a slow test runs on SQLite alone: what it tests does not depend on the database kind.
NOT_THE_SHARED_CASE = "slow, and nothing in it depends on the database kind (CI time: PostgreSQL gets the shared-server ones)"


def _images(detail):
    return {s.sample_name: np.asarray(Image.open(s.image_path)) for s in detail.samples}


def test_kill_9_between_samples_mid_sample_and_during_metrics_then_resume(database):
    db, store = database
    run_id = queue_small(store, seed=5, steps=4)
    expectations = {
        "after_sample:1": ["done", "done", "pending", "pending", "pending", "pending"],
        "step:3:2": ["done", "done", "done", "running", "pending", "pending"],
        "evaluating": ["done"] * 6,
    }
    for point, statuses in expectations.items():
        worker = start_worker(db, "--once", env={**ENV, CRASH_ENV: point})
        output = worker.communicate(timeout=300)[0]
        assert worker.returncode == -signal.SIGKILL, output
        detail = store.run_detail(run_id)
        assert detail.run.status == RunStatus.RUNNING, point  # as the dead worker left it
        assert [s.status for s in detail.samples] == statuses, point
    assert "bg_mse" not in {name for name, s in store.run_detail(run_id).summaries.items() if s.ci_low is not None}

    reference = queue_small(store, seed=5, steps=4)  # queued after: the surviving worker does it second
    worker = start_worker(db, "--once")
    output = worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, output
    resumed, uninterrupted = assert_exactly_once(store, run_id), assert_exactly_once(store, reference)
    assert [s.attempts for s in resumed.samples] == [1, 1, 1, 2, 1, 1]
    expected = _images(uninterrupted)
    for name, pixels in _images(resumed).items():
        np.testing.assert_array_equal(pixels, expected[name])
    assert [w.status for w in store.workers(include_ended=True)] == [WorkerStatus.LOST] * 3 + [WorkerStatus.STOPPED]


def test_reader_at_10_hz_sees_monotone_progress_through_a_kill_and_a_resume_by_hand(database):
    db, store = database
    run_id = queue_small(store, seed=1, steps=40)
    reader = Store(db)
    seen, errors, stop = [], [], threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                info = reader.run(run_id)
                if info.progress is not None:
                    seen.append((info.progress.worker_id, info.progress.phase, info.progress.samples_done,
                                 info.progress.step))
            except Exception as error:  # "database is locked" would land here
                errors.append(repr(error))
            time.sleep(0.1)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        worker = start_worker(db, "--once")

        def mid_sample():
            progress = reader.run_progress(run_id)
            return progress and progress.phase == "generating" and progress.samples_done >= 1 and 0 < progress.step < 35

        wait_for(mid_sample, timeout=180, interval=0.02)
        os.kill(worker.pid, signal.SIGKILL)  # from outside, as a user's kill -9
        worker.wait(timeout=30)
        interrupted = store.run_detail(run_id)
        assert interrupted.run.status == RunStatus.RUNNING
        assert [s.status for s in interrupted.samples].count("running") == 1

        resume = run_cli(db, "runs", "resume", str(run_id))
        assert resume.returncode == 0, resume.stderr
    finally:
        stop.set()
        thread.join()
    assert errors == []
    detail = assert_exactly_once(store, run_id)
    assert sorted(s.attempts for s in detail.samples) == [1, 1, 1, 1, 1, 2]
    assert len({w for w, *_ in seen}) == 2  # two workers: the killed one and `runs resume`
    for worker_id in {w for w, *_ in seen}:
        mine = [(done, step) for w, phase, done, step in seen if w == worker_id and phase == "generating"]
        assert mine == sorted(mine), mine  # within an attempt: never backwards
    done_counts = [done for _, _, done, _ in seen]
    assert done_counts == sorted(done_counts)  # across the kill too: finished samples stay finished


@pytest.mark.sqlite_only(NOT_THE_SHARED_CASE + "; racing claims on PostgreSQL: the sweep test below")
def test_three_workers_share_one_queue_and_execute_each_run_once(database):
    db, store = database
    runs = [queue_small(store, seed=seed, steps=2) for seed in range(5)]
    supervisor = subprocess.run(command(db, "worker", "--processes", "3", "--once", *FAST), env=ENV,
                                capture_output=True, text=True, timeout=600)
    assert supervisor.returncode == 0, supervisor.stderr
    daemons = [w for w in store.workers(include_ended=True) if w.kind == "daemon"]
    assert len(daemons) == 3 and {w.status for w in daemons} == {WorkerStatus.STOPPED}
    for run_id in runs:
        detail = assert_exactly_once(store, run_id)
        assert [s.attempts for s in detail.samples] == [1] * 6
        assert detail.run.worker_id in {w.id for w in daemons}


def test_two_independent_workers_drain_a_sweep_and_execute_each_run_once(database):
    """As on two boxes sharing one store: two workers started separately (no supervisor)
    claim from one sweep's runs at once; each run is executed once, by one of them."""
    db, store = database
    points = expand_grid(["blended"], parse_grid(["blend_start=0,0.5"]), seeds=[0, 1], steps=[2], guidance=[7.5])
    sweep = queue_sweep(store, points, model="tiny", sample_set="demo", evaluation=EVAL)
    assert len(sweep.new) == 4
    workers = [start_worker(db, "--once") for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    daemons = store.workers(include_ended=True)
    assert len(daemons) == 2 and {w.status for w in daemons} == {WorkerStatus.STOPPED}
    for run_id in sweep.new:
        detail = assert_exactly_once(store, run_id)
        assert [s.attempts for s in detail.samples] == [1] * 6
        assert detail.run.worker_id in {w.id for w in daemons}
    assert store.sweep(sweep.sweep_id).run_ids == sweep.new


@pytest.mark.sqlite_only(NOT_THE_SHARED_CASE)
def test_cancel_from_another_process_stops_the_worker_at_a_step(database):
    db, store = database
    run_id = queue_small(store, steps=60)
    worker = start_worker(db, "--once")
    wait_for(lambda: (p := store.run_progress(run_id)) and p.phase == "generating" and p.step >= 2, timeout=180,
              interval=0.02)
    cancel = run_cli(db, "runs", "cancel", str(run_id))
    assert cancel.returncode == 0 and "cancel requested" in cancel.stderr
    assert worker.wait(timeout=120) == 0  # the queue is empty once the run ended: --once exits
    detail = store.run_detail(run_id)
    assert detail.run.status == RunStatus.CANCELLED
    statuses = [s.status for s in detail.samples]
    assert "running" not in statuses and statuses[-1] == "pending"
    assert len(list((store.data_dir / "runs" / str(run_id)).glob("*.png"))) == statuses.count("done")


def test_workers_stop_ends_a_worker_process_at_a_step_through_the_store(database):
    db, store = database
    run_id = queue_small(store, steps=60)
    worker = start_worker(db)  # no --once: only the stop request ends it
    wait_for(lambda: (p := store.run_progress(run_id)) and p.phase == "generating" and p.step >= 2, timeout=180,
             interval=0.02)
    holder = store.run(run_id).worker_id
    stop = run_cli(db, "workers", "stop")  # no ids: every live worker
    assert stop.returncode == 0 and f"stop requested: worker {holder} (daemon on " in stop.stderr, stop.stderr
    output = worker.communicate(timeout=120)[0]
    assert worker.returncode == 0, output
    assert "stop requested (inpaint-tui workers stop)" in output
    assert store.worker(holder).status == WorkerStatus.STOPPED
    detail = store.run_detail(run_id)
    assert detail.run.status == RunStatus.QUEUED and detail.run.worker_id is None
    assert "running" not in [s.status for s in detail.samples]


@pytest.mark.sqlite_only(NOT_THE_SHARED_CASE)
def test_detached_runs_outlive_their_launcher_and_share_one_worker(database):
    db, store = database
    first = run_cli(db, "run", "-t", "blended", "--steps", "2", "--metrics", "background", "--detach")
    assert first.returncode == 0, first.stderr
    assert "started worker" in first.stderr and "runs watch" in first.stderr
    # The launcher has exited; its run has not even started (the worker is still importing torch).
    assert store.run(int(first.stdout.strip())).status == RunStatus.QUEUED
    second = run_cli(db, "run", "-t", "vanilla", "--steps", "2", "--metrics", "background", "--detach")
    assert second.returncode == 0, second.stderr
    assert "queued for worker" in second.stderr  # the live worker is reused, not a second one started
    run_ids = [int(first.stdout.strip()), int(second.stdout.strip())]

    wait_for(lambda: all(store.run(r).status in RunStatus.ENDED for r in run_ids), timeout=300, interval=0.2)
    for run_id in run_ids:
        assert_exactly_once(store, run_id)
    daemons = [w for w in store.workers(include_ended=True) if w.kind == "daemon"]
    assert len(daemons) == 1 and {store.run(r).worker_id for r in run_ids} == {daemons[0].id}
    log = db.with_suffix(".worker.log")
    assert log.is_file() and f"worker {daemons[0].id} started" in log.read_text()
    # With nothing left to do it exits on its own (INPAINT_TUI_IDLE_EXIT=3), freeing the GPU.
    wait_for(lambda: store.worker(daemons[0].id).status == WorkerStatus.STOPPED, timeout=60, interval=0.2)


def test_a_run_keeps_the_cpu_thread_count_it_first_ran_with(tmp_path, tiny_model):
    """Issue 13's reproducibility defect: pixels depend on torch's thread count, so the first
    worker records it and a later one (resuming) uses it."""
    import torch

    from inpaint_tui.jobs.worker import execute_run

    store = Store(tmp_path / "threads.db")
    ensure_demo(store)
    try:
        torch.set_num_threads(1)
        first = queue_small(store)
        assert execute_run(store, first, device="cpu") == "finished"
        assert store.run(first).options["threads"] == 1
        torch.set_num_threads(2)  # a worker with another default takes up an identical run recorded at 1 thread
        second = queue_small(store, options={"threads": 1})
        seen = []
        def generating(progress) -> None:
            if progress.phase == "generating":
                seen.append(torch.get_num_threads())

        assert execute_run(store, second, device="cpu", on_progress=generating) == "finished"
        assert seen and set(seen) == {1}
        images = [[np.asarray(Image.open(s.image_path)) for s in store.run_detail(r).samples] for r in (first, second)]
        for a, b in zip(*images):
            np.testing.assert_array_equal(a, b)
        torch.set_num_threads(2)
        third = queue_small(store)
        execute_run(store, third, device="cpu")
        assert store.run(third).options["threads"] == 2
    finally:
        torch.set_num_threads(2)  # the session's pinned count (tests/conftest.py tiny_model)
        store.close()
