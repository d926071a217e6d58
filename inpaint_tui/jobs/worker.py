"""Workers: processes that claim queued runs from the store and execute them.

A worker registers itself, heartbeats from a thread (the main thread is busy in torch), and
claims runs one at a time, preferring runs on the model it already has loaded. Any worker
looking for work first declares workers silent for `stale_after` seconds lost and re-queues
their runs, so a run whose worker was killed is resumed by the next one that looks.
`inpaint-tui workers stop` marks a worker's row `stopping`; its next heartbeat learns it, so
the request reaches workers on any box and Ray actors alike.

This module imports no torch at import time (the CLI's `--help` stays light); execution
imports the engine when the first run starts. `supervise` starts one worker process per GPU
(or per requested CPU process) as fresh interpreters: spawned, never forked after CUDA init.

A worker never dies because of one run: an exception escaping a run ends that run failed
with the error (or, if even that write fails, hands it back to the queue, retried before the
next claim), and the worker goes on. A locked or briefly unreachable database delays
heartbeats and queue polls, and a database server that goes away mid-run is waited for
(`resilience.OUTAGE_SECONDS`) at the next durable write; each kind of failure is logged
once, not once per beat.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

from sqlalchemy.exc import DBAPIError

from inpaint_tui.jobs.resilience import (
    DURABLE_ATTEMPTS,
    OUTAGE_SECONDS,
    FailureLog,
    best_effort,
    connection_lost,
    describe,
    durable,
    is_transient,
)
from inpaint_tui.store import RunStatus, Store, StoreError
from inpaint_tui.store.db import brief_waits, full_disk_hint, shown
from inpaint_tui.store.queue import ClaimLost
from inpaint_tui.store.tables import WorkerStatus

HEARTBEAT_SECONDS = 2.0
MAX_RESTARTS = 5  # of one crashing worker (process or Ray actor), so a broken GPU does not loop forever
BACKGROUND_KINDS = ("daemon", "ray")  # workers that serve the queue (`run --detach` reuses them)
STALE_AFTER_SECONDS = 30.0  # silence after which a worker counts as dead (15 missed heartbeats)
POLL_SECONDS = 1.0  # how often an idle worker looks at the queue
ONCE_GIVE_UP_SECONDS = 30.0  # a `--once` worker whose database takes no writes this long stops (exit 1)

log = logging.getLogger("inpaint_tui.worker")
failures = FailureLog(log)


class Worker:
    """One worker identity in the store, with its heartbeat; use as a context manager."""

    def __init__(
        self,
        store: Store,
        *,
        kind: str = "daemon",
        device: str | None = None,
        dtype: str | None = None,
        device_label: str | None = None,
        worker_id: int | None = None,
        log_path: str | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        self.store = store
        self.kind = kind
        self.device = device
        self.dtype = dtype
        self.device_label = device_label or device or "auto"
        self.id = worker_id
        self.log_path = log_path
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.stop_requested = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self.model: str | None = None
        self.unsettled: list[tuple[int, int]] = []  # (run, claim) abandoned but not yet handed back
        self.settle_error: Exception | None = None  # why the last hand-back failed
        # When this worker last found the database working again after failing to reach it:
        # every worker's heartbeat went silent meanwhile, so silence is not judged until the
        # others have had `stale_after` to beat again (else the first worker back after an
        # outage would declare all the busy ones lost).
        self._unreachable = False
        self._reachable_again = -float("inf")

    def __enter__(self) -> "Worker":
        # Outputs go to the data root: refuse before registering (so before claiming anything)
        # when this box cannot write it or sees another folder there.
        self.store.require_writable_data_dir()
        self.id = self.store.register_worker(
            self.kind, device=self.device_label, pid=os.getpid(), log_path=self.log_path, worker_id=self.id,
            data_root=self.store.data_dir, data_root_id=self.store.data_root_id,
        )
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._settle()
        best_effort(failures, "recording the worker's stop", self.store.stop_worker, self.id)

    def _beat(self) -> None:
        while not self._halt.wait(self.heartbeat):
            try:
                with brief_waits():  # a beat missed under a held lock is caught up by the next one
                    alive = self.store.heartbeat(self.id)
                self._reached()
                if not alive and not self.stop_requested.is_set():
                    self._stop_from_store()
                failures.ok("heartbeat")
            except Exception as error:  # a locked or briefly unavailable database must not kill the thread
                self._unreachable = self._unreachable or is_transient(error)
                failures.failed("heartbeat", error, "retrying at the next beat")

    def _reached(self) -> None:
        if self._unreachable:
            self._unreachable = False
            self._reachable_again = time.monotonic()

    def _reap(self) -> None:
        """Re-queue the runs of lost workers, unless the database was just unreachable to us too.
        While `_unreachable` is still set no call has reached it since the failure: this call may
        be the first one back, and judging the others' silence now is exactly the mistake."""
        if self._unreachable or time.monotonic() - self._reachable_again < self.stale_after:
            return
        self.store.reap_stale_workers(self.stale_after)

    def _stop_from_store(self) -> None:
        record = self.store.worker(self.id)
        if record is not None and record.status == WorkerStatus.STOPPING:
            log.info("worker %s: stop requested (inpaint-tui workers stop); stopping at the next step", self.id)
        else:
            log.error("worker %s was declared lost (heartbeat too late); stopping", self.id)
        self.stop_requested.set()

    def request_stop(self) -> None:
        """Finish at the next denoising step: the run in progress goes back to the queue."""
        self.stop_requested.set()

    def execute(self, run_id: int, claim: int | None = None, **options) -> str:
        """Execute one run (claiming it first unless `claim` is given); returns its status."""
        from inpaint_tui.jobs.execute import Lease, execute_claimed

        if claim is None:
            self.store.reap_stale_workers(self.stale_after)
            claim = self.store.claim_run(run_id, self.id)
        run = durable(failures, "reading the run", self.store.run, run_id)
        log.info("worker %s: run %s (%s on %s, %d samples)", self.id, run_id, run.technique, run.sample_set,
                 run.sample_count)
        started = time.perf_counter()
        try:
            status = execute_claimed(
                self.store, run_id, Lease(self.id, claim), device=options.pop("device", None) or self.device,
                dtype=options.pop("dtype", None) or self.dtype, stop=self.stop_requested, **options,
            )
        except Exception as error:  # whatever escaped the run must not leave it `running` nor end the worker
            status = self._abandon(run_id, claim, error)
        # A BaseException (a second Ctrl-C) leaves the run as a kill would: the worker row is
        # marked stopped on the way out, so the next reap re-queues the run as an orphan.
        self.model = run.model
        if any(unsettled == run_id for unsettled, _claim in self.unsettled):
            log.warning("worker %s: run %s could not be recorded after %.1f s; it goes back to the queue as soon as "
                        "the database takes writes again", self.id, run_id, time.perf_counter() - started)
        else:
            log.info("worker %s: run %s %s after %.1f s", self.id, run_id, status, time.perf_counter() - started)
        best_effort(failures, "heartbeat", self.store.heartbeat, self.id, status=WorkerStatus.IDLE, run_id=None,
                    model=self.model)
        return status

    def _abandon(self, run_id: int, claim: int, error: Exception) -> str:
        """End a run an unexpected error escaped from as failed, with the error; if that
        write fails too, hand it back to the queue (now or before the next claim)."""
        message = f"worker {self.id} failed: {describe(error)}"
        log.error("run %s: %s", run_id, message)
        log.debug("the error escaping run %s", run_id, exc_info=error)
        # When the database itself just failed every retry, a few more attempts are enough.
        transient = is_transient(error)
        try:
            return durable(failures, "recording the run's end", self.store.finish_run, run_id, error=message,
                           claim=claim, attempts=3 if transient else DURABLE_ATTEMPTS,
                           outage=30.0 if transient else OUTAGE_SECONDS)
        except ClaimLost:
            return "lost"
        except Exception as second:
            log.error("run %s: cannot record its failure (%s); handing it back to the queue", run_id, describe(second))
        self.unsettled.append((run_id, claim))
        self._settle()
        return RunStatus.QUEUED

    def _settle(self) -> None:
        """Hand abandoned runs back to the queue; a run whose claim is gone is no longer ours."""
        for run_id, claim in list(self.unsettled):
            try:
                self.store.release_run(run_id, claim)
            except ClaimLost:
                pass
            except Exception as error:
                failures.failed(f"handing run {run_id} back to the queue", error, "retrying before the next claim")
                self.settle_error = error
                continue
            failures.ok(f"handing run {run_id} back to the queue")
            self.unsettled.remove((run_id, claim))

    def _giving_up(self, error: Exception) -> str:
        left = sorted({run_id for run_id, _claim in self.unsettled})
        message = (f"worker {self.id}: database {shown(self.store.url)} takes no writes ({describe(error)})"
                   f"{full_disk_hint(self.store.url)}")
        if left:
            runs = ", ".join(map(str, left))
            message += (f"; run {runs} could not be handed back and stays marked running: once the database works "
                        f"again, `inpaint-tui runs resume {left[0]}` completes it")
        return message

    def serve(
        self,
        *,
        once: bool = False,
        idle_exit: float | None = None,
        poll: float = POLL_SECONDS,
        on_run: Callable[[int, str], None] | None = None,
    ) -> int:
        """Execute queued runs until stopped; `once`: until the queue is empty; `idle_exit`:
        until nothing was queued for that many seconds. Returns the number of runs executed."""
        executed = 0
        idle_since = time.monotonic()
        failing_since: float | None = None
        while not self.stop_requested.is_set():
            self._settle()
            try:
                self._reap()
                claimed = self.store.claim_next_run(self.id, prefer_model=self.model,
                                                    take_back_held=failing_since is not None)
                self._reached()
                failures.ok("polling the queue")
                failing_since = None
            except DBAPIError as error:  # locked or unreachable: look again after a pause
                if not is_transient(error):
                    raise
                self._unreachable = True
                failures.failed("polling the queue", error, f"retrying every {poll:g} s")
                failing_since = failing_since or time.monotonic()
                # A daemon waits for the database however long it takes; a `--once` worker
                # (a script, a CI job) must end, saying what was left behind, but waits out
                # a server outage as long as a durable write would.
                give_up = OUTAGE_SECONDS if connection_lost(error) else ONCE_GIVE_UP_SECONDS
                if once and time.monotonic() - failing_since >= give_up:
                    raise StoreError(self._giving_up(error))
                self.stop_requested.wait(poll)
                continue
            if claimed is None:
                if once or (idle_exit is not None and time.monotonic() - idle_since >= idle_exit):
                    if self.unsettled:  # reads work, writes do not: do not end as if all were well
                        raise StoreError(self._giving_up(self.settle_error))
                    break
                self.stop_requested.wait(poll)
                continue
            run_id, claim = claimed
            status = self.execute(run_id, claim)
            executed += 1
            if on_run is not None:
                on_run(run_id, status)
            idle_since = time.monotonic()
        return executed


