"""Executing a queued run with the engine (imports torch: never import this from a face at
module level).

Each finished sample is written in its own short transaction (image file first, then row and
metrics), so an interruption loses at most the sample in progress; executing the run again
redoes only samples that are not done, with their recorded seeds.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

from engine.runner import Progress, inpaint
from engine.models import load_model
from inpaint_tui.jobs.samples import to_engine_sample
from inpaint_tui.store import RunStatus, Store
from engine.samples import SampleError


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


def quiet_libraries() -> None:
    """Silence library chatter that means nothing to a user of the CLI (torchvision-less
    image-processor fallbacks, casting notices of freshly built models)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")


def execute_run(
    store: Store,
    run_id: int,
    *,
    device: str | None = None,
    dtype: str | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> str:
    """Run (or resume) a run to its end, then evaluate it; returns the final status."""
    run = store.run(run_id)
    pending = store.pending_samples(run_id)
    done_before = run.sample_count - len(pending)
    try:
        model = load_model(run.model, device=device, dtype=dtype)
    except Exception as error:
        store.start_run(run_id, device or "?")
        return store.finish_run(run_id, error=f"cannot load model {run.model!r}: {error}")
    store.start_run(run_id, f"{model.device} ({str(model.dtype).removeprefix('torch.')})")

    samples_done = done_before

    def report(progress: Progress | None, name: str | None) -> None:
        if on_progress is not None:
            on_progress(
                RunProgress(
                    run_id, samples_done, run.sample_count, name,
                    progress.step if progress else 0, progress.steps if progress else run.steps,
                )
            )

    report(None, None)
    for run_sample, info in pending:
        store.mark_sample_running(run_id, info.id)
        try:
            sample = to_engine_sample(info)
        except SampleError as error:
            store.record_sample(run_id, info.id, image_path=None, metrics={}, seconds=None,
                                width=None, height=None, error=str(error))
            samples_done += 1
            continue
        results = inpaint(
            model,
            run.technique,
            [sample],
            seed=run.seed,
            params=run.params,
            steps=run.steps,
            guidance=run.guidance,
            negative_prompt=run.negative_prompt,
            on_step=lambda progress, name=info.name: report(progress, name),
            seeds={sample.id: run_sample.seed},
        )
        for result in results:
            image_path = None
            if result.image is not None:
                buffer = io.BytesIO()
                result.image.save(buffer, format="PNG")
                image_path = store.save_output(run_id, run_sample.position, info.name, buffer.getvalue())
            store.record_sample(
                run_id,
                info.id,
                image_path=image_path,
                metrics=result.metrics,
                seconds=result.seconds if result.ok else None,
                width=result.size[0] or None,
                height=result.size[1] or None,
                error=result.error,
                traceback=result.traceback,
            )
        samples_done += 1
        report(None, info.name)
    _evaluate(store, run_id, on_message)
    return store.finish_run(run_id)


def _evaluate(store: Store, run_id: int, on_message: Callable[[str], None] | None) -> None:
    """The run's set-level and model-based metrics. A failure here is reported and leaves
    the finished samples and their metrics in place: `metrics compute` can retry it."""
    from inpaint_tui.jobs.evaluate import evaluate_run

    try:
        evaluate_run(store, run_id, on_message=on_message)
    except Exception as error:  # evaluation must never lose a run's generated samples
        if on_message is not None:
            on_message(f"evaluation of run {run_id} failed: {type(error).__name__}: {error}; "
                       f"retry with `inpaint-tui metrics compute {run_id}`")
        logging.getLogger(__name__).debug("evaluation failed", exc_info=True)


__all__ = ["RunProgress", "RunStatus", "execute_run", "quiet_libraries"]
