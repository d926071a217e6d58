"""Failures a long GPU job meets, with real SQLite files and real worker processes: a full
disk under the data folder, a write lock held past the busy timeout, non-finite outputs, an
error escaping a run, and a killed worker left as a zombie (also on a real PostgreSQL server). Each ends with the run in a final
state (or re-queued) and nothing lost: a resume completes it with every sample done once."""

import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.jobs.worker import STALE_AFTER_SECONDS
from inpaint_tui.store import RunStatus, Store, WorkerStatus
from inpaint_tui.store.db import BUSY_TIMEOUT_ENV
from inpaint_tui.store.files import atomic_write
from inpaint_tui.store.queue import _process_exists
from tests.worker_processes import (ENV, assert_exactly_once, command, kill_workers, queue_small, run_cli, wait_for,
                                    wait_mid_run)

def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp")) if folder.is_dir() else []


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rpartition(b")")[2].split()[0].decode()


# --- quick ------------------------------------------------------------------------------------


def test_atomic_write_removes_its_temporary_file_when_the_rename_fails(tmp_path):
    target = tmp_path / "out.png"
    target.mkdir()  # a folder in the way: the write succeeds, the rename raises
    with pytest.raises(OSError):
        atomic_write(target, b"x" * 1000)
    assert _temporaries(tmp_path) == [] and list(tmp_path.glob(".*")) == []