def execute_run(store: Store, run_id: int, **options) -> str:
    """Execute (or resume) one run now, in this process, as a foreground worker; returns the
    final status. A run left running by a dead process is taken up again."""
    with Worker(store, kind="foreground", device=options.pop("device", None)) as worker:
        return worker.execute(run_id, **options)


def worker_main(
    store: Store,
    *,
    once: bool,
    idle_exit: float | None,
    device: str | None,
    dtype: str | None,
    device_label: str | None = None,
    worker_id: int | None = None,
    log_path: str | None = None,
    heartbeat: float = HEARTBEAT_SECONDS,
    stale_after: float = STALE_AFTER_SECONDS,
) -> int:
    """The body of `inpaint-tui worker` for one process. SIGTERM/SIGINT stop it at the next
    denoising step and hand the run in progress back to the queue; a second one kills."""
    worker = Worker(store, device=device, dtype=dtype, device_label=device_label, worker_id=worker_id,
                    log_path=log_path, heartbeat=heartbeat, stale_after=stale_after)

    def stop(signum, _frame) -> None:
        if worker.stop_requested.is_set():
            raise KeyboardInterrupt
        log.info("worker %s: %s received, stopping at the next step", worker.id, signal.Signals(signum).name)
        worker.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    run_worker(worker, once=once, idle_exit=idle_exit)
    return 0


