"""`vanilla`'s diffusers options: the scheduler choice and padding_mask_crop, on the real tiny
model. Pixel equality with diffusers is checked against a pipeline built independently from
fresh components, as tests/engine/test_techniques.py does for the defaults."""

import numpy as np
import pytest
import torch

from engine.models import SCHEDULERS, scheduler_class, scheduler_names
from engine.runner import inpaint, to_uint8
from engine.samples import make_sample, resize_to, working_size
from engine.seeding import sample_seed
from engine.techniques import TechniqueJob, get_technique
from tests.conftest import box_mask, make_image

STEPS = 4
SEED = 3
PAD = 8


@pytest.fixture(scope="module")
def samples(demo):
    # Already at the working size, so the runner's resize is a no-op and a direct pipeline
    # call sees exactly the same inputs.
    return [resize_to(s, working_size(s.size, 128)) for s in demo[:2]]


@pytest.fixture(scope="module")
def direct_parts():
    from engine.models import tiny_components

    parts = tiny_components()
    for name in ("vae", "text_encoder", "inpaint_unet"):
        parts[name].eval()  # as diffusers' from_pretrained leaves a loaded model
    return parts


def _direct_pipe(parts, scheduler="ddim"):
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["inpaint_unet"],
        scheduler=scheduler_class(scheduler).from_config(parts["scheduler_config"], **SCHEDULERS[scheduler][1]),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(model, sample, **params):
    technique = get_technique("vanilla")
    job = TechniqueJob(sample, technique.resolve_params(params), STEPS, 7.5, seed=SEED)
    return technique.run(model, job)


def _source(sample):
    return np.asarray(sample.image)


def _outside(box, shape):
    left, top, right, bottom = box
    outside = np.ones(shape, dtype=bool)
    outside[top:bottom, left:right] = False
    return outside


@pytest.fixture(scope="module")
def ddim_output(tiny_model, samples):
    return _run(tiny_model, samples[0])


def test_scheduler_choices_include_the_usual_samplers():
    assert scheduler_names()[0] == "ddim" == get_technique("vanilla").schema.get("scheduler").default
    assert {"ddim", "pndm", "euler", "euler_ancestral", "dpmpp_2m", "unipc", "lms"} == set(scheduler_names())


@pytest.mark.parametrize("scheduler", [name for name in scheduler_names() if name != "ddim"])
def test_each_scheduler_runs_and_gives_other_pixels_than_ddim(tiny_model, samples, ddim_output, scheduler):
    seen = []
    technique = get_technique("vanilla")
    job = TechniqueJob(samples[0], technique.resolve_params({"scheduler": scheduler}), STEPS, 7.5, seed=SEED,
                       on_step=lambda done, total: seen.append((done, total)))
    output = technique.run(tiny_model, job)
    assert np.isfinite(output.image).all() and output.latents is not None
    assert not np.array_equal(to_uint8(output.image), to_uint8(ddim_output.image))
    # PLMS evaluates its second timestep twice; the others take one UNet call per step.
    expected = STEPS + 1 if scheduler == "pndm" else STEPS
    assert output.cost.unet_calls == expected
    assert seen == [(i, expected) for i in range(1, expected + 1)]


def test_scheduler_is_built_from_the_model_config_like_a_diffusers_swap(tiny_model, samples, direct_parts):
    """A non-default, stochastic sampler still gives diffusers' own pixels."""
    working = samples[1]
    result = next(inpaint(tiny_model, "vanilla", [working], seed=SEED, steps=STEPS,
                          params={"scheduler": "euler_ancestral"}, errors="raise"))
    direct = _direct_pipe(direct_parts, "euler_ancestral")(
        prompt=working.prompt, image=working.image, mask_image=working.mask_image(), height=working.size[1],
        width=working.size[0], num_inference_steps=STEPS, guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(sample_seed(SEED, working.id)), output_type="np",
    ).images[0]
    np.testing.assert_array_equal(np.asarray(result.image), to_uint8(direct))


def test_padding_mask_crop_equals_diffusers_called_directly(tiny_model, samples, direct_parts):
    pipe = _direct_pipe(direct_parts)
    results = list(inpaint(tiny_model, "vanilla", samples, seed=SEED, steps=STEPS,
                           params={"padding_mask_crop": PAD}, errors="raise"))
    for working, result in zip(samples, results):
        direct = pipe(
            prompt=working.prompt, image=working.image, mask_image=working.mask_image(), height=working.size[1],
            width=working.size[0], num_inference_steps=STEPS, guidance_scale=7.5, padding_mask_crop=PAD,
            generator=torch.Generator("cpu").manual_seed(sample_seed(SEED, working.id)), output_type="pil",
        ).images[0]
        np.testing.assert_array_equal(np.asarray(result.image), np.asarray(direct))
        assert result.cost.unet_calls == STEPS


