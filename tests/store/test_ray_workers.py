"""`inpaint-tui worker --ray`: workers as Ray actors on a real local Ray cluster (`ray start
--head` with GPUs declared on this CPU machine), driven exactly as a user drives them: the
`worker --ray ADDRESS` process, `workers stop`, Ctrl-C, and kill -9 of an actor's process.

Skipped where Ray is not installed, except in CI, whose test extras include it."""

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from inpaint_tui.store import RunStatus, WorkerStatus
from tests.worker_processes import ENV, FAST, assert_exactly_once, command, queue_small, run_cli, wait_for

requires_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None and os.environ.get("CI") != "true",
    reason="Ray is not installed (pip install 'inpaint-tui[ray]')",
)
# A loopback test cluster: no token to share, and a stopped head exits at once instead of
# draining for 30 s. One thread per actor: two actors share this machine's two cores.
RAY_ENV = {**ENV, "RAY_AUTH_MODE": "disabled", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def ray_cluster(gpus: int):
    """A Ray head on this machine with `gpus` GPUs declared; yields its address."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    log_path = Path(temp) / "head.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--node-ip-address",
             "127.0.0.1", "--port", str(port), "--num-cpus", "2", "--num-gpus", str(gpus),
             "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp],
            env=RAY_ENV, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: head.poll() is not None or "Ray runtime started" in log_path.read_text(), interval=0.2)
        assert head.poll() is None, log_path.read_text()
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # `ray start --block` stops the cluster's processes on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(gpus=2) as address:
        yield address


@contextmanager
def ray_driver(db, address, *args):
    """`inpaint-tui worker --ray ADDRESS` in the background; yields (process, its output so
    far as a function). Its output goes to a file: Ray forwards the actors' logs to it, more
    than a pipe holds."""
    # beside an SQLite file; for a server URL in a temporary folder
    log_path = Path(db).with_suffix(".ray.log") if "://" not in str(db) else Path(tempfile.mkdtemp()) / "ray.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command(db, "worker", "--ray", address, *FAST, *args), env=RAY_ENV, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        yield process, log_path.read_text
    finally:
        if process.poll() is None:
            process.kill()  # its actors die with it (Ray ends the actors of a driver that is gone)
            process.wait()


def _ray_workers(store):
    return [w for w in store.workers(include_ended=True) if w.kind == "ray"]


@requires_ray
@pytest.mark.slow
def test_one_actor_per_gpu_drains_the_queue_with_every_sample_done_once(database, cluster):
    db, store = database
    runs = [queue_small(store, seed=seed, steps=2) for seed in range(3)]
    with ray_driver(db, cluster, "--once") as (driver, output):
        assert driver.wait(timeout=300) == 0, output()
    workers = _ray_workers(store)
    # Declared GPUs without CUDA: the device is the CPU; the row names the GPU and the actor.
    assert sorted(re.sub(r"actor \w{8}\)$", "actor *)", w.device) for w in workers) \
        == ["cpu (ray GPU 0, actor *)", "cpu (ray GPU 1, actor *)"]
    assert {w.status for w in workers} == {WorkerStatus.STOPPED}
    assert len({w.pid for w in workers}) == 2 and {w.host for w in workers} == {socket.gethostname()}
    for worker in workers:
        assert f"ray: worker {worker.id} started on {worker.host} (GPU " in output()
    for run_id in runs:
        detail = assert_exactly_once(store, run_id)
        assert [s.attempts for s in detail.samples] == [1] * 6
        assert detail.run.worker_id in {w.id for w in workers}


@requires_ray
@pytest.mark.slow
def test_an_actor_killed_mid_sample_is_restarted_by_ray_and_its_run_resumed(database, cluster):
    db, store = database
    run_id = queue_small(store, seed=3, steps=8)
    with ray_driver(db, cluster, "--once") as (driver, output):
        def mid_sample():
            progress = store.run_progress(run_id)
            return progress and progress.phase == "generating" and progress.samples_done >= 1 and 0 < progress.step < 6

        wait_for(mid_sample, timeout=180, interval=0.02)
        victim = store.worker(store.run(run_id).worker_id)
        assert victim.kind == "ray"
        os.kill(victim.pid, signal.SIGKILL)  # as the OOM killer or a user's kill -9 would
        assert driver.wait(timeout=300) == 0, output()
    detail = assert_exactly_once(store, run_id)
    assert sorted(s.attempts for s in detail.samples) == [1, 1, 1, 1, 1, 2]  # only the interrupted one redone
    workers = _ray_workers(store)
    assert store.worker(victim.id).status == WorkerStatus.LOST
    # Ray restarted the actor (same actor id; maybe another GPU) in a new process: a new worker row.
    actor = victim.device.rpartition("actor ")[2]
    restarted = [w for w in workers if w.device.endswith(f"actor {actor}") and w.id != victim.id]
    assert restarted and victim.pid not in {w.pid for w in restarted}
    assert detail.run.worker_id in {w.id for w in workers} - {victim.id}
    assert {w.status for w in workers if w.id != victim.id} == {WorkerStatus.STOPPED}


@requires_ray
@pytest.mark.slow
def test_workers_stop_and_ctrl_c_stop_the_actors_and_hand_the_run_back(database, cluster):
    db, store = database
    run_id = queue_small(store, seed=4, steps=60)  # long enough to be interrupted twice
    with ray_driver(db, cluster) as (driver, output):  # no --once: it waits for work until stopped
        wait_for(lambda: (p := store.run_progress(run_id)) and p.phase == "generating" and p.step >= 2,
                 timeout=180, interval=0.02)
        first = store.run(run_id).worker_id
        stop = run_cli(db, "workers", "stop", str(first), env=RAY_ENV)
        assert stop.returncode == 0 and f"stop requested: worker {first} (ray on " in stop.stderr, stop.stderr
        wait_for(lambda: store.worker(first).status == WorkerStatus.STOPPED, timeout=60)
        # The other actor takes the handed-back run up.
        wait_for(lambda: (r := store.run(run_id)).status == RunStatus.RUNNING and r.worker_id not in (None, first)
                 and r.progress is not None and r.progress.phase == "generating", timeout=120, interval=0.02)
        second = store.run(run_id).worker_id
        assert driver.poll() is None  # one actor left: the driver still waits
        os.kill(driver.pid, signal.SIGINT)  # Ctrl-C
        assert driver.wait(timeout=120) == 0, output()
    workers = _ray_workers(store)
    assert sorted(w.id for w in workers) == sorted([first, second])
    assert {w.status for w in workers} == {WorkerStatus.STOPPED}
    detail = store.run_detail(run_id)
    assert detail.run.status == RunStatus.QUEUED and detail.run.worker_id is None
    statuses = [s.status for s in detail.samples]
    assert "running" not in statuses and statuses[-1] == "pending"
    assert len(list((store.data_dir / "runs" / str(run_id)).glob("*.png"))) == statuses.count("done")
    assert f"ray: worker {first} ended after" in output() and "ray: SIGINT received" in output()


@requires_ray
@pytest.mark.slow
def test_a_cluster_without_gpus_is_refused_in_one_line(database):
    db, _ = database
    with ray_cluster(gpus=0) as address:
        result = run_cli(db, "worker", "--ray", address, env=RAY_ENV)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: the Ray cluster at '{address}' has no GPUs (worker --ray starts one worker per GPU; "
        "on a CPU machine use inpaint-tui worker --processes N)")


def test_without_ray_the_worker_says_how_to_install_it(database):
    db, _ = database
    # Python's own way to make a package unimportable: the real CLI runs, `import ray` fails.
    probe = ("import sys; sys.modules['ray'] = None; from inpaint_tui.cli import run_cli; "
             f"sys.argv = ['inpaint-tui', '--db', {str(db)!r}, 'worker', '--ray', 'auto']; run_cli()")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 1
    assert result.stderr == "error: Ray is not installed: pip install 'inpaint-tui[ray]'\n"


def test_ray_places_workers_itself(database):
    db, _ = database
    result = run_cli(db, "worker", "--ray", "auto", "--gpus", "0,1")
    assert result.returncode == 2
    assert result.stderr == "error: --ray places the workers itself: use it without --gpus and --processes\n"
