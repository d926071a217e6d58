"""Post-processing options, each checked against its definition on real tiny-model outputs."""

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from engine.metrics.crop import mask_bounding_box
from engine.postprocess import feather, gaussian_blur, gaussian_kernel, paste, poisson_blend
from engine.runner import inpaint
from engine.samples import resize_to, working_size
from engine.techniques import get_technique
from engine.techniques.registry import TechniqueJob

STEPS = 4


@pytest.fixture(scope="module")
def sample(demo):
    return demo[0]


@pytest.fixture(scope="module")
def working(sample):
    return resize_to(sample, working_size(sample.size, 128))


def _run(tiny_model, sample, technique="blended", **params):
    return next(inpaint(tiny_model, technique, [sample], seed=1, steps=STEPS, params=params, errors="raise"))


@pytest.mark.parametrize("technique", ["vanilla", "blended"])
def test_paste_equals_the_input_exactly_outside_the_mask(tiny_model, sample, working, technique):
    raw = _run(tiny_model, sample, technique)
    pasted = _run(tiny_model, sample, technique, background="paste")
    keep = ~working.binary_mask
    out, src = np.asarray(pasted.image), np.asarray(working.image)
    np.testing.assert_array_equal(out[keep], src[keep])
    np.testing.assert_array_equal(out[~keep], np.asarray(raw.image)[~keep])  # inside: the technique's pixels
    assert pasted.metrics["bg_mse"] == 0.0 and raw.metrics["bg_mse"] > 0


def test_gaussian_kernel_follows_opencv():
    np.testing.assert_allclose(gaussian_kernel(3), [0.25, 0.5, 0.25])
    k21 = gaussian_kernel(21)
    sigma = 0.3 * ((21 - 1) * 0.5 - 1) + 0.8  # OpenCV's default for ksize 21: 3.5
    x = np.arange(21) - 10
    np.testing.assert_allclose(k21, np.exp(-(x**2) / (2 * sigma**2)) / np.exp(-(x**2) / (2 * sigma**2)).sum())
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(4)


def test_separable_blur_equals_a_direct_2d_convolution():
    rng = np.random.default_rng(0)
    mask = (rng.random((30, 40)) > 0.7).astype(np.float64)
    k = gaussian_kernel(9)
    padded = np.pad(mask, 4, mode="reflect")  # OpenCV's BORDER_REFLECT_101
    direct = convolve2d(padded, np.outer(k, k), mode="valid")
    np.testing.assert_allclose(gaussian_blur(mask, 9), direct, atol=1e-12)


def test_feather_definition(tiny_model, sample, working):
    raw = _run(tiny_model, sample, "blended")
    out = np.asarray(_run(tiny_model, sample, "blended", background="feather").image)
    mask = working.binary_mask
    blurred = gaussian_blur(mask.astype(np.float64), 21)
    src, gen = np.asarray(working.image), np.asarray(raw.image)
    untouched = blurred == 0
    assert untouched.any()
    np.testing.assert_array_equal(out[untouched], src[untouched])  # input where the blur never reaches
    np.testing.assert_array_equal(out[mask], gen[mask])  # the hole stays fully generated
    ring = ~mask & ~untouched
    assert ring.any() and not np.array_equal(out[ring], src[ring])  # the seam is blended


def test_feather_grows_outward_only():
    generated, source = np.ones((20, 20, 3)), np.zeros((20, 20, 3))
    mask = np.zeros((20, 20), bool)
    mask[8:12, 8:12] = True
    out = feather(generated, source, mask, 7)
    assert (out[mask] == 1).all() and (out[~mask] < 1).all() and out[7, 10, 0] > 0


