"""What the worker-process tests share (tests/store/test_workers.py, test_worker_failures.py):
the environment and command lines of real `inpaint-tui` processes, polling, queueing the
standard small run, and the "every sample done exactly once" check. `db` is what `--db` gets:
an SQLite file or a PostgreSQL URL (the `database` fixture gives either)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from inpaint_tui.jobs.execute import CRASH_ENV
from inpaint_tui.store import RunStatus
from inpaint_tui.store.db import BUSY_TIMEOUT_ENV, DATA_ENV
from tests.conftest import queue, sql

FAST = ["--heartbeat", "0.2", "--stale-after", "3"]
# Same thread count in every process: pixel-exact comparisons depend on it.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "2",
       "INPAINT_TUI_IDLE_EXIT": "3"}
ENV.pop(CRASH_ENV, None)
ENV.pop(BUSY_TIMEOUT_ENV, None)
# Built when first imported, which may be inside a test whose `db` fixture has set the data
# folder for itself: later tests' processes must not inherit that folder.
ENV.pop(DATA_ENV, None)
EVAL = {"groups": ["background"], "models": "tiny"}


def command(db, *args, data_dir=None) -> list[str]:
    extra = ["--data-dir", str(data_dir)] if data_dir is not None else []
    return [sys.executable, "-m", "inpaint_tui.cli", "--db", str(db), *extra, *args]


def run_cli(db, *args, data_dir=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(command(db, *args, data_dir=data_dir), capture_output=True, text=True, env=env or ENV,
                          timeout=timeout)


def start_worker(db, *args, env=None) -> subprocess.Popen:
    return subprocess.Popen(command(db, "worker", *FAST, *args), env=env or ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout=120.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_mid_run(store, run_id: int, timeout: float = 180.0) -> None:
    """Until the run's worker is generating its second to fifth of six samples. Sample
    boundaries are always written; step rows are throttled, so waiting for "step >= N" of a
    short sample can wait forever on a fast machine (CI did)."""
    wait_for(lambda: (p := store.run_progress(run_id)) and p.phase == "generating" and 1 <= p.samples_done <= 4,
             timeout=timeout, interval=0.01)


def queue_small(store, **overrides) -> int:
    """The standard small run: blended, 3 steps, background metrics, on the demo set."""
    settings = dict(technique="blended", params=None, model="tiny", sample_set="demo", seed=0, steps=3, guidance=7.5,
                    eval_config=EVAL)
    settings.update(overrides)
    return queue(store, **settings)


def assert_exactly_once(store, run_id):
    """Every sample done once: one row each, one bg_mse each and one run summary, the folder
    holds exactly the outputs (no orphans, no temporaries), the database intact."""
    detail = store.run_detail(run_id)
    assert detail.run.status == RunStatus.FINISHED, detail.run.error
    assert [s.status for s in detail.samples] == ["done"] * detail.run.sample_count
    folder = store.data_dir / "runs" / str(run_id)
    assert sorted(folder.iterdir()) == sorted(s.image_path for s in detail.samples)
    assert sql(store.url, "SELECT COUNT(*), COUNT(DISTINCT run_sample_id) FROM metric WHERE run_id = :r "
               "AND name = 'bg_mse'", r=run_id) == [(detail.run.sample_count, detail.run.sample_count)]
    assert sql(store.url, "SELECT COUNT(*) FROM run_metric WHERE run_id = :r AND name = 'bg_mse'", r=run_id) == [(1,)]
    if store.engine.dialect.name == "sqlite":
        assert sql(store.url, "PRAGMA integrity_check") == [("ok",)]
    return detail


def kill_workers(store) -> None:
    for worker in store.workers():  # never leave a worker behind, whatever failed
        if worker.pid and worker.pid != os.getpid():
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