def test_padding_mask_crop_keeps_the_input_outside_the_crop_box(tiny_model, samples):
    """diffusers' overlay pastes the input wherever the 8-bit mask is 0 (always the case
    outside the crop box): exact there, no tolerance needed."""
    from diffusers.image_processor import VaeImageProcessor

    sample = samples[1]
    output = _run(tiny_model, sample, padding_mask_crop=PAD)
    pixels, source = to_uint8(output.image), _source(sample)
    box = output.extras["crop_box"]
    assert box == VaeImageProcessor.get_crop_region(sample.mask_image(), *sample.size, pad=PAD)
    outside = _outside(box, sample.mask.shape)
    assert outside.any() and not outside.all()  # the box is a real crop here
    np.testing.assert_array_equal(pixels[outside], source[outside])
    keep = np.asarray(sample.mask_image()) == 0
    np.testing.assert_array_equal(pixels[keep], source[keep])
    hole = sample.binary_mask
    assert np.abs(pixels[hole].astype(int) - source[hole]).mean() > 5  # the hole was generated
    # Not the uncropped result: the crop is inpainted at the full working resolution.
    plain = to_uint8(_run(tiny_model, sample).image)
    assert not np.array_equal(pixels[hole], plain[hole])
    assert output.latents is None and output.cost.vae_decodes == 1


@pytest.mark.parametrize(
    "size, box",
    [((128, 96), (0, 0, 40, 30)),  # a top-left corner: the padded box is clipped by two borders
     ((96, 128), (80, 0, 96, 40))],  # top-right: widening to the aspect ratio overshoots the right edge
)
def test_padding_mask_crop_with_a_mask_touching_the_border(tiny_model, direct_parts, size, box):
    width, height = size
    sample = make_sample("edge", make_image(width, height, seed=4), box_mask(width, height, box), "a red ball")
    assert working_size(sample.size, 128) == size  # what the runner would hand the technique
    output = _run(tiny_model, sample, padding_mask_crop=16)
    pixels, source = to_uint8(output.image), _source(sample)
    assert pixels.shape == (height, width, 3)
    left, top, right, bottom = crop = output.extras["crop_box"]
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    outside = _outside(crop, sample.mask.shape)
    assert outside.any()
    np.testing.assert_array_equal(pixels[outside], source[outside])
    direct = _direct_pipe(direct_parts)(
        prompt=sample.prompt, image=sample.image, mask_image=sample.mask_image(), height=height, width=width,
        num_inference_steps=STEPS, guidance_scale=7.5, padding_mask_crop=16,
        generator=torch.Generator("cpu").manual_seed(SEED), output_type="pil",
    ).images[0]
    np.testing.assert_array_equal(pixels, np.asarray(direct))


@pytest.mark.parametrize(
    "params",
    [{}, {"padding_mask_crop": PAD}, {"strength": 0.5}, {"strength": 0.5, "padding_mask_crop": PAD},
     {"scheduler": "pndm"}],
)
def test_cost_counts_what_the_models_actually_ran(tiny_model, samples, params):
    """Forward hooks on the real modules count every UNet, encoder and decoder pass."""
    calls = {"unet": 0, "encoder": 0, "decoder": 0}
    modules = {"unet": tiny_model.unet("inpaint"), "encoder": tiny_model.vae.encoder, "decoder": tiny_model.vae.decoder}

    def counter(name):
        def hook(*_):
            calls[name] += 1
        return hook

    handles = [module.register_forward_hook(counter(name)) for name, module in modules.items()]
    try:
        output = _run(tiny_model, samples[0], **params)
    finally:
        for handle in handles:
            handle.remove()
    assert (output.cost.unet_calls, output.cost.vae_encodes, output.cost.vae_decodes) == (
        calls["unet"], calls["encoder"], calls["decoder"])


def test_decoder_background_encodes_the_cropped_result(tiny_model, samples):
    """With padding_mask_crop there is no latent: background=decoder encodes the image and
    counts that encode."""
    result = next(inpaint(tiny_model, "vanilla", samples[:1], seed=SEED, steps=STEPS, errors="raise",
                          params={"padding_mask_crop": PAD, "background": "decoder", "decoder_steps": 1}))
    assert result.ok
    assert (result.cost.vae_encodes, result.cost.vae_decodes, result.cost.optimisation_steps) == (2, 3, 1)