def _scene(h=64, w=64, seed=1):
    """A smooth input and a generated image that differs from it by structure and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 40.0
    source = np.clip(np.stack([0.3 + 0.2 * x, 0.4 + 0.1 * y, 0.5 + 0.05 * x * y], axis=2), 0, 1)
    generated = np.clip(source + 0.15 * np.sin(6 * x)[:, :, None] + rng.normal(0, 0.03, (h, w, 3)), 0, 1)
    return generated, source


POISSON_LEVELS = 1 / 255
"""Tolerance where seamless cloning must reproduce an image: one 8-bit level (OpenCV solves
in float32 and rounds to 8 bits)."""


def test_poisson_keeps_the_input_outside_the_box():
    generated, source = _scene(32, 40)
    mask = np.zeros((32, 40), bool)
    mask[10:20, 12:30] = True
    mask[12, 11] = True  # an irregular mask: its bounding box is what is solved over
    out = poisson_blend(generated, source, mask)
    bbox = mask_bounding_box(mask)
    box = np.zeros((32, 40), bool)
    box[bbox.top : bbox.bottom, bbox.left : bbox.right] = True
    np.testing.assert_array_equal(out[~box], (np.round(source[~box] * 255) / 255).astype(np.float32))
    assert np.abs(out[mask] - np.round(source[mask] * 255) / 255).max() > 0.05  # the hole was cloned


BORDER_MASKS = {
    "top": (0, 20, 10, 50), "bottom": (44, 64, 10, 50), "left": (10, 50, 0, 20), "right": (10, 50, 44, 64),
    "corner": (0, 24, 0, 24), "whole image": (0, 64, 0, 64),
}


def _cross(h=64, w=64):
    mask = np.zeros((h, w), bool)
    mask[28:36, :] = True
    mask[:, 28:36] = True  # reaches all four borders: the box is the whole image
    return mask


@pytest.mark.parametrize("name", [*BORDER_MASKS, "cross"])
def test_poisson_of_a_shifted_copy_is_the_input_whatever_the_border(name):
    """Generated = input + a constant: the gradients are the input's everywhere, so the clone
    must give the input back (to POISSON_LEVELS), also for masks at every border and for a
    box covering the whole image. The old solver had no boundary there (singular system)."""
    _, source = _scene()
    shifted = np.clip(source + 0.1, 0, 1)
    if name == "cross":
        mask = _cross()
    else:
        top, bottom, left, right = BORDER_MASKS[name]
        mask = np.zeros((64, 64), bool)
        mask[top:bottom, left:right] = True
    out = poisson_blend(shifted, source, mask)
    assert np.abs(out - source).max() <= POISSON_LEVELS + 0.5 / 255  # the input's own 8-bit rounding


def test_poisson_cross_mask_reaching_every_border_is_not_corrupted():
    """The seen defect: a cross-shaped mask on 64×64 gave background error 0.414 against
    0.05 for the generated image itself. The clone's background must be nearer the input
    than the generated background is."""
    generated, source = _scene()
    mask = _cross()
    out = poisson_blend(generated, source, mask)
    background_error = np.abs(out[~mask] - source[~mask]).mean()
    assert background_error < np.abs(generated[~mask] - source[~mask]).mean()
    assert 0 < out.min() and out.max() < 1 or background_error < 0.05


def test_poisson_takes_the_input_gradient_outside_the_mask_inside_the_box():
    """NORMAL_CLONE with the mask: within the box but outside the mask the guidance is the
    input's gradient, so generated noise there does not survive (the old solver kept the
    generated gradient over the whole box)."""
    rng = np.random.default_rng(4)
    _, source = _scene()
    generated = np.clip(source + rng.normal(0, 0.05, source.shape), 0, 1)  # noise everywhere
    mask = np.zeros((64, 64), bool)
    mask[20:44, 20:26] = True
    mask[20:26, 20:44] = True  # an L: most of its box is not mask
    out = poisson_blend(generated, source, mask)
    box = np.zeros((64, 64), bool)
    box[20:44, 20:44] = True
    ring = box & ~mask
    noise_level = np.abs(generated[ring] - source[ring]).mean()
    assert np.abs(out[ring] - source[ring]).mean() < noise_level / 3


def test_decoder_finetuning_lowers_background_error_and_leaves_the_model_alone(tiny_model, sample):
    before = {k: v.clone() for k, v in tiny_model.vae.state_dict().items()}
    plain = _run(tiny_model, sample, "blended")
    tuned = _run(tiny_model, sample, "blended", background="decoder", decoder_steps=15, decoder_lr=1e-3)
    assert tuned.metrics["bg_mse"] < plain.metrics["bg_mse"]
    after = tiny_model.vae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert tuned.cost.optimisation_steps == 15 and tuned.cost.vae_decodes == plain.cost.vae_decodes + 16
    # the shared decoder still decodes as before: the same run again gives the same pixels
    np.testing.assert_array_equal(np.asarray(_run(tiny_model, sample, "blended").image), np.asarray(plain.image))


def test_decoder_works_without_a_technique_latent(tiny_model, working):
    technique = get_technique("blended")
    params = technique.resolve_params({"background": "decoder", "decoder_steps": 2})
    job = TechniqueJob(working, params, 2, 7.5, seed=0)
    from engine.postprocess import postprocess

    output = technique.run(tiny_model, job)
    output.latents = None
    result = postprocess(tiny_model, job, output)
    assert result.cost.vae_encodes == output.cost.vae_encodes + 1 and result.image.shape == output.image.shape


@pytest.mark.parametrize("unet", ["txt2img", "inpaint"])
def test_post_condition_reruns_the_tail_and_costs_s_times_n(tiny_model, sample, unet):
    steps = 10
    post = next(inpaint(tiny_model, "blended", [sample], seed=1, steps=steps, errors="raise",
                        params={"post_condition": True, "post_strength": 0.3, "post_unet": unet}))
    base = next(inpaint(tiny_model, "blended", [sample], seed=1, steps=steps, errors="raise"))
    assert post.cost.unet_calls == base.cost.unet_calls + 3  # ⌊(1 − 0.3)·10⌋ = 7: steps 7, 8, 9 again
    assert not np.array_equal(np.asarray(post.image), np.asarray(base.image))


def test_post_condition_then_paste_keeps_the_background(tiny_model, sample, working):
    out = _run(tiny_model, sample, "vanilla", post_condition=True, background="paste")
    keep = ~working.binary_mask
    np.testing.assert_array_equal(np.asarray(out.image)[keep], np.asarray(working.image)[keep])


def test_paste_function_is_the_formula():
    rng = np.random.default_rng(2)
    gen, src = rng.random((5, 6, 3)), rng.random((5, 6, 3))
    mask = rng.random((5, 6)) > 0.5
    m = mask[:, :, None].astype(float)
    np.testing.assert_allclose(paste(gen, src, mask), m * gen + (1 - m) * src, rtol=1e-6)


def test_decoder_finetuning_optimises_the_decoder_only(tiny_model, working, monkeypatch):
    """Blended Latent Diffusion optimises the VAE decoder's parameters, not post_quant_conv:
    the optimiser is handed exactly as many tensors, of the same shapes, as the decoder has."""
    optimised = []
    real_adam = torch.optim.Adam

    def spy(params, **kwargs):
        params = list(params)
        optimised.extend(params)
        return real_adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    technique = get_technique("blended")
    job = TechniqueJob(working, technique.resolve_params({"background": "decoder", "decoder_steps": 1}), 2, 7.5, 0)
    from engine.postprocess import postprocess

    postprocess(tiny_model, job, technique.run(tiny_model, job))
    decoder_shapes = [tuple(p.shape) for p in tiny_model.vae.decoder.parameters()]
    assert [tuple(p.shape) for p in optimised] == decoder_shapes
