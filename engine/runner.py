"""Run a technique over samples: the one entry point for notebooks, the jobs layer and
benchmarks.

    from engine import inpaint
    for result in inpaint("tiny", "blended", samples, seed=0, steps=20, on_step=print):
        result.image.save(f"{result.sample_id}.png")

Per-sample seeds derive from the run seed and the sample's id (not its position), so a
resumed or reordered run reproduces the same pixels for the same sample.
"""

from __future__ import annotations

import gc
import logging
import resource
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from engine.evaluate import sample_time_metrics
from engine.latents import NonFiniteError, check_finite
from engine.models import Model, load_model
from engine.options import AUTO_BATCH_LIMIT, CPU_AUTO_BATCH, Execution, parse_batch_size
from engine.samples import Sample, prepare
from engine.seeding import sample_seed
from engine.postprocess import postprocess, postprocess_batch
from engine.preview import PreviewTap
from engine.spec import DEFAULTS, EvalConfig, RunSpec, family_guidance
from engine.techniques import Cost, Technique, TechniqueJob, get_technique


log = logging.getLogger(__name__)


class RunAborted(Exception):
    """Raised from a progress callback to stop a run at a step boundary (cancellation).
    Unlike other errors it is not recorded as a failed sample: it ends the run."""


@dataclass(frozen=True)
class Progress:
    """Where a run is: sample `sample_index` of `sample_count` (0-based), `step` of `steps`.

    In a batch, one Progress per step stands for the batch, named by its first sample.
    `preview(max_side)` decodes the sample's latest predicted clean image (the current latent
    for schedulers without one; see engine.preview.PreviewTap). It costs a VAE decode (left
    out of the sample's time and Cost), so call it only for a preview that will be shown.
    """

    sample_index: int
    sample_count: int
    sample_id: str
    step: int
    steps: int
    preview: Callable[[int], Image.Image | None] | None = field(default=None, compare=False, repr=False)
    batch: int = 1  # samples sharing this step: sample_index .. sample_index + batch - 1


@dataclass
class SampleResult:
    """One sample's outcome. `image` is the saved 8-bit output at the working size; metrics
    are computed on it. On failure `image` is None and `error`/`traceback` say why."""

    index: int
    sample_id: str
    seed: int
    size: tuple[int, int]
    image: Image.Image | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    cost: Cost = field(default_factory=Cost)
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float image to uint8 the way diffusers' numpy_to_pil does (round(x·255))."""
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def inpaint(
    model: Model | str,
    technique: Technique | str,
    samples: Iterable[Sample],
    *,
    seed: int = DEFAULTS.seed,
    params: Mapping[str, Any] | None = None,
    steps: int = DEFAULTS.steps,
    guidance: float | None = None,
    negative_prompt: str = "",
    evaluation: EvalConfig | None = None,
    on_step: Callable[[Progress], None] | None = None,
    errors: str = "record",
    warm_up: bool = True,
    seeds: Mapping[str, int] | None = None,
    batch_size: int | str = 1,
    execution: Execution | None = None,
) -> Iterator[SampleResult]:
    """Inpaint each sample, yielding results in sample order as they finish (a loop over
    `Generation.batch`, the entry the worker calls).

    `errors="record"` turns a failing sample into a result with `error` set and goes on;
    `errors="raise"` re-raises. `RunAborted` from `on_step` always propagates.
    `seeds` may fix a sample's seed by id (a resumed run passes the recorded ones); the
    default is `sample_seed(seed, sample.id)`. `evaluation` chooses the generation-time
    metrics (default: EvalConfig(), i.e. the catalogue's default groups). `batch_size`
    samples at a time share each model call (a number or "auto": see `BatchSizer` and
    `Generation.batch`). `execution` picks channels-last, compiled UNets and VAE tiling
    (engine.options.Execution; default: channels-last on CUDA only).
    """
    generation = Generation(model, technique, params=params, steps=steps, guidance=guidance,
                            negative_prompt=negative_prompt, evaluation=evaluation, warm_up=warm_up,
                            execution=execution)
    sizer = BatchSizer(batch_size, generation.model)
    sample_list = list(samples)
    first = 0
    while first < len(sample_list):
        window = sample_list[first : first + sizer.next()]
        window_seeds = [seeds[sample.id] if seeds and sample.id in seeds else sample_seed(seed, sample.id)
                        for sample in window]
        results = generation.batch(window, seeds=window_seeds, first_index=first, count=len(sample_list),
                                   on_step=on_step, errors=errors)
        sizer.observe(results)
        yield from results
        first += len(window)