def test_a_zombie_counts_as_gone_and_a_live_process_as_alive():
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert _process_exists(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        wait_for(lambda: _state(child.pid) == "Z", timeout=10, interval=0.01)  # not reaped: we do not wait()
        os.kill(child.pid, 0)  # what the old check relied on: still succeeds for a zombie
        assert not _process_exists(child.pid)
    finally:
        child.wait()
    assert not _process_exists(child.pid)  # reaped: gone for kill() too


@pytest.mark.slow  # in-process, but ~45 s on 2 shared cores (model load, import, 12 samples)
def test_non_finite_latents_fail_each_sample_naming_the_step_dtype_and_device(tmp_path):
    """guidance 1e30 passes validation (finite) yet overflows CFG to inf/NaN in fp32 on the tiny
    model: measured, 1e20 still gives finite latents, 1e30 NaN at step 2 of 3. Before the check
    every sample was recorded done with an all-black image and metrics."""
    from inpaint_tui.jobs.worker import execute_run

    store = Store(tmp_path / "experiments.db")
    ensure_demo(store)
    blended = queue_small(store, guidance=1e30)
    vanilla = queue_small(store, technique="vanilla", guidance=1e30)
    assert execute_run(store, blended) == RunStatus.FAILED
    assert execute_run(store, vanilla) == RunStatus.FAILED
    places = {}
    for run_id in (blended, vanilla):
        detail = store.run_detail(run_id)
        assert [s.status for s in detail.samples] == ["failed"] * detail.run.sample_count
        for sample in detail.samples:
            assert sample.error.startswith("non-finite values (NaN or inf) in the "), sample.error
            assert "(float32 on cpu); use a smaller guidance (now 1e+30)" in sample.error
            places.setdefault(run_id, set()).add(sample.error.split(" in the ")[1].split(" (")[0])
            assert sample.image_path is None and sample.metrics == {}
        assert not (store.data_dir / "runs" / str(run_id)).exists() or \
            list((store.data_dir / "runs" / str(run_id)).iterdir()) == []
    # Measured: blended stops at step 2 for 5 samples (the 6th keeps finite but huge latents and
    # decodes to NaN); the diffusers pipeline is checked on its final latent and decoded image.
    assert "latent after denoising step 2 of 3" in places[blended]
    assert places[blended] <= {"latent after denoising step 2 of 3", "decoded image"}
    assert places[vanilla] <= {"final latent", "decoded image"}
    store.close()


def test_a_nan_decoded_image_is_named_as_such(tiny_model):
    import numpy as np

    from engine.latents import NonFiniteError, check_finite

    image = np.zeros((8, 8, 3), dtype=np.float32)
    check_finite(image, "decoded image", tiny_model)  # finite: nothing
    image[3, 4, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"in the decoded image \(float32 on cpu\); use a smaller guidance"):
        check_finite(image, "decoded image", tiny_model)


# --- real worker processes ----------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 4 MB filesystem (tmpfs, mounted as root; this sandbox allows it) for the data folder."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); RLIMIT_FSIZE would also stop SQLite's WAL")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the filesystem holding `folder` until ENOSPC, so the next file write fails for real."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)  # unbuffered: close() has nothing left to flush
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError as error:
        assert error.errno == 28
    finally:
        os.close(descriptor)
    return filler


@pytest.mark.slow
def test_full_data_disk_fails_the_samples_with_errno_and_file_and_resume_completes(tmp_path, small_tmpfs):
    """Real ENOSPC: the data folder is on a 4 MB tmpfs filled up after the demo import (1.6 MB); the
    output PNG write in the worker raises ENOSPC from the real code path (atomic_write)."""
    db = tmp_path / "experiments.db"
    data = small_tmpfs / "data"
    store = Store(db, data_dir=data)
    try:
        ensure_demo(store)
        run_id = queue_small(store, seed=3)
        filler = _fill(small_tmpfs)

        worker = subprocess.run(command(db, "worker", "--once", "--heartbeat", "0.2", data_dir=data), env=ENV,
                                capture_output=True, text=True, timeout=300)
        assert worker.returncode == 0, worker.stderr  # the worker did not die
        assert "Traceback" not in worker.stderr, worker.stderr
        detail = store.run_detail(run_id)
        assert detail.run.status == RunStatus.FAILED and detail.run.error == "every sample failed"  # final, not running
        for sample in detail.samples:
            name = store.output_name(sample.position, sample.sample_name)
            assert sample.status == "failed"
            assert sample.error == f"cannot write output runs/{run_id}/{name}: [Errno 28] No space left on device"
        assert _temporaries(data) == []  # atomic_write removed each partial file
        assert [w.status for w in store.workers(include_ended=True)] == [WorkerStatus.STOPPED]

        filler.unlink()  # space freed: resume redoes the failed samples
        resume = run_cli(db, "runs", "resume", str(run_id), data_dir=data)
        assert resume.returncode == 0, resume.stderr
        resumed = assert_exactly_once(store, run_id)
        assert [s.attempts for s in resumed.samples] == [2] * resumed.run.sample_count
        assert _temporaries(data) == []
    finally:
        kill_workers(store)
        store.close()


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_database_on_a_full_disk_is_one_line_naming_the_disk_and_is_left_unchanged(tmp_path, small_tmpfs):
    """Closed, the database has no -wal/-shm files; on a full disk SQLite cannot create them
    and reports only "disk I/O error": the message adds where the space is missing."""
    db = small_tmpfs / "experiments.db"
    store = Store(db, data_dir=tmp_path / "data")
    ensure_demo(store)
    store.close()
    before = _digest(db)
    filler = _fill(small_tmpfs)
    listing = run_cli(db, "runs", "list", data_dir=tmp_path / "data")
    assert listing.returncode == 1 and "Traceback" not in listing.stderr, listing.stderr
    assert listing.stderr.strip().splitlines() == [
        f"error: database {db}: disk I/O error; the disk holding it is full (0 bytes free in {small_tmpfs}): free "
        "space there"]
    assert _digest(db) == before
    filler.unlink()
    assert run_cli(db, "runs", "list", data_dir=tmp_path / "data").returncode == 0


@pytest.mark.slow
def test_database_disk_full_mid_run_ends_the_worker_with_one_line_and_resume_completes(tmp_path, small_tmpfs):
    """Real SQLITE_FULL: the database (not the data folder) is on a 4 MB tmpfs filled up at
    step 3 of the first sample. The sample's record is retried (~24 s), the run's end cannot
    be recorded either, and the `--once` worker ends with exit 1 and one line naming the disk
    and the run to resume, not exit 0 as if all were well; warnings are one per kind of write.
    Nothing is lost: after space is freed the run is still there, `runs resume` finishes it
    with every sample done once, and the file passes SQLite's integrity check."""
    db = small_tmpfs / "experiments.db"
    data = tmp_path / "data"
    store = Store(db, data_dir=data)
    try:
        ensure_demo(store)
        run_id = queue_small(store, seed=3, steps=10)
        worker = subprocess.Popen(command(db, "worker", "--once", "--heartbeat", "0.2", data_dir=data), env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_mid_run(store, run_id)
        filler = _fill(small_tmpfs)
        output = worker.communicate(timeout=300)[0]
        assert worker.returncode == 1, output
        assert "Traceback" not in output, output
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert errors == [
            f"error: worker 1: database {db} takes no writes (OperationalError: database or disk is full); the disk "
            f"holding it is full (0 bytes free in {small_tmpfs}): free space there; run {run_id} could not be handed "
            f"back and stays marked running: once the database works again, `inpaint-tui runs resume {run_id}` "
            "completes it"], output
        warnings = [line for line in output.splitlines() if " failed (" in line]
        assert len({line.split(" WARNING ")[-1].split(" failed (")[0] for line in warnings}) == len(warnings), output

        filler.unlink()
        assert store.run(run_id).status == RunStatus.RUNNING  # as the full disk left it: nothing written, nothing lost
        resume = run_cli(db, "runs", "resume", str(run_id), data_dir=data)
        assert resume.returncode == 0, resume.stderr
        assert_exactly_once(store, run_id)
        assert _temporaries(data) == []
        with store.engine.connect() as connection:
            from sqlalchemy import text

            assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    finally:
        kill_workers(store)
        store.close()


@pytest.mark.slow
def test_a_daemon_worker_waits_out_a_full_database_disk_and_finishes_the_run(tmp_path, small_tmpfs):
    """The daemon's side of the case above: it keeps polling while the database takes no
    writes; once space is freed it hands the run back, claims it again and finishes it, with
    every sample done once and no resume by hand."""
    db = small_tmpfs / "experiments.db"
    data = tmp_path / "data"
    store = Store(db, data_dir=data)
    try:
        ensure_demo(store)
        run_id = queue_small(store, seed=3, steps=10)
        worker = subprocess.Popen(command(db, "worker", "--heartbeat", "0.2", data_dir=data), env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines, unrecorded = [], threading.Event()

        def read() -> None:
            for line in worker.stdout:
                lines.append(line)
                if f"run {run_id} could not be recorded" in line:
                    unrecorded.set()

        reader = threading.Thread(target=read)
        reader.start()
        wait_mid_run(store, run_id)
        filler = _fill(small_tmpfs)
        assert unrecorded.wait(timeout=180), "".join(lines)
        time.sleep(2)  # a few polls against the full disk
        assert worker.poll() is None, "".join(lines)  # a daemon does not give up
        filler.unlink()
        wait_for(lambda: store.run(run_id).status == RunStatus.FINISHED, timeout=300, interval=0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        reader.join()
        output = "".join(lines)
        assert "Traceback" not in output, output
        assert f"handing run {run_id} back to the queue works again after" in output, output
        assert_exactly_once(store, run_id)
    finally:
        kill_workers(store)
        store.close()


@pytest.mark.slow
@pytest.mark.sqlite_only("SQLite's write lock and busy timeout")
def test_write_lock_held_past_the_busy_timeout_delays_writes_and_fails_no_sample(database):
    """Another connection holds BEGIN IMMEDIATE from mid-run (the second to fifth of six samples
    generating) until a durable write of the sample loop (its record, or marking the next sample
    running) has failed on the lock (read from the worker's log, so the retry is certain whatever
    the machine's speed), plus 1 s (3 s at least); the worker's busy timeout is
    200 ms (INPAINT_TUI_BUSY_TIMEOUT_MS). Progress and heartbeats hit "database is locked"
    many times, are skipped and logged once per kind; the record is retried with backoff."""
    db, store = database
    run_id = queue_small(store, steps=10)
    env = {**ENV, BUSY_TIMEOUT_ENV: "200"}
    # stale-after well above the lock: no one may declare the worker lost while it waits
    worker = subprocess.Popen(command(db, "worker", "--once", "--heartbeat", "0.2", "--stale-after", "60"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, record_blocked = [], threading.Event()

    def read() -> None:
        for line in worker.stdout:
            lines.append(line)
            # The first durable write after the lock: the sample's record, or, when the lock came
            # between two samples, marking the next one running.
            if re.search(r"(recording a sample|marking a sample running) failed \(OperationalError: database is "
                         r"locked\); retrying", line):
                record_blocked.set()

    reader = threading.Thread(target=read)
    reader.start()
    wait_mid_run(store, run_id)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    held_from = time.monotonic()
    done_before = store.run(run_id).done_count
    assert record_blocked.wait(timeout=120), "".join(lines)
    time.sleep(max(1.0, 3.0 - (time.monotonic() - held_from)))  # 3 s at least: 15 heartbeats
    assert store.run(run_id).status == RunStatus.RUNNING  # reads still work under a write lock (WAL)
    blocker.execute("ROLLBACK")
    held = time.monotonic() - held_from
    blocker.close()
    assert worker.wait(timeout=300) == 0, "".join(lines)
    reader.join()
    output = "".join(lines)
    assert held > 2.9 and done_before < 6
    assert_exactly_once(store, run_id)
    assert "Traceback" not in output, output
    assert "heartbeat failed (OperationalError: database is locked)" in output
    warnings = [line for line in output.splitlines() if "failed (" in line]
    assert len(warnings) <= 6, output  # one line per kind of write, not one per beat (5 beats a second)
    assert [s.attempts for s in store.run_detail(run_id).samples] == [1] * 6
    print(f"lock held {held:.1f} s; {len(warnings)} warning line(s):", *warnings, sep="\n")  # figures, with -s


@pytest.mark.slow
@pytest.mark.sqlite_only("the failure is injected with an SQLite trigger; slow, and what it tests does not depend "
                         "on the database kind (CI time)")
def test_an_error_escaping_a_run_fails_that_run_and_the_worker_goes_on(database):
    """A trigger (a real SQLite error, no mock) makes recording a done sample of run 1 raise
    IntegrityError, which escapes the run: before, the worker died and left it running."""
    db, store = database
    broken, healthy = queue_small(store), queue_small(store, seed=1)
    with sqlite3.connect(db) as raw:
        raw.execute(f"CREATE TRIGGER injected BEFORE UPDATE ON run_sample WHEN NEW.run_id = {broken} "
                    "AND NEW.status = 'done' BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    worker = run_cli(db, "worker", "--once", "--heartbeat", "0.2")
    assert worker.returncode == 0, worker.stderr
    assert "Traceback" not in worker.stderr, worker.stderr
    failed = store.run(broken)
    assert failed.status == RunStatus.FAILED
    assert failed.error.endswith("failed: IntegrityError: injected failure"), failed.error
    assert_exactly_once(store, healthy)  # the same worker went on to the next run
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TRIGGER injected")
    resume = run_cli(db, "runs", "resume", str(broken))
    assert resume.returncode == 0, resume.stderr
    assert_exactly_once(store, broken)


@pytest.mark.slow
def test_runs_resume_right_after_kill_9_of_an_unreaped_worker_declares_it_lost_at_once(database):
    db, store = database
    run_id = queue_small(store, steps=60)
    # Default stale-after (30 s): only the zombie check can make this immediate.
    child = subprocess.Popen(command(db, "worker", "--once", "--heartbeat", "0.2"), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (p := store.run_progress(run_id)) and p.phase == "generating" and p.step >= 2,
                  timeout=180, interval=0.02)
        os.kill(child.pid, signal.SIGKILL)
        wait_for(lambda: _state(child.pid) == "Z", timeout=10, interval=0.01)  # a zombie: we never wait() yet
        assert store.run(run_id).status == RunStatus.RUNNING
        started = time.monotonic()
        # What `runs resume` does first; before the fix: RunBusy "running on worker 1; cancel it first".
        store.requeue_for_resume(run_id, stale_after=STALE_AFTER_SECONDS)
        elapsed = time.monotonic() - started
        assert store.run(run_id).status == RunStatus.QUEUED
        assert elapsed < 1.0  # at once, not after the 30 s staleness
        print(f"zombie worker declared lost and run re-queued in {elapsed * 1000:.0f} ms")  # figures, with -s
        lost = [w for w in store.workers(include_ended=True) if w.pid == child.pid]
        assert [w.status for w in lost] == [WorkerStatus.LOST]
    finally:
        kill_workers(store)
        child.wait()


def test_best_effort_writes_wait_briefly_under_a_held_lock_and_durable_ones_the_busy_timeout(tmp_path):
    """Under another connection's BEGIN IMMEDIATE a heartbeat through best_effort is skipped
    after BRIEF_WAIT_MS instead of stalling for the 30 s busy timeout (a progress write per
    denoising step would otherwise stop generation for 30 s a step); the same connection pool
    then gives a durable write the full timeout again."""
    import logging

    from sqlalchemy import text

    from inpaint_tui.jobs.resilience import FailureLog, best_effort
    from inpaint_tui.store.db import BRIEF_WAIT_MS, BUSY_TIMEOUT_MS, brief_waits

    store = Store(tmp_path / "experiments.db")
    worker_id = store.register_worker("daemon", device="cpu")
    failures = FailureLog(logging.getLogger("test"))

    def busy_timeout() -> int:
        with store.engine.connect() as connection:
            return connection.execute(text("PRAGMA busy_timeout")).scalar()

    assert busy_timeout() == BUSY_TIMEOUT_MS
    with brief_waits():
        assert busy_timeout() == BRIEF_WAIT_MS
    assert busy_timeout() == BUSY_TIMEOUT_MS  # the pooled connection is restored on its next checkout

    blocker = sqlite3.connect(store.engine.url.database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert best_effort(failures, "heartbeat", store.heartbeat, worker_id) is None  # skipped: locked
        waited = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert waited < BUSY_TIMEOUT_MS / 1000 / 3, waited  # far from the busy timeout; not a speed assertion
    assert best_effort(failures, "heartbeat", store.heartbeat, worker_id) is True  # and works again
    store.close()
