import numpy as np
import pytest
import torch

from engine.latents import dilate, encode_image, image_to_tensor, latent_mask
from engine.runner import inpaint, to_uint8
from engine.samples import make_sample, resize_to, working_size
from engine.seeding import sample_seed
from engine.techniques import TechniqueJob, get_technique
from engine.techniques.blended import shrink_kernels, shrink_schedule
from tests.conftest import box_mask, make_image

STEPS = 4


@pytest.fixture(scope="module")
def two_samples(demo):
    return demo[:2]


def test_vanilla_equals_diffusers_called_directly(tiny_model, two_samples):
    """The engine adds nothing to diffusers: an independently built pipeline with the same
    components, seed and settings gives the same pixels."""
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    from engine.models import tiny_components

    parts = tiny_components()
    for name in ("vae", "text_encoder", "inpaint_unet"):
        parts[name].eval()  # as diffusers' from_pretrained leaves a loaded model
    pipe = StableDiffusionInpaintPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["inpaint_unet"],
        scheduler=DDIMScheduler.from_config(parts["scheduler_config"]), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    results = list(inpaint(tiny_model, "vanilla", two_samples, seed=3, steps=STEPS, guidance=7.5, errors="raise"))
    for sample, result in zip(two_samples, results):
        working = resize_to(sample, working_size(sample.size, 128))
        direct = pipe(
            prompt=sample.prompt, image=working.image, mask_image=working.mask_image(), height=working.size[1],
            width=working.size[0], num_inference_steps=STEPS, guidance_scale=7.5,
            generator=torch.Generator("cpu").manual_seed(sample_seed(3, sample.id)), output_type="np",
        ).images[0]
        np.testing.assert_array_equal(np.asarray(result.image), to_uint8(direct))
        assert result.cost.unet_calls == STEPS


def test_progressive_shrink_schedule_hand_worked_example():
    # RESEARCH.md: N = 50, n = 2 -> chunks of 17 steps: 0-16 the 5x5 dilation, 17-33 the 3x3, 34-49 exact.
    assert shrink_kernels(2) == [5, 3, 1]
    schedule = shrink_schedule(50, 2)
    kernels = [shrink_kernels(2)[index] for index in schedule]
    assert kernels == [5] * 17 + [3] * 17 + [1] * 16
    assert shrink_kernels(3) == [7, 5, 3, 1]
    assert shrink_schedule(10, 0) == [0] * 10


def test_progressive_shrink_always_ends_on_the_exact_mask():
    # N = 4, n = 2: the paper's chunks of 2 would never reach the exact mask.
    assert shrink_schedule(4, 2) == [0, 0, 1, 2]


def test_dilate_grows_by_half_the_kernel():
    mask = torch.zeros(1, 1, 9, 9)
    mask[0, 0, 4, 4] = 1
    assert dilate(mask, 3).sum() == 9 and dilate(mask, 5).sum() == 25 and torch.equal(dilate(mask, 1), mask)


def _job(sample, **params):
    technique = get_technique("blended")
    return TechniqueJob(sample, technique.resolve_params(params), STEPS, 7.5, seed=11)


@pytest.mark.parametrize("params", [{}, {"progressive_shrink": 2}, {"blend_start": 0.5}])
def test_blended_background_latent_is_exactly_the_source_latent(tiny_model, two_samples, params):
    """Blended Latent Diffusion's defining invariant: after the last step the latent outside
    the (exact) latent mask is the clean source latent, bit for bit."""
    sample = resize_to(two_samples[0], working_size(two_samples[0].size, 128))
    output = get_technique("blended").run(tiny_model, _job(sample, **params))
    z_src = encode_image(tiny_model, image_to_tensor(sample.image, tiny_model))
    keep = latent_mask(sample, tuple(z_src.shape[-2:]), tiny_model) == 0
    keep = keep.expand_as(z_src)
    assert keep.any() and (~keep).any()
    assert torch.equal(output.latents[keep], z_src[keep])
    assert not torch.equal(output.latents[~keep], z_src[~keep])  # the hole was generated


def test_blend_start_skips_steps_and_progressive_shrink_changes_the_result(tiny_model, two_samples):
    sample = resize_to(two_samples[0], working_size(two_samples[0].size, 128))
    technique = get_technique("blended")
    plain = technique.run(tiny_model, _job(sample))
    late = technique.run(tiny_model, _job(sample, blend_start=0.5))
    shrunk = technique.run(tiny_model, _job(sample, progressive_shrink=2))
    assert plain.cost.unet_calls == STEPS and late.cost.unet_calls == STEPS - 2 and shrunk.cost.unet_calls == STEPS
    assert not np.array_equal(plain.image, shrunk.image)
    assert not np.array_equal(plain.image, late.image)


