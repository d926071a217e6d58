"""Executing a claimed run with the engine (imports torch: never import this from a face at
module level).

Each finished sample is written in its own short transaction (image file first, then row and
metrics), so an interruption loses at most the sample in progress; executing the run again
redoes only samples that are not done, with their recorded seeds. Every write is made under
the worker's claim on the run (see `inpaint_tui.store.queue`).

The run's row is read once per claim (its spec is fixed); generation is prepared once per
run (engine.runner.Generation) and called per batch of `batch_size` samples (run option; 1
unless given, `auto` sizes it, see engine.runner.BatchSizer); each sample of a batch is
still recorded on its own. At every denoising step the run's
claim and cancel flag are read once: a cancel request or a lost claim stops
the run at that step boundary. Step progress goes to the store at most `PROGRESS_INTERVAL`
apart; phase changes and sample boundaries (begin, end) are written at once.

Failures stay with the sample they hit: an output that cannot be written (disk full,
permission) fails that sample with the errno and the file, and the run goes on. Progress
rows and previews are best effort (a locked database delays them); a sample's record and the
run's end are retried with backoff (see `inpaint_tui.jobs.resilience`).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from engine.options import Execution
from engine.models import load_model
from engine.runner import BatchSizer, Generation, Progress, RunAborted
from engine.samples import SampleError
from inpaint_tui.jobs.resilience import FailureLog, best_effort, durable
from inpaint_tui.jobs.runs import run_spec
from inpaint_tui.jobs.samples import to_engine_sample
from inpaint_tui.store import RunStatus, Store
from inpaint_tui.store.queue import ClaimLost, RunControl

PROGRESS_INTERVAL = 0.25  # seconds between progress writes: a few per second at most
PREVIEW_SIDE = 256  # longest side of the live preview PNG, in pixels
CRASH_ENV = "INPAINT_TUI_CRASH_AT"  # fault injection for the crash-recovery tests

log = logging.getLogger(__name__)
failures = FailureLog(log)  # one per process: the worker executes one run at a time


@dataclass(frozen=True)
class RunProgress:
    """What a run is doing now, for progress bars: samples finished so far in the whole run,
    and the current sample's denoising step."""

    run_id: int
    samples_done: int
    sample_count: int
    sample_name: str | None
    step: int
    steps: int
    steps_per_second: float | None = None
    phase: str = "generating"


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a run: its id and the claim counter it got when claiming."""

    worker_id: int
    claim: int


class Cancelled(RunAborted):
    """The user cancelled the run."""


class Stopping(RunAborted):
    """The worker was asked to stop: the run goes back to the queue."""


class Lost(RunAborted):
    """The run is no longer this worker's."""


def quiet_libraries() -> None:
    """Silence library chatter that means nothing to a user of the CLI (torchvision-less
    image-processor fallbacks, casting notices of freshly built models)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")


def crash_point(name: str) -> None:
    """Die here as `kill -9` would when $INPAINT_TUI_CRASH_AT names this point. Only the
    crash-recovery tests set it, on worker processes they start."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def execute_claimed(
    store: Store,
    run_id: int,
    lease: Lease,
    *,
    device: str | None = None,
    dtype: str | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> str:
    """Run a claimed run to its end, then evaluate it. Returns the final status, or
    "queued" when the worker was stopped (the run went back to the queue) or "lost" when
    the run stopped being this worker's."""
    try:
        return _execute(store, run_id, lease, device, dtype, on_progress, on_message, stop)
    except (ClaimLost, Lost):
        log.warning("run %s is no longer held by worker %s; leaving it", run_id, lease.worker_id)
        return "lost"


