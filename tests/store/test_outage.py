"""A database server outage in the middle of a run, for real: a worker process executes a run
on the test PostgreSQL server (tests/postgres.py), the server is stopped for 60 s while the
worker is generating and then started again on the same port and data. The run must finish
with every sample once, the worker must exit 0 without a traceback, and each kind of failed
write must be logged once (and its recovery once), however many times it failed."""

import re
import time

import pytest

from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.store import Store
from inpaint_tui.store.db import DATA_ENV
from tests import worker_processes
from tests.worker_processes import assert_exactly_once, kill_workers, queue_small, start_worker, wait_for

pytestmark = pytest.mark.slow  # a 60 s outage on purpose

OUTAGE_SECONDS = 60


def test_a_60_s_server_outage_mid_run_ends_with_the_run_finished_and_every_sample_once(
        postgres, postgres_url, tmp_path, monkeypatch):
    store = Store(postgres_url, data_dir=tmp_path / "data")
    monkeypatch.setitem(worker_processes.ENV, DATA_ENV, str(store.data_dir))
    try:
        ensure_demo(store)
        run_id = queue_small(store, seed=2, steps=4)
        worker = start_worker(postgres_url, "--once")

        def generating():
            progress = store.run_progress(run_id)
            return progress is not None and progress.phase == "generating" and 1 <= progress.samples_done < 5

        wait_for(generating, timeout=180, interval=0.02)
        with postgres.down():
            time.sleep(OUTAGE_SECONDS)
        output = worker.communicate(timeout=600)[0]
        assert worker.returncode == 0, output
        assert "Traceback" not in output, output
        assert_exactly_once(store, run_id)

        failed = re.findall(r" WARNING (.+?) failed \(", output)
        recovered = re.findall(r" WARNING (.+?) works again after \d+ failure", output)
        assert "recording a sample" in failed or "marking a sample running" in failed, output  # hit mid-run
        assert len(failed) == len(set(failed)), output  # one line per kind for the whole outage
        assert sorted(recovered) == sorted(failed), output
    finally:
        kill_workers(store)
        store.close()


def test_the_first_worker_back_after_an_outage_leaves_the_busy_ones_alive(postgres, postgres_url, tmp_path):
    """Every heartbeat is silent during an outage. An idle worker, back first, must give the
    others time to beat again before judging silence (else it would declare every busy worker
    lost and their runs restarted), and then still reap a worker that truly died."""
    import threading

    from inpaint_tui.jobs.worker import Worker
    from inpaint_tui.store import RunStatus, WorkerStatus

    stale_after = 3.0
    store = Store(postgres_url, data_dir=tmp_path / "data")
    idle = Worker(Store(postgres_url, data_dir=tmp_path / "data"), heartbeat=0.2, stale_after=stale_after)
    serving = threading.Thread(target=lambda: idle.serve(poll=0.1))
    try:
        ensure_demo(store)
        run_id = queue_small(store)
        busy, dead = store.register_worker("daemon"), store.register_worker("daemon")
        assert store.claim_next_run(busy)[0] == run_id
        with idle:
            serving.start()
            with postgres.down():
                time.sleep(stale_after + 1)  # longer than the staleness limit
            time.sleep(1.0)  # the busy worker's heartbeat comes a beat after the server is back
            deadline = time.monotonic() + 2 * stale_after
            while time.monotonic() < deadline:
                assert store.heartbeat(busy) is True, "the busy worker was declared lost"
                time.sleep(0.2)
            wait_for(lambda: store.worker(dead).status == WorkerStatus.LOST, timeout=30)
            idle.request_stop()
            serving.join(timeout=30)
        assert store.worker(busy).status == WorkerStatus.RUNNING
        assert store.run(run_id).status == RunStatus.RUNNING and store.run(run_id).worker_id == busy
    finally:
        idle.request_stop()
        idle.store.close()
        store.close()
