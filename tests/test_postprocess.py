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


def _laplacian(image):
    return 4 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2] - image[1:-1, 2:]


def test_poisson_keeps_outside_the_box_and_the_generated_gradients_inside():
    rng = np.random.default_rng(1)
    h, w = 32, 40
    y, x = np.mgrid[0:h, 0:w] / 40.0
    source = np.stack([0.3 + 0.2 * x, 0.4 + 0.1 * y, 0.5 + 0.05 * x * y], axis=2)
    generated = np.clip(source + 0.1 * np.sin(6 * x)[:, :, None] + rng.normal(0, 0.01, (h, w, 3)), 0, 1)
    mask = np.zeros((h, w), bool)
    mask[10:20, 12:30] = True
    mask[12, 11] = True  # an irregular mask: the box is what is cloned
    out = poisson_blend(generated, source, mask).astype(np.float64)
    bbox = mask_bounding_box(mask)
    box = np.zeros((h, w), bool)
    box[bbox.top : bbox.bottom, bbox.left : bbox.right] = True
    np.testing.assert_array_equal(out[~box], source[~box].astype(np.float32))
    assert 0 < out.min() and out.max() < 1  # no clipping, so the equation holds exactly below
    inner = box[1:-1, 1:-1]
    np.testing.assert_allclose(_laplacian(out)[inner], _laplacian(generated)[inner], atol=1e-5)


def test_poisson_at_the_image_border():
    source = np.full((12, 12, 3), 0.5)
    generated = np.full((12, 12, 3), 0.9)
    mask = np.zeros((12, 12), bool)
    mask[0:5, 0:5] = True
    out = poisson_blend(generated, source, mask)
    # a constant generated image has zero gradients: the box takes the boundary's value
    np.testing.assert_allclose(out, 0.5, atol=1e-5)


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
