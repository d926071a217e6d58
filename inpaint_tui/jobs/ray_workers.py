"""Workers on a Ray cluster: `inpaint-tui worker --ray ADDRESS|auto`.

Ray places one actor per GPU of the cluster, and each actor runs the loop every worker runs
(`jobs.worker.run_worker`) against the shared store, which stays the queue and the record.
If an actor's process dies, Ray restarts it (at most `MAX_RESTARTS` times) and retries its
`serve` call in the new process. That loop first reaps the dead worker's row, like any
worker looking for work, so the run it held is re-queued and resumed.

The driver (the `worker --ray` process) stays in the foreground. SIGINT or SIGTERM asks
every actor to stop at its next step, so their runs go back to the queue and their rows end
`stopped`; a second signal kills them. `inpaint-tui workers stop` reaches an actor through
the store, as it reaches any worker.

Ray is an optional extra: this is the only module that imports it, and only when called.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from inpaint_tui.jobs.worker import MAX_RESTARTS, Worker, configure_logging, run_worker
from inpaint_tui.store import Store

RAY_MISSING = "Ray is not installed: pip install 'inpaint-tui[ray]'"

log = logging.getLogger("inpaint_tui.worker")


class RayError(Exception):
    """The cluster cannot be used (Ray missing, unreachable, without GPUs); says why in one line."""


def _import_ray():
    # Ray folds log lines that differ only in numbers ("worker 1: run 3") into one: keep them all.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ModuleNotFoundError as error:
        if error.name == "ray":
            raise RayError(RAY_MISSING) from None
        raise RayError(f"Ray cannot be imported: {error}") from None
    return ray


class RayWorker:
    """The actor: one worker on the GPU Ray gave it (Ray sets CUDA_VISIBLE_DEVICES to it).
    Threaded (max_concurrency 3), so `started` and `stop` are answered while `serve` runs."""

    def __init__(self, url: str, data_dir: str, options: dict) -> None:
        self.url = url
        self.data_dir = data_dir
        self.options = options
        self._stopping = threading.Event()
        self._worker: Worker | None = None
        self._registered = threading.Event()
        self._identity: dict | None = None
        configure_logging(options["log_path"])  # in the actor's process; Ray forwards its stderr to the driver

    def serve(self) -> tuple[int, int]:
        """Run the worker loop until stopped (or the queue is empty with `once`); returns
        (worker id, runs executed)."""
        import ray

        from engine.models import default_device

        gpus = [str(gpu) for gpu in ray.get_gpu_ids()]
        # The actor id outlives restarts (a restarted actor may get another GPU): it names the
        # actor in the worker row, beside the GPU.
        actor = ray.get_runtime_context().get_actor_id()[:8]
        # Explicit, not per run: Ray's GPU is the only one this process sees, and with GPUs
        # declared on a machine without CUDA (a CPU test cluster) torch sees none: cpu.
        device = self.options["device"] or default_device()
        store = Store(self.url, data_dir=self.data_dir)
        try:
            worker = Worker(
                store, kind="ray", device=device, dtype=self.options["dtype"],
                device_label=f"{device} (ray GPU {','.join(gpus) or '-'}, actor {actor})",
                log_path=self.options["log_path"],
                heartbeat=self.options["heartbeat"], stale_after=self.options["stale_after"],
            )
            self._worker = worker
            if self._stopping.is_set():  # a stop that came while this (restarted) actor was starting
                worker.request_stop()
            executed = run_worker(worker, once=self.options["once"], idle_exit=self.options["idle_exit"],
                                  on_started=lambda w: self._started(w, gpus, actor))
            return worker.id, executed
        finally:
            self._registered.set()  # a serve that failed before registering must not leave `started` waiting
            store.close()

    def _started(self, worker: Worker, gpus: list[str], actor: str) -> None:
        self._identity = {"worker": worker.id, "host": socket.gethostname(), "pid": os.getpid(), "gpus": gpus,
                          "device": worker.device, "actor": actor}
        self._registered.set()

    def started(self) -> dict | None:
        """Who this actor's worker is, once registered in the store (None if it failed first)."""
        self._registered.wait()
        return self._identity

    def stop(self) -> None:
        """Stop at the next denoising step; the run in progress goes back to the queue."""
        self._stopping.set()
        worker = self._worker
        if worker is not None:
            worker.request_stop()


