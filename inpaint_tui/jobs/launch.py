"""Starting a background worker for detached runs (torch-free: the CLI calls it on
`run --detach` and the TUI on submit).

The worker runs in its own session (`setsid`), with no terminal: closing the SSH connection
that launched it does not stop it. It writes its log beside the database and exits after
`idle_exit` seconds without work, freeing the GPU.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import make_url

from inpaint_tui.jobs.worker import BACKGROUND_KINDS, STALE_AFTER_SECONDS, child_command, child_environment
from inpaint_tui.store import Store
from inpaint_tui.store.tables import WorkerStatus

IDLE_EXIT_ENV = "INPAINT_TUI_IDLE_EXIT"
DEFAULT_IDLE_EXIT = 600.0  # seconds a spawned worker waits for new runs before exiting


def require_model(store: Store, model: str, *, detach: bool = False) -> None:
    """Refuse, before anything is queued or a worker registered, a model this box cannot load
    (engine.models.check_available), for every face that queues runs. A detached run that a
    live worker on another box will take is left to that worker: its box may have the weights
    this one lacks."""
    from engine.models import check_available

    if detach and any(worker.kind in BACKGROUND_KINDS and worker.host != socket.gethostname()
                      for worker in store.workers()):
        return
    check_available(model)


def worker_log_path(store: Store) -> Path:
    """`experiments.db` -> `experiments.worker.log` beside it; for server databases, in the
    data root's `logs/`, one file per box (every box shares that folder)."""
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).with_suffix(".worker.log")
    return store.files.local_path(f"logs/{socket.gethostname()}.worker.log")


@contextmanager
def _spawn_lock(store: Store) -> Iterator[None]:
    # Two `run --detach` at the same moment must not both decide "no worker" and start two.
    with open(store.files.local_path(".spawn.lock"), "w") as handle:  # the folder exists: checked before
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_worker(
    store: Store, *, device: str | None = None, stale_after: float = STALE_AFTER_SECONDS
) -> tuple[int, bool]:
    """Make sure a background worker serves this database: (worker id, whether one was
    started now). A live background worker (fresh heartbeat; a process or a Ray actor, on
    any box) is reused whatever its device, but only one that checked this data root at
    start: a worker of an older version, which never checked, may not see the images."""
    store.require_writable_data_dir()  # also learns the data root's id
    with _spawn_lock(store):
        store.reap_stale_workers(stale_after)
        for worker in store.workers():
            if (worker.kind in BACKGROUND_KINDS and worker.status != WorkerStatus.STOPPING
                    and worker.data_root_id == store.data_root_id):
                return worker.id, False
        return spawn_worker(store, device=device), True


def serving_message(store: Store, worker_id: int, started: bool) -> str:
    """Which worker will serve the queued runs, with its log as its own box sees it."""
    info = store.worker(worker_id)
    log_path = info.log_path if info is not None and info.log_path else "-"
    if started:
        return f"started worker {worker_id} here (log: {log_path})"
    host = info.host if info is not None else "?"
    return f"queued for worker {worker_id} on {host} (log: {log_path} as that box sees it)"


def spawn_worker(store: Store, *, device: str | None = None, idle_exit: float | None = None) -> int:
    """Start a detached worker process; it is listed (status starting) before it has even
    imported torch, so a second launcher sees it."""
    if idle_exit is None:
        idle_exit = float(os.environ.get(IDLE_EXIT_ENV, DEFAULT_IDLE_EXIT))
    store.require_writable_data_dir()
    log_path = worker_log_path(store)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker_id = store.register_worker("daemon", device=device or "auto", status=WorkerStatus.STARTING,
                                      log_path=log_path, data_root=store.data_dir, data_root_id=store.data_root_id)
    arguments = ["--worker-id", str(worker_id), "--idle-exit", str(idle_exit)]
    if device:
        arguments += ["--device", device]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            child_command(store, arguments), env=child_environment(store), stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    store.heartbeat(worker_id, pid=process.pid)
    return worker_id