def run_worker(worker: Worker, *, once: bool, idle_exit: float | None,
               on_started: Callable[[Worker], None] | None = None) -> int:
    """Register, serve until stopped (or `once`/`idle_exit`), record the stop: what every
    background worker runs, a worker process or a Ray actor. Returns the runs executed."""
    with worker:
        log.info("worker %s started (pid %s, device %s)", worker.id, os.getpid(), worker.device_label)
        if on_started is not None:
            on_started(worker)
        from inpaint_tui.jobs.execute import quiet_libraries

        quiet_libraries()
        executed = worker.serve(once=once, idle_exit=idle_exit)
        log.info("worker %s exits after %d run(s)", worker.id, executed)
    return executed


def configure_logging(log_file: str | None) -> None:
    """The workers' log lines: to `log_file` (appended) or stderr, with time and process id."""
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger("inpaint_tui")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def child_command(store: Store, worker_args: Sequence[str]) -> list[str]:
    """The command line of a worker process on the same database and data folder; the
    database URL travels in its environment (`child_environment`), since a command line is
    visible to every user of the box (`ps`) and a server URL may hold a password."""
    return [sys.executable, "-m", "inpaint_tui.cli", "--data-dir", str(store.data_dir), "worker", *worker_args]


def child_environment(store: Store, extra: dict[str, str] | None = None) -> dict[str, str]:
    from inpaint_tui.store.db import DB_ENV

    return {**os.environ, **(extra or {}), DB_ENV: store.url}