def _execute(store, run_id, lease, device, dtype, on_progress, on_message, stop) -> str:
    # read once per claim: the spec cannot change while the run is held
    run = durable(failures, "reading the run", store.run, run_id)
    device = device or run.options.get("device")
    dtype = dtype or run.options.get("dtype")
    pending = durable(failures, "reading run samples", store.pending_samples, run_id)
    monitor = _Monitor(store, run, lease, on_progress, stop, samples_done=run.sample_count - len(pending))
    monitor.phase("loading")
    try:
        model = load_model(run.model, device=device, dtype=dtype,
                           allow_pickle_weights=bool(run.options.get("allow_pickle_weights")))
    except Exception as error:
        return durable(failures, "recording the run's end", store.finish_run, run_id,
                       error=f"cannot load model {run.model!r}: {error}", claim=lease.claim)
    _use_recorded_threads(durable(
        failures, "recording the run's device", store.set_run_device,
        run_id, f"{model.device} ({str(model.dtype).removeprefix('torch.')})", threads=torch.get_num_threads(),
        claim=lease.claim))
    _remove_partial_files(store, run_id)
    generation = Generation.from_spec(model, run_spec(run), execution=Execution.from_options(run.options))

    monitor.phase("generating")
    record = functools.partial(durable, failures, "recording a sample", store.record_sample)
    # Animations keep one sample's frames at a time, so a run that saves them goes one by one.
    sizer = BatchSizer(1 if monitor.animation else run.options.get("batch_size"), model)
    queue = list(pending)
    while queue:
        window, queue = queue[: sizer.next()], queue[sizer.next():]
        batch = []  # (run sample, info, engine sample) of the window's readable samples
        for run_sample, info in window:
            durable(failures, "marking a sample running", store.mark_sample_running, run_id, info.id,
                    claim=lease.claim)
            try:
                batch.append((run_sample, info, to_engine_sample(info)))
            except SampleError as error:
                record(run_id, info.id, image_path=None, metrics={}, seconds=None, width=None, height=None,
                       error=str(error), claim=lease.claim)
                monitor.samples_done += 1
        if not batch:
            continue
        monitor.begin_sample(batch[0][0].position, batch[0][1].name)
        try:
            results = generation.batch([sample for _, _, sample in batch], seeds=[rs.seed for rs, _, _ in batch],
                                       first_index=batch[0][0].position, on_step=monitor.step)
        except Cancelled:
            for _, info, _ in batch:
                durable(failures, "resetting a sample", store.reset_sample, run_id, info.id, claim=lease.claim)
            return durable(failures, "recording the run's end", store.finish_run, run_id, cancelled=True,
                           claim=lease.claim)
        except Stopping:
            durable(failures, "releasing the run", store.release_run, run_id, lease.claim)
            return RunStatus.QUEUED
        for (run_sample, info, _), result in zip(batch, results):
            image_path = animation_path = None
            if result.image is not None:
                image_path, animation_path, write_error = _write_outputs(store, monitor, result, run_id,
                                                                         run_sample.position, info.name)
                if write_error is not None:  # the sample fails; the next one may have room again
                    log.warning("run %s: %s", run_id, write_error)
                    result.error, result.traceback, result.metrics = write_error, None, {}
            record(
                run_id, info.id, image_path=image_path, metrics=result.metrics,
                seconds=result.seconds if result.ok else None, width=result.size[0] or None,
                height=result.size[1] or None, error=result.error, traceback=result.traceback,
                animation_path=animation_path, claim=lease.claim,
            )
            crash_point(f"after_sample:{run_sample.position}")
        monitor.end_sample(len(batch))
        sizer.observe(results)

    monitor.phase("evaluating")
    crash_point("evaluating")
    _evaluate(store, run_id, on_message)
    return durable(failures, "recording the run's end", store.finish_run, run_id, claim=lease.claim)


def _write_outputs(store: Store, monitor: "_Monitor", result, run_id: int, position: int,
                   name: str) -> tuple[str | None, str | None, str | None]:
    """Write a sample's image (and animation): (image path, animation path, error). An
    OSError (ENOSPC, EACCES, EFBIG, ...) becomes the sample's error, naming the file;
    nothing of the sample stays on disk (atomic_write removes its temporary file)."""
    buffer = io.BytesIO()
    result.image.save(buffer, format="PNG")
    relative = f"runs/{run_id}/{store.output_name(position, name)}"
    try:
        image_path = store.save_output(run_id, position, name, buffer.getvalue())
    except OSError as error:
        return None, None, f"cannot write output {relative}: {_os_error(error)}"
    try:
        animation_path = monitor.save_animation(position, name)
    except OSError as error:
        store.files.remove(image_path)  # no output without its record
        animation = f"runs/{run_id}/{store.output_name(position, name, monitor.animation)}"
        return None, None, f"cannot write output {animation}: {_os_error(error)}"
    return image_path, animation_path, None


def _os_error(error: OSError) -> str:
    """'[Errno 28] No space left on device' (the file is named by the caller, relative)."""
    return f"[Errno {error.errno}] {error.strerror}" if error.errno is not None else str(error)