def serve_on_ray(
    store: Store,
    address: str,
    *,
    once: bool,
    idle_exit: float | None,
    device: str | None,
    dtype: str | None,
    log_path: str | None,
    heartbeat: float,
    stale_after: float,
) -> int:
    """Connect to the Ray cluster at `address` (host:port, ray://..., or auto), start one
    worker actor per GPU on this store, and wait for them. Returns the worst exit code."""
    ray = _import_ray()
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except Exception as error:  # unreachable, no cluster for `auto`, a malformed address: all one line
        raise RayError(f"cannot connect to the Ray cluster at {address!r}: {_first_line(error)}") from None
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus < 1:
            # One worker per GPU is the point of --ray; diffusion on CPU nodes is not worth placing.
            raise RayError(f"the Ray cluster at {address!r} has no GPUs (worker --ray starts one worker per GPU; "
                           "on a CPU machine use inpaint-tui worker --processes N)")
        options = dict(once=once, idle_exit=idle_exit, device=device, dtype=dtype,
                       log_path=os.path.abspath(log_path) if log_path else None,  # actors do not run in our cwd
                       heartbeat=heartbeat, stale_after=stale_after)
        actor_class = ray.remote(num_gpus=1, max_restarts=MAX_RESTARTS, max_task_retries=-1,
                                 max_concurrency=3)(RayWorker)
        actors = [actor_class.remote(store.url, str(store.data_dir), options) for _ in range(gpus)]
        log.info("ray: starting %d worker(s), one per GPU of the cluster at %s", gpus, address)
        return _wait(ray, actors)
    finally:
        ray.shutdown()


def _wait(ray, actors: list) -> int:
    """Print each worker as it starts, pass the first SIGINT/SIGTERM on as a stop request to
    every actor and a second as a kill, and wait until every actor's loop has ended."""
    serving = {actor.serve.remote(): index for index, actor in enumerate(actors)}
    starting = {actor.started.remote(): index for index, actor in enumerate(actors)}
    signals: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: signals.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    worst, stop_sent = 0, False
    pending = [*starting, *serving]
    try:
        while any(ref in serving for ref in pending):
            if len(signals) > 1:
                log.warning("ray: %s again, killing the workers (their runs are re-queued by the next worker)",
                            signal.Signals(signals[-1]).name)
                for actor in actors:
                    ray.kill(actor, no_restart=True)
                return 130
            if signals and not stop_sent:
                log.info("ray: %s received, stopping every worker at its next step", signal.Signals(signals[0]).name)
                for actor in actors:
                    actor.stop.remote()
                stop_sent = True
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in done:
                if ref in starting:
                    identity = _get(ray, ref)
                    if isinstance(identity, dict):
                        log.info("ray: worker %s started on %s (GPU %s, pid %s, device %s, actor %s)",
                                 identity["worker"], identity["host"], ",".join(identity["gpus"]) or "-",
                                 identity["pid"], identity["device"], identity["actor"])
                    continue
                index = serving[ref]
                result = _get(ray, ref)
                if isinstance(result, Exception):
                    log.error("ray: worker actor %d failed: %s", index, _first_line(result))
                    worst = 1
                else:
                    log.info("ray: worker %s ended after %d run(s)", *result)
                ray.kill(actors[index], no_restart=True)  # its loop is over: free its GPU
        return worst
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _get(ray, ref):
    """The call's result, or the exception that ended it (an error in the loop, or an actor
    that died more than MAX_RESTARTS times)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        return error.cause if isinstance(error.cause, Exception) else error
    except ray.exceptions.RayError as error:
        return error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = ["RAY_MISSING", "RayError", "RayWorker", "serve_on_ray"]
