"""Batched generation equals batch 1: every technique and option, on `tiny`, CPU fp32.

Exact (bit for bit) with batch-invariant kernels on both sides (tests/batch_invariance.py:
this CPU's conv/linear/group-norm kernels round differently at other batch sizes, ~2e-6 on a
UNet output), which checks that each sample keeps its own seed, noise streams, mask, prompt
and hooks; and within the kernels' rounding with the stock kernels (at most 2 of 255 levels,
the largest measured over these cases being 1).
"""

from dataclasses import replace

import numpy as np
import pytest

from engine.runner import Generation
from engine.samples import make_sample
from engine.techniques import get_technique
from tests.batch_invariance import batch_invariant_kernels
from tests.conftest import box_mask, make_image

STEPS = 4
STOCK_KERNEL_LEVELS = 2  # 8-bit levels a batched pixel may move by with the stock kernels


def _soft_mask(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.clip(1.2 - np.hypot(x - width / 2, y - height / 2) / (width / 3), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def samples():
    """Four samples of one working size (different images, masks, prompts) and one of another."""
    width, height = 128, 96
    masks = [box_mask(width, height, (20, 16, 70, 60)), box_mask(width, height, (60, 30, 120, 90)),
             _soft_mask(width, height), box_mask(width, height, (0, 0, 40, 96))]
    prompts = ["a red apple", "a wooden chair", "a green hill", "a small boat on a lake"]
    made = [make_sample(f"s{k}", make_image(width, height, seed=k), mask, prompt)
            for k, (mask, prompt) in enumerate(zip(masks, prompts))]
    made.append(make_sample("tall", make_image(96, 128, seed=9), box_mask(96, 128, (10, 10, 60, 90)), "a lamp"))
    return made


CASES = [
    ("vanilla", {}),
    ("vanilla", {"strength": 0.7, "scheduler": "euler_ancestral"}),
    ("vanilla", {"padding_mask_crop": 8}),
    ("blended", {}),
    ("blended", {"blend_start": 0.3, "progressive_shrink": 2}),
    ("tdpaint", {"t_bg": 50.0}),
    ("repaint", {"jump_length": 1, "jump_n_sample": 2}),
    ("diffdiff", {}),
    ("diffdiff", {"noise": "fresh", "strength": 0.5}),
    ("latentpaint", {}),
    ("latentpaint", {"blocks": "all", "propagate_until": 1.0}),
    ("blended", {"post_condition": True, "post_strength": 0.5}),
    ("vanilla", {"background": "paste"}),
    ("blended", {"background": "feather"}),
    ("tdpaint", {"background": "poisson"}),
    ("blended", {"background": "decoder", "decoder_steps": 2}),
]


def _ids(case):
    technique, params = case
    return technique + "".join(f"-{key}={value}" for key, value in params.items())


def _run(tiny_model, technique, params, samples, batch):
    generation = Generation(tiny_model, technique, params=params, steps=STEPS, guidance=5.0,
                            negative_prompt="blurry" if technique == "vanilla" else "")
    seeds = [11 * k + 3 for k in range(len(samples))]
    if batch:
        return generation.batch(samples, seeds=seeds, errors="raise")
    return [generation.sample(sample, seed=seed, index=k, errors="raise")
            for k, (sample, seed) in enumerate(zip(samples, seeds))]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_batch_equals_batch_one_exactly_with_batch_invariant_kernels(tiny_model, samples, case):
    technique, params = case
    with batch_invariant_kernels():
        alone = _run(tiny_model, technique, params, samples, batch=False)
        batched = _run(tiny_model, technique, params, samples, batch=True)
    for one, many in zip(alone, batched):
        assert many.ok, many.error
        assert (many.index, many.sample_id, many.seed, many.size) == (one.index, one.sample_id, one.seed, one.size)
        np.testing.assert_array_equal(np.asarray(many.image), np.asarray(one.image), err_msg=many.sample_id)
        assert many.cost == one.cost
        quality = {key: value for key, value in one.metrics.items() if key not in ("seconds", "peak_memory_mb")}
        assert {key: many.metrics[key] for key in quality} == quality
    # The batch really shared calls, and the samples differ from each other (nothing collapsed).
    assert len({np.asarray(result.image).tobytes() for result in batched}) == len(samples)


SDXL_CASES = [("vanilla", {}), ("blended", {"progressive_shrink": 1}), ("latentpaint", {}),
              ("blended", {"post_condition": True, "post_strength": 0.5})]


@pytest.mark.parametrize("case", SDXL_CASES, ids=_ids)
def test_on_sdxl_a_batch_equals_batch_one_exactly_with_batch_invariant_kernels(tiny_sdxl_model, samples, case):
    """The SDXL family's added conditioning (pooled text, time ids) is per sample too."""
    technique, params = case
    with batch_invariant_kernels():
        alone = _run(tiny_sdxl_model, technique, params, samples, batch=False)
        batched = _run(tiny_sdxl_model, technique, params, samples, batch=True)
    for one, many in zip(alone, batched):
        assert many.ok, many.error
        np.testing.assert_array_equal(np.asarray(many.image), np.asarray(one.image), err_msg=many.sample_id)
    assert len({np.asarray(result.image).tobytes() for result in batched}) == len(samples)


FLUX_CASES = [("vanilla", {}), ("blended", {"progressive_shrink": 1}), ("tdpaint", {"t_bg": 50.0}),
              ("blended", {"post_condition": True, "post_unet": "inpaint"})]


@pytest.mark.parametrize("case", FLUX_CASES, ids=_ids)
def test_on_flux_a_batch_equals_batch_one_exactly_with_batch_invariant_kernels(tiny_flux_model, samples, case):
    """FLUX's packed tokens, ids, pooled text and distilled guidance are per sample too."""
    technique, params = case
    generation_args = dict(params=params, steps=STEPS, guidance=3.5)
    seeds = [11 * k + 3 for k in range(len(samples))]
    with batch_invariant_kernels():
        generation = Generation(tiny_flux_model, technique, **generation_args)
        alone = [generation.sample(sample, seed=seed, index=k, errors="raise")
                 for k, (sample, seed) in enumerate(zip(samples, seeds))]
        batched = generation.batch(samples, seeds=seeds, errors="raise")
    for one, many in zip(alone, batched):
        assert many.ok, many.error
        np.testing.assert_array_equal(np.asarray(many.image), np.asarray(one.image), err_msg=many.sample_id)
    assert len({np.asarray(result.image).tobytes() for result in batched}) == len(samples)


@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[6], CASES[8], CASES[9]], ids=_ids)
def test_batch_equals_batch_one_within_the_kernels_rounding(tiny_model, samples, case):
    technique, params = case
    alone = _run(tiny_model, technique, params, samples, batch=False)
    batched = _run(tiny_model, technique, params, samples, batch=True)
    for one, many in zip(alone, batched):
        difference = np.abs(np.asarray(many.image, dtype=np.int16) - np.asarray(one.image, dtype=np.int16))
        assert difference.max() <= STOCK_KERNEL_LEVELS, (many.sample_id, int(difference.max()))