@pytest.mark.parametrize("technique", ["vanilla", "blended"])
def test_same_seed_same_pixels_other_seed_other_pixels(tiny_model, two_samples, technique):
    def images(seed):
        return [np.asarray(r.image) for r in inpaint(tiny_model, technique, two_samples, seed=seed, steps=STEPS, errors="raise")]

    first, again, other = images(5), images(5), images(6)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_seed_depends_on_sample_not_position(tiny_model, two_samples):
    forward = {r.sample_id: np.asarray(r.image) for r in inpaint(tiny_model, "blended", two_samples, steps=2)}
    backward = {r.sample_id: np.asarray(r.image) for r in inpaint(tiny_model, "blended", two_samples[::-1], steps=2)}
    for key in forward:
        np.testing.assert_array_equal(forward[key], backward[key])


def test_progress_is_reported_every_step(tiny_model, two_samples):
    seen = []
    list(inpaint(tiny_model, "blended", two_samples, steps=STEPS, on_step=seen.append))
    assert [(p.sample_index, p.step, p.steps) for p in seen] == [(i, s, STEPS) for i in range(2) for s in range(1, STEPS + 1)]


def test_a_failing_sample_is_recorded_and_the_run_goes_on(tiny_model, two_samples):
    # A 1-pixel mask on a large image vanishes at the model's 128 px working size.
    speck = make_sample("speck", make_image(512, 512), box_mask(512, 512, (10, 10, 11, 11)), "a speck")
    results = list(inpaint(tiny_model, "blended", [speck, two_samples[0]], steps=2))
    assert not results[0].ok and "speck" in results[0].error and "empty" in results[0].error
    assert results[0].traceback and results[0].image is None
    assert results[1].ok and results[1].image is not None
    with pytest.raises(Exception, match="empty"):
        list(inpaint(tiny_model, "blended", [speck], steps=2, errors="raise"))


@pytest.mark.parametrize("technique", ["vanilla", "blended", "diffdiff", "latentpaint", "repaint", "tdpaint"])
def test_the_untimed_warm_up_changes_no_pixel(tiny_model, two_samples, technique):
    tiny_model.warmed.clear()
    warmed = [np.asarray(r.image) for r in inpaint(tiny_model, technique, two_samples, steps=2, errors="raise")]
    assert tiny_model.warmed == {technique}
    tiny_model.warmed.clear()
    cold = [np.asarray(r.image) for r in inpaint(tiny_model, technique, two_samples, steps=2, errors="raise",
                                                 warm_up=False)]
    assert not tiny_model.warmed
    for a, b in zip(warmed, cold):
        np.testing.assert_array_equal(a, b)


def test_the_warm_up_runs_one_step_once_per_technique(tiny_model, two_samples):
    """Counted on the real UNet: one extra call the first time, none after (a worker that
    keeps the model warms each technique once), and again after a failed warm-up."""
    calls = []
    hook = tiny_model.unet("inpaint").register_forward_hook(lambda *_: calls.append(1))
    try:
        tiny_model.warmed.clear()
        list(inpaint(tiny_model, "vanilla", two_samples[:1], steps=2))
        assert len(calls) == 1 + 2
        calls.clear()
        list(inpaint(tiny_model, "vanilla", two_samples[:1], steps=2))
        assert len(calls) == 2
    finally:
        hook.remove()

    tiny_model.warmed.clear()
    speck = make_sample("speck", make_image(512, 512), box_mask(512, 512, (10, 10, 11, 11)), "a speck")
    [failed] = inpaint(tiny_model, "vanilla", [speck], steps=2)
    assert not failed.ok and "empty" in failed.error  # the timed sample records what the warm-up met
    assert not tiny_model.warmed


def test_outputs_have_the_working_size_and_metrics(tiny_model, two_samples):
    for sample, result in zip(two_samples, inpaint(tiny_model, "vanilla", two_samples, steps=2)):
        assert result.image.size == working_size(sample.size, 128) == result.size
        assert set(result.metrics) >= {"bg_mse", "bg_psnr", "seconds", "peak_memory_mb"}
        assert 0 < result.metrics["bg_mse"] < 1


def test_model_without_the_needed_unet_says_so(tiny_model):
    from engine.models import Model, ModelUnavailable

    limited = Model(tiny_model.preset, "cpu", tiny_model.dtype, tiny_model.vae, tiny_model.text_encoder,
                    tiny_model.tokenizer, tiny_model.scheduler_config)
    with pytest.raises(ModelUnavailable, match="no txt2img UNet"):
        limited.unet("txt2img")