class Generation:
    """One run's generation, prepared once: the model, the technique and its validated
    parameters, steps, guidance, negative prompt and evaluation settings. `batch` inpaints
    samples that share model calls, `sample` one sample; the first call on a model also
    warms the technique up (see `_warm_up`)."""

    def __init__(
        self,
        model: Model | str,
        technique: Technique | str,
        *,
        params: Mapping[str, Any] | None = None,
        steps: int = DEFAULTS.steps,
        guidance: float | None = None,
        negative_prompt: str = "",
        evaluation: EvalConfig | None = None,
        warm_up: bool = True,
        execution: Execution | None = None,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.model = load_model(model) if isinstance(model, str) else model
        self.technique = get_technique(technique) if isinstance(technique, str) else technique
        self.params = self.technique.resolve_params(params)
        self.steps = steps
        # None: the model's default for this technique (7.5; FLUX's distilled scales)
        self.guidance = family_guidance(self.model.family, self.technique.unet) if guidance is None else guidance
        self.negative_prompt = negative_prompt
        self.evaluation = evaluation if evaluation is not None else EvalConfig()
        self.warm_up = warm_up
        self.execution = execution if execution is not None else Execution()
        self.model.configure(self.execution)

    @classmethod
    def from_spec(cls, model: Model, spec: RunSpec, **options: Any) -> "Generation":
        return cls(model, spec.technique, params=spec.params, steps=spec.steps, guidance=spec.guidance,
                   negative_prompt=spec.negative_prompt, evaluation=spec.evaluation, **options)

    def sample(
        self,
        sample: Sample,
        *,
        seed: int,
        index: int = 0,
        count: int = 1,
        on_step: Callable[[Progress], None] | None = None,
        errors: str = "record",
    ) -> SampleResult:
        return self.batch([sample], seeds=[seed], first_index=index, count=count, on_step=on_step,
                          errors=errors)[0]

    def batch(
        self,
        samples: Sequence[Sample],
        *,
        seeds: Sequence[int],
        first_index: int = 0,
        count: int | None = None,
        on_step: Callable[[Progress], None] | None = None,
        errors: str = "record",
    ) -> list[SampleResult]:
        """Inpaint `samples` (with their `seeds`), sharing each model call among those of one
        working size; results in sample order. Every sample keeps its own seed, noise
        streams, mask and prompt, so its pixels are the ones it gets alone up to the kernels'
        batch-size rounding (exact when the kernels are batch-invariant; see
        engine.batching). A batch that raises is retried sample by sample, so a failing
        sample fails alone. A batched sample's `seconds` is its share of the batch's time,
        its `peak_memory_mb` the batch's."""
        if errors not in ("record", "raise"):
            raise ValueError(f"errors must be 'record' or 'raise', not {errors!r}")
        if len(seeds) != len(samples):
            raise ValueError(f"{len(samples)} samples but {len(seeds)} seeds")
        count = len(samples) if count is None else count
        if self.warm_up and samples:
            _warm_up(self.model, self.technique, self.params, samples[0], self.guidance, self.negative_prompt)
        results: list[SampleResult | None] = [None] * len(samples)
        groups: dict[tuple[int, int], list[_Item]] = {}
        for offset, (sample, seed) in enumerate(zip(samples, seeds)):
            item = _Item(first_index + offset, sample, seed)
            try:
                item.working = prepare(sample, self.model.resolution, self.params.get("resize", "fit"),
                                       self.model.preset.size_multiple)
            except Exception as error:
                if errors == "raise":
                    raise
                results[offset] = _failed(item, error, self.model)
                continue
            groups.setdefault(item.working.size, []).append(item)
        for items in groups.values():
            for item, result in zip(items, _inpaint_group(self, items, count, on_step, errors)):
                results[item.index - first_index] = result
        return results


@dataclass
class _Item:
    index: int
    sample: Sample
    seed: int
    working: Sample | None = None


def _inpaint_group(generation: Generation, items: list[_Item], count: int,
                   on_step: Callable[[Progress], None] | None, errors: str) -> list[SampleResult]:
    """One batch of one working size; on an error (other than cancellation) each sample is
    run again alone, so only a sample that fails alone is recorded as failed."""
    if len(items) == 1:
        return [_inpaint_batch(generation, items, count, on_step, errors)[0]]
    try:
        return _inpaint_batch(generation, items, count, on_step, "raise")
    except RunAborted:
        raise
    except Exception as error:
        log.info("a batch of %d failed (%s: %s); running its samples one by one",
                 len(items), type(error).__name__, error)
        out_of_memory = isinstance(error, torch.cuda.OutOfMemoryError)
    if out_of_memory:
        _release_cached_memory()
    return [_inpaint_batch(generation, [item], count, on_step, errors)[0] for item in items]


def _inpaint_batch(
    generation: Generation,
    items: list[_Item],
    count: int,
    on_step: Callable[[Progress], None] | None,
    errors: str,
) -> list[SampleResult]:
    model, technique, params = generation.model, generation.technique, generation.params
    results = [SampleResult(index=item.index, sample_id=item.sample.id, seed=item.seed, size=item.working.size)
               for item in items]
    first = items[0]
    tap = PreviewTap(model)

    def report(done: int, total: int) -> None:
        if on_step is not None:
            on_step(Progress(first.index, count, first.sample.id, done, total, preview=tap.image,
                             batch=len(items)))

    memory = _PeakMemory(model.device)
    started = time.perf_counter()
    out_of_memory = False
    try:
        jobs = [TechniqueJob(item.working, params, generation.steps, generation.guidance, item.seed,
                             generation.negative_prompt, report) for item in items]
        # Only a listener can ask for previews; without one the loops run untouched.
        # inference_mode: no autograd bookkeeping at all (decoder fine-tuning, the one step
        # that needs gradients, leaves it itself).
        with tap if on_step is not None else nullcontext(), torch.inference_mode():
            raws = technique.run_batch(model, jobs)
            for raw in raws:
                # Techniques stepping through LatentInpainting.step already stopped at a bad
                # step; the others (a diffusers pipeline) are caught here, before any metric or file.
                if raw.latents is not None:
                    check_finite(raw.latents, "final latent", model, generation.guidance)
                check_finite(raw.image, "decoded image", model, generation.guidance)
            outputs = postprocess_batch(model, jobs, raws)
        for output in outputs:
            check_finite(output.image, "post-processed image", model, generation.guidance)
        seconds = (time.perf_counter() - started - tap.seconds) / len(items)
        peak = memory.peak_mb()
        for result, item, output in zip(results, items, outputs):
            result.seconds, result.peak_memory_mb = seconds, peak
            pixels = to_uint8(output.image)
            result.image = Image.fromarray(pixels, mode="RGB")
            result.cost = output.cost
            result.metrics = sample_time_metrics(pixels, np.asarray(item.working.image), item.working.binary_mask,
                                                 generation.evaluation)
            result.metrics["seconds"] = result.seconds
            result.metrics["peak_memory_mb"] = result.peak_memory_mb
            result.metrics.update(output.cost.as_metrics())
    except RunAborted:
        raise
    except Exception as error:
        if errors == "raise":
            raise
        results = [_failed(item, error, model, item.working.size) for item in items]
        out_of_memory = isinstance(error, torch.cuda.OutOfMemoryError)
    if out_of_memory:
        _release_cached_memory()
    return results


def _failed(item: _Item, error: Exception, model: Model, size: tuple[int, int] = (0, 0)) -> SampleResult:
    return SampleResult(index=item.index, sample_id=item.sample.id, seed=item.seed, size=size,
                        error=_describe(error, model, size), traceback=traceback.format_exc())


AUTO_MEMORY_SHARE = 0.8  # of the GPU memory free after the first sample that `auto` plans to use


class BatchSizer:
    """How many samples the next batch takes. A number is used as given. `auto` on the CPU
    takes CPU_AUTO_BATCH; on CUDA it runs the first sample alone and then sizes batches
    from that sample's memory (its peak over what was allocated before it) and the memory
    free then (at most AUTO_BATCH_LIMIT). A batch that ran out of GPU memory halves the
    next batches (its samples were retried alone)."""

    def __init__(self, choice: int | str | None, model: Model) -> None:
        choice = parse_batch_size(choice)
        self.auto = choice == "auto"
        self.cuda = model.device.startswith("cuda")
        self.size = (1 if self.cuda else CPU_AUTO_BATCH) if self.auto else choice
        self._baseline_mb = torch.cuda.memory_allocated(model.device) / 2**20 if self.cuda else 0.0
        self._device = model.device
        self._sized = not (self.auto and self.cuda)

    def next(self) -> int:
        return self.size

    def observe(self, results: Sequence[SampleResult]) -> None:
        if any(result.error and result.error.startswith("out of GPU memory") for result in results):
            self.size = max(1, self.size // 2)
            self._sized = True
            return
        if self._sized:
            return
        peaks = [result.peak_memory_mb for result in results if result.ok]
        if not peaks:
            return
        per_sample = max(max(peaks) - self._baseline_mb, 1.0)
        free, _total = torch.cuda.mem_get_info(self._device)
        cached = torch.cuda.memory_reserved(self._device) - torch.cuda.memory_allocated(self._device)
        available = (free + cached) / 2**20
        self.size = max(1, min(AUTO_BATCH_LIMIT, int(AUTO_MEMORY_SHARE * available / per_sample)))
        self._sized = True
        log.info("batch size %d: %.0f MiB per sample, %.0f MiB free", self.size, per_sample, available)


def _warm_up(model: Model, technique: Technique, params: Mapping[str, Any], sample: Sample, guidance: float,
             negative_prompt: str) -> None:
    """One untimed single-step pass, discarded, before the first timed sample of a technique
    on this model. Without it the first sample's `seconds` carries one-time
    costs the others do not: a UNet read from disk on first use, CUDA kernels loaded lazily,
    allocator growth; on CPU the first tiny sample took 0.89 s against 0.22-0.26 s for the next
    five. A worker keeping the model warms each technique once, so the first run on it is not
    penalised against later ones. The pass has its own generator: no sample's pixels change.
    A failure is left for the timed sample to meet and record (and the next call tries again)."""
    if technique.name in model.warmed:  # checked first: called once per sample
        return
    out_of_memory = False
    try:
        working = prepare(sample, model.resolution, params.get("resize", "fit"), model.preset.size_multiple)
        job = TechniqueJob(working, params, 1, guidance, 0, negative_prompt)
        postprocess(model, job, technique.run(model, job))
        model.warmed.add(technique.name)
    except Exception as error:
        out_of_memory = isinstance(error, torch.cuda.OutOfMemoryError)
    if out_of_memory:
        _release_cached_memory()


def _release_cached_memory() -> None:
    """After an out-of-memory sample, hand its freed blocks back so the next sample can
    allocate. Runs after the except block: until then the traceback's frames still hold the
    failed sample's tensors."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _describe(error: Exception, model: Model, size: tuple[int, int]) -> str:
    if isinstance(error, NonFiniteError):
        return str(error)
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return f"out of GPU memory at {size[0]}x{size[1]} on {model.device} ({model.dtype}): {error}"
    return f"{type(error).__name__}: {error}"


class _PeakMemory:
    """Peak CUDA memory allocated during a sample, or on CPU the growth of the process's
    peak resident set (0 when the sample did not raise the high-water mark)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            self.device = device
        else:
            self.start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.start_kb) / 1024