def test_one_shared_unet_call_per_step_for_the_whole_batch(tiny_model, samples):
    """The batch is one forward per step (B·2 rows with CFG), not B forwards."""
    calls = []
    unet = tiny_model.unet("txt2img")
    handle = unet.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        results = _run(tiny_model, "blended", {}, samples[:4], batch=True)
    finally:
        handle.remove()
    assert all(result.ok for result in results)
    assert calls == [8] * STEPS
    assert [result.cost.unet_calls for result in results] == [STEPS] * 4


def test_a_sample_that_fails_in_a_batch_fails_alone(tiny_model, samples):
    """A batch that raises is retried sample by sample: the bad sample is recorded as failed
    with its own error and the others equal their batch-1 results."""
    blended = get_technique("blended")
    attempts = []

    def fragile(model, jobs):
        attempts.append(len(jobs))
        if any(job.sample.prompt == "a green hill" for job in jobs):
            raise RuntimeError("this sample cannot be generated")
        return blended.run_batch(model, jobs)

    faulty = replace(blended, name="blended-fragile", run_batch=fragile)
    with batch_invariant_kernels():
        generation = Generation(tiny_model, faulty, steps=STEPS, guidance=5.0)
        seeds = [5, 6, 7, 8]
        results = generation.batch(samples[:4], seeds=seeds)
        good = Generation(tiny_model, "blended", steps=STEPS, guidance=5.0)
        expected = [good.sample(sample, seed=seed) for sample, seed in zip(samples[:4], seeds)]
    assert attempts[-5:] == [4, 1, 1, 1, 1]  # the batch, then each sample alone
    assert [result.ok for result in results] == [True, True, False, True]
    assert results[2].error == "RuntimeError: this sample cannot be generated"
    for result, alone in zip(results, expected):
        if result.ok:
            np.testing.assert_array_equal(np.asarray(result.image), np.asarray(alone.image))


def test_progress_is_one_report_per_step_naming_the_batch(tiny_model, samples):
    seen = []
    generation = Generation(tiny_model, "blended", steps=STEPS, guidance=5.0)
    generation.batch(samples, seeds=[1, 2, 3, 4, 5], first_index=10, count=20,
                     on_step=lambda progress: seen.append((progress.sample_index, progress.batch, progress.step)))
    # Four of one working size share a batch; the fifth (another size) runs after them.
    assert seen == [(10, 4, step) for step in range(1, STEPS + 1)] + [(14, 1, step) for step in range(1, STEPS + 1)]


def test_batch_sizes_given_auto_and_after_running_out_of_memory(tiny_model):
    from engine.options import CPU_AUTO_BATCH
    from engine.runner import BatchSizer, SampleResult

    assert BatchSizer(None, tiny_model).next() == 1
    assert BatchSizer("auto", tiny_model).next() == CPU_AUTO_BATCH
    sizer = BatchSizer(8, tiny_model)
    ok = SampleResult(index=0, sample_id="a", seed=0, size=(8, 8))
    sizer.observe([ok])
    assert sizer.next() == 8
    oom = SampleResult(index=1, sample_id="b", seed=0, size=(8, 8), error="out of GPU memory at 8x8 on cuda")
    sizer.observe([ok, oom])
    assert sizer.next() == 4
    for bad in (0, -2, True, "four", 2.5):
        with pytest.raises(ValueError, match="batch_size must be a whole number >= 1 or 'auto'"):
            BatchSizer(bad, tiny_model)