def supervise(store: Store, slots: Sequence[tuple[dict[str, str], list[str]]], *, once: bool,
              max_restarts: int = MAX_RESTARTS) -> int:
    """Run one worker process per slot (environment, worker arguments), restart one that
    crashed (unless `once`; at most `max_restarts` times each), pass SIGTERM/SIGINT on, and
    wait for all. Returns the worst exit code."""
    children: list[subprocess.Popen | None] = [None] * len(slots)
    restarts = [0] * len(slots)
    stopping = threading.Event()

    def start(index: int) -> None:
        environment, arguments = slots[index]
        children[index] = subprocess.Popen(child_command(store, arguments), env=child_environment(store, environment))
        log.info("supervisor: started worker process %s for slot %d", children[index].pid, index)

    def forward(signum, _frame) -> None:
        stopping.set()
        for child in children:
            if child is not None and child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(len(slots)):
        start(index)
    worst = 0
    while True:
        running = False
        for index, child in enumerate(children):
            code = child.poll()
            if code is None:
                running = True
                continue
            if code != 0 and not once and not stopping.is_set() and restarts[index] < max_restarts:
                restarts[index] += 1
                log.warning("supervisor: worker process %s exited with %s; restarting (%d/%d)", child.pid, code,
                            restarts[index], max_restarts)
                start(index)
                running = True
                continue
            worst = max(worst, abs(code))
        if not running:
            return worst
        time.sleep(0.5)


__all__ = ["BACKGROUND_KINDS", "HEARTBEAT_SECONDS", "MAX_RESTARTS", "STALE_AFTER_SECONDS", "RunStatus", "Worker",
           "configure_logging", "execute_run", "run_worker", "supervise", "worker_main", "child_command", "child_environment"]