class _Monitor:
    """The worker's side of a run in progress: the per-step cancel/claim check, throttled
    progress rows, live previews and animation frames, and the caller's progress callback."""

    def __init__(self, store: Store, run, lease: Lease, on_progress, stop: threading.Event | None, *,
                 samples_done: int) -> None:
        self.store = store
        self.run = run
        self.lease = lease
        self.on_progress = on_progress
        self.stop = stop
        self.preview_every = int(run.options.get("preview_every") or 0)
        self.animation = run.options.get("animation")
        self.frame_every = self.preview_every or max(1, run.steps // 20)
        self.samples_done = samples_done
        self.sample_seconds: list[float] = []
        self.current_phase = "loading"
        self.position: int | None = None
        self.name: str | None = None
        self.frames: list = []
        self.step_rate: float | None = None
        self.sample_started = self.last_step = self.last_write = 0.0
        self.preview_path: str | None = None
        self.preview_step: int | None = None

    def phase(self, name: str) -> None:
        self.current_phase = name
        self._publish(0, self.run.steps, force=True)

    def begin_sample(self, position: int, name: str) -> None:
        """The next batch starts at `position`; progress names it by its first sample."""
        self.position, self.name = position, name
        self.frames = []
        self.sample_started = self.last_step = time.perf_counter()
        # Sample boundaries are always written: throttled, the row would name the sample just
        # finished until the next one's first step, which on a real model can be many seconds.
        self._publish(0, self.run.steps, force=True)

    def end_sample(self, size: int = 1) -> None:
        share = (time.perf_counter() - self.sample_started) / size  # each sample's share of its batch
        self.sample_seconds.extend([share] * size)
        self.samples_done += size
        self._publish(0, self.run.steps, force=True)

    def step(self, progress: Progress) -> None:
        """The runner's step callback: may raise Cancelled, Stopping or Lost."""
        if self.stop is not None and self.stop.is_set():
            raise Stopping()
        # A read; if the database is briefly unreachable the step goes on and the next one checks.
        control = best_effort(failures, "checking the run's claim", self.store.check_claim, self.run.id,
                              self.lease.claim) or RunControl.CONTINUE
        if control == RunControl.CANCEL:
            raise Cancelled()
        if control == RunControl.LOST:
            raise Lost()
        crash_point(f"step:{self.position}:{progress.step}")
        now = time.perf_counter()
        rate = 1.0 / max(now - self.last_step, 1e-9)
        self.step_rate = rate if self.step_rate is None else 0.7 * self.step_rate + 0.3 * rate
        self.last_step = now
        self._capture(progress)
        self._publish(progress.step, progress.steps, force=False)

    def _capture(self, progress: Progress) -> None:
        last = progress.step == progress.steps
        want_preview = self.preview_every and (progress.step % self.preview_every == 0 or last)
        want_frame = self.animation and (progress.step % self.frame_every == 0 or last)
        if not (want_preview or want_frame) or progress.preview is None:
            return
        image = progress.preview(PREVIEW_SIDE)
        if image is None:
            return
        if want_frame:
            self.frames.append(image)
        if want_preview:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            try:  # a preview is a convenience: a full disk must not fail the sample for it
                self.preview_path = self.store.save_run_file(self.run.id, "preview.png", buffer.getvalue())
                self.preview_step = progress.step
                failures.ok("writing the preview")
            except OSError as error:
                failures.failed("writing the preview", error, "skipped")

    def save_animation(self, position: int, name: str) -> str | None:
        if not self.animation or not self.frames:
            return None
        from engine.preview import write_animation

        data = write_animation(self.frames, self.animation)
        return self.store.save_run_file(self.run.id, self.store.output_name(position, name, self.animation), data)

    def _publish(self, step: int, steps: int, *, force: bool) -> None:
        now = time.monotonic()
        if force or now - self.last_write >= PROGRESS_INTERVAL:
            if not force:  # a boundary's write must not hold back the next sample's step writes
                self.last_write = now
            seconds = sum(self.sample_seconds) / len(self.sample_seconds) if self.sample_seconds else None
            # Best effort: a locked database delays progress, never fails the sample (ClaimLost still stops it).
            best_effort(
                failures, "writing progress", self.store.write_progress,
                self.run.id, self.lease.claim, self.lease.worker_id, phase=self.current_phase,
                samples_done=self.samples_done, sample_count=self.run.sample_count, sample_position=self.position,
                sample_name=self.name, step=step, steps=steps, steps_per_second=self.step_rate,
                seconds_per_sample=seconds, preview_path=self.preview_path, preview_step=self.preview_step,
            )
        if self.on_progress is not None:
            self.on_progress(RunProgress(self.run.id, self.samples_done, self.run.sample_count, self.name, step, steps,
                                         self.step_rate, self.current_phase))


def _use_recorded_threads(recorded: int | None) -> None:
    """Run with the CPU thread count the run first ran with: torch's reductions differ
    across thread counts (1 vs 2 threads moved up to 4 of 10,240 pixels by one 8-bit level),
    so a resumed run on a worker with another count would not reproduce the first samples'
    pixels. Process-wide, set per run: a worker executes one run at a time."""
    if recorded is not None and recorded != torch.get_num_threads():
        log.info("using the run's recorded %d CPU threads (this process had %d)", recorded, torch.get_num_threads())
        torch.set_num_threads(recorded)


def _remove_partial_files(store: Store, run_id: int) -> None:
    """Temporary files a killed worker left mid-write (finished files have final names)."""
    store.files.remove_partials(f"runs/{run_id}")


def _evaluate(store: Store, run_id: int, on_message: Callable[[str], None] | None) -> None:
    """The run's set-level and model-based metrics. A failure here is reported and leaves
    the finished samples and their metrics in place: `metrics compute` can retry it."""
    from inpaint_tui.jobs.evaluate import evaluate_run

    try:  # retried whole on a database outage: it replaces the metrics it computes
        durable(failures, "evaluating the run", evaluate_run, store, run_id, at_end=True, on_message=on_message)
    except Exception as error:  # evaluation must never lose a run's generated samples
        from inpaint_tui.jobs.evaluate import summarize_samples

        # the per-sample metrics still get their run means
        durable(failures, "summarising the run", summarize_samples, store, run_id)
        if on_message is not None:
            on_message(f"evaluation of run {run_id} failed: {type(error).__name__}: {error}; "
                       f"retry with `inpaint-tui metrics compute {run_id}`")
        log.debug("evaluation failed", exc_info=True)


__all__ = ["Lease", "RunProgress", "execute_claimed", "quiet_libraries"]
