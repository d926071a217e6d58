"""One data root, known to the database (issue 15): many boxes, one PostgreSQL store, one
shared image folder. Real worker processes in different working directories, a real
PostgreSQL server, real files; the root's identity is checked through its marker file."""

import json
import subprocess

import pytest
from PIL import Image

from inpaint_tui.jobs.launch import ensure_worker, serving_message
from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.jobs.sweeps import expand_grid, parse_grid, queue_sweep
from inpaint_tui.store import Store, StoreError, WorkerStatus
from inpaint_tui.store.data_root import MARKER
from tests.conftest import sql
from tests.store.test_worker_failures import _fill, small_tmpfs  # noqa: F401  (a fixture)
from tests.worker_processes import ENV, EVAL, FAST, assert_exactly_once, command, queue_small

NOT_THE_SHARED_CASE = "the refusal is the same check on both backends; PostgreSQL gets the shared-root test"


def _cli(db, *args, cwd, data_dir=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(command(db, *args, data_dir=data_dir), capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=timeout)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.slow
def test_two_workers_in_different_directories_share_one_data_root(postgres_url, tmp_path):
    """As two GPU boxes: two `worker --once` processes, each in its own working directory,
    one seeing the share at its real path and one through its own mount point (a symlink),
    drain a 12-sample sweep from one PostgreSQL database: every sample done once, every
    image readable through both boxes' views of the root."""
    shared = tmp_path / "shared"
    box_a, box_b = tmp_path / "box-a", tmp_path / "box-b"
    box_a.mkdir()
    (box_b / "mnt").mkdir(parents=True)
    (box_b / "mnt" / "inpaint").symlink_to(shared, target_is_directory=True)
    store = Store(postgres_url, data_dir=shared)
    try:
        ensure_demo(store)  # the first writer registers the root
        assert (shared / MARKER).read_text().strip() == store.data_root_id
        points = expand_grid(["blended"], parse_grid(["blend_start=0,0.5"]), seeds=[0], steps=[2], guidance=[7.5])
        sweep = queue_sweep(store, points, model="tiny", sample_set="demo", evaluation=EVAL)
        assert sum(store.run(r).sample_count for r in sweep.new) == 12
        workers = [
            subprocess.Popen(command(postgres_url, "worker", "--once", *FAST, data_dir=shared), cwd=box_a, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
            subprocess.Popen(command(postgres_url, "worker", "--once", *FAST, data_dir="mnt/inpaint"), cwd=box_b,
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        ]
        outputs = [worker.communicate(timeout=600)[0] for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0], outputs
        rows = store.workers(include_ended=True)
        assert {w.status for w in rows} == {WorkerStatus.STOPPED} and len(rows) == 2
        assert {w.data_root_id for w in rows} == {store.data_root_id}
        outputs_seen = []
        for run_id in sweep.new:
            detail = assert_exactly_once(store, run_id)
            assert [s.attempts for s in detail.samples] == [1] * 6
            assert detail.run.worker_id in {w.id for w in rows}
            outputs_seen += [s.image_path.relative_to(shared).as_posix() for s in detail.samples]
        assert len(set(outputs_seen)) == 12
        views = [Store(postgres_url, data_dir=view) for view in (shared, box_b / "mnt" / "inpaint")]
        try:
            for relative in outputs_seen:
                data = [view.files.read_bytes(relative) for view in views]
                assert data[0] == data[1]
                with Image.open(views[1].files.local_path(relative)) as image:
                    image.load()  # the whole PNG decodes, not just its header
        finally:
            for view in views:
                view.close()
        # no ./inpaint_data, no log in either working directory
        assert list(box_a.iterdir()) == [] and list(box_b.iterdir()) == [box_b / "mnt"]
        # A third box with no --data-dir finds the registered root's path in the database.
        listed = _cli(postgres_url, "workers", "--all", "--json", cwd=box_a)
        assert listed.returncode == 0, listed.stderr
        assert {row["data_root"] for row in json.loads(listed.stdout)} == {str(shared)}
    finally:
        store.close()


@pytest.mark.sqlite_only(NOT_THE_SHARED_CASE)
@pytest.mark.parametrize("folder", ["empty", "missing", "another-root"])
def test_a_worker_whose_data_folder_is_not_the_root_refuses_to_start(database, tmp_path, folder):
    db, store = database
    run_id = queue_small(store)
    wrong = tmp_path / folder
    if folder == "empty":  # e.g. the mount point of a share that is not mounted
        wrong.mkdir()
    if folder == "another-root":
        other = Store(tmp_path / "other.db", data_dir=wrong)
        other.require_writable_data_dir()
        other.close()
    result = _cli(db, "worker", "--once", *FAST, data_dir=wrong, cwd=tmp_path)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"data folder {wrong} is " in line and "--data-dir" in line
    assert f"not the data root of database {db}" in line and store.data_root_id in line
    assert "mount the shared data root there" in line
    if folder == "another-root":
        assert f"its marker {MARKER} holds {(wrong / MARKER).read_text().strip()}" in line
    assert wrong.exists() == (folder != "missing")  # an unmounted share is never created as a local folder
    assert store.workers(include_ended=True) == []  # no worker row, so nothing was claimed
    assert store.run(run_id).status == "queued"


@pytest.mark.sqlite_only("moving the database file without its folder is an SQLite-file matter")
def test_an_sqlite_database_moved_without_its_data_folder_is_named(tmp_path):
    """The default needs no flag (the folder beside the file registers itself); a copy of
    the file elsewhere does not silently start a new, empty image folder."""
    store = Store(tmp_path / "experiments.db")
    ensure_demo(store)
    root_id = store.data_root_id
    assert (tmp_path / "experiments_data" / MARKER).read_text().strip() == root_id
    assert sql(store.url, "SELECT value FROM store_info WHERE key = 'data_root_path'") == \
        [(str(tmp_path / "experiments_data"),)]
    store.close()
    reopened = Store(tmp_path / "experiments.db")
    reopened.require_writable_data_dir()
    assert reopened.data_root_id == root_id
    reopened.close()
    (tmp_path / "moved").mkdir()
    (tmp_path / "experiments.db").rename(tmp_path / "moved" / "experiments.db")
    moved = Store(tmp_path / "moved" / "experiments.db")
    with pytest.raises(StoreError, match=r"moved/experiments_data is not the data root .*it does not exist"):
        queue_small(moved)  # a run would write its images there
    assert not (tmp_path / "moved" / "experiments_data").exists()
    moved.close()


def test_a_server_database_without_a_data_dir_is_one_line(postgres_url, tmp_path):
    """No ./inpaint_data in whatever directory a command happens to run from: exit 2 (a
    missing argument), naming the database and --data-dir. Commands that touch no image work."""
    result = _cli(postgres_url, "samples", "import", "demo", cwd=tmp_path)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "has no data root yet: pass --data-dir PATH" in line and "127.0.0.1" in line
    assert list(tmp_path.iterdir()) == []
    listed = _cli(postgres_url, "runs", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr


@pytest.mark.sqlite_only(NOT_THE_SHARED_CASE)
def test_run_detach_reuses_only_a_worker_that_checked_this_data_root(database):
    db, store = database
    store.require_writable_data_dir()
    older = store.register_worker("daemon", device="cuda:0", log_path="/var/log/older.log")  # never checked the root
    worker_id, started = ensure_worker(store)
    assert started and worker_id != older  # the old one may not see the images: one was started here
    assert serving_message(store, worker_id, True) == \
        f"started worker {worker_id} here (log: {db.with_suffix('.worker.log')})"
    other_box = store.register_worker("daemon", device="cuda:1", log_path="/home/lab/inpaint.log",
                                      data_root="/mnt/lab/inpaint", data_root_id=store.data_root_id)
    store.request_worker_stop(worker_id)
    assert ensure_worker(store) == (other_box, False)
    host = store.worker(other_box).host
    assert serving_message(store, other_box, False) == \
        f"queued for worker {other_box} on {host} (log: /home/lab/inpaint.log as that box sees it)"


@pytest.mark.sqlite_only("a full data disk is the folder's matter, the same on both backends")
def test_a_full_disk_at_registration_leaves_nothing_registered(tmp_path, small_tmpfs):  # noqa: F811
    """The marker cannot be written (a real full tmpfs; the 0-byte write probe still passes):
    one line naming the marker, and the database registers no root that no folder carries."""
    db, data = tmp_path / "experiments.db", small_tmpfs / "data"
    data.mkdir()
    _fill(small_tmpfs)
    result = _cli(db, "samples", "import", "demo", data_dir=data, cwd=tmp_path)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"cannot write {data / MARKER} (No space left on device)" in line, line
    assert sql(db, "SELECT key FROM store_info WHERE key LIKE 'data_root%'") == []
    assert [p.name for p in data.iterdir()] == []  # no marker, no temporary file
