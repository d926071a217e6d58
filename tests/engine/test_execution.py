"""GPU execution choices (engine.options.Execution) on `tiny`, CPU fp32: channels-last, a
compiled UNet and the tiled VAE each run every path they touch, are really in effect during
the run, change pixels only within their stated tolerance, and never leak into the next run
on the same cached model."""

import numpy as np
import pytest
import torch

import engine.models
from engine.options import Execution, validate_execution_options
from engine.params import ParamError
from engine.runner import Generation
from engine.samples import make_sample
from tests.conftest import box_mask, make_image

STEPS = 3
# channels-last picks other convolution kernels: the same sums in another order. Measured on
# these samples: at most 1 of 255 levels; allowed: 2.
CHANNELS_LAST_LEVELS = 2


@pytest.fixture(scope="module")
def samples():
    return [make_sample("wide", make_image(128, 96, seed=1), box_mask(128, 96, (30, 20, 90, 70)), "a red apple"),
            make_sample("tall", make_image(96, 128, seed=2), box_mask(96, 128, (10, 40, 70, 100)), "a lamp")]


@pytest.fixture
def model(tiny_model):
    """The shared tiny model, configured back to the defaults after each test."""
    yield tiny_model
    tiny_model.configure(Execution())


def _images(model, technique, samples, execution=None, params=None):
    generation = Generation(model, technique, params=params, steps=STEPS, guidance=5.0, execution=execution)
    results = [generation.sample(sample, seed=7 + k, errors="raise") for k, sample in enumerate(samples)]
    return [np.asarray(result.image, dtype=np.int16) for result in results]


@pytest.mark.parametrize("technique", ["vanilla", "blended"])
def test_channels_last_runs_in_channels_last_and_moves_pixels_by_rounding_only(model, samples, technique):
    reference = _images(model, technique, samples)
    seen = []
    role = "inpaint" if technique == "vanilla" else "txt2img"
    conv = model.unet(role).conv_in
    hook = conv.register_forward_pre_hook(
        lambda module, args: seen.append((module.weight.is_contiguous(memory_format=torch.channels_last),
                                          module.weight.is_contiguous())))
    try:
        images = _images(model, technique, samples, Execution(channels_last=True))
    finally:
        hook.remove()
    assert seen and all(channels_last and not plain for channels_last, plain in seen)
    assert model.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    for image, expected in zip(images, reference):
        assert np.abs(image - expected).max() <= CHANNELS_LAST_LEVELS

    model.configure(Execution())  # the next run on this cached model is back to the plain layout
    assert model.unet(role).conv_in.weight.is_contiguous()
    assert model.vae.decoder.conv_in.weight.is_contiguous()


def test_channels_last_defaults_to_cuda_only():
    assert Execution().channels_last_on("cuda:1") and not Execution().channels_last_on("cpu")
    assert Execution(channels_last=False).channels_last_on("cuda") is False
    assert Execution(channels_last=True).channels_last_on("cpu") is True


class CountingBackend:
    """A torch.compile backend that runs the captured graph as is (so pixels must be
    identical) and counts the graphs it was given with their input shapes."""

    def __init__(self):
        self.shapes = []

    def __call__(self, graph_module, example_inputs):
        self.shapes.append(tuple(tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)))
        return graph_module.forward


@pytest.mark.parametrize("technique, params", [("blended", {}), ("vanilla", {}), ("latentpaint", {})],
                         ids=["blended", "vanilla", "latentpaint"])
def test_compiled_unet_is_used_per_shape_and_gives_the_same_pixels(model, samples, monkeypatch, technique, params):
    reference = _images(model, technique, samples, params=params)
    backend = CountingBackend()
    monkeypatch.setattr(engine.models, "COMPILE_BACKEND", backend)
    model._compiled.clear()
    try:
        images = _images(model, technique, samples, Execution(compile=True), params=params)
        role = "inpaint" if technique == "vanilla" else "txt2img"
        assert isinstance(model.unet(role), torch._dynamo.eval_frame.OptimizedModule)
    finally:
        model.configure(Execution())
        model._compiled.clear()
        torch._dynamo.reset()
    assert backend.shapes, "torch.compile never captured a graph"
    # Both working sizes (128x96 and 96x128: latents 16x12 and 12x16) got a graph of their own.
    latent_shapes = {shape[-2:] for graph in backend.shapes for shape in graph if len(shape) == 4}
    assert {(12, 16), (16, 12)} <= latent_shapes
    for image, expected in zip(images, reference):
        assert np.array_equal(image, expected)


def test_a_changed_execution_warms_the_technique_up_again(model, samples):
    Generation(model, "blended", steps=1).sample(samples[0], seed=1)
    assert "blended" in model.warmed
    Generation(model, "blended", steps=1, execution=Execution()).sample(samples[0], seed=1)
    assert "blended" in model.warmed  # the same choices: nothing to pay again
    model.configure(Execution(vae_tiling=True))
    assert not model.warmed


def test_compile_off_returns_the_plain_unet(model):
    model.configure(Execution(compile=False))
    assert not isinstance(model.unet("txt2img"), torch._dynamo.eval_frame.OptimizedModule)


def test_vae_tiling_decodes_in_tiles_of_half_the_resolution_and_stays_close(model, samples):
    reference = _images(model, "blended", samples[:1])
    decoded = []
    hook = model.vae.decoder.register_forward_pre_hook(lambda module, args: decoded.append(tuple(args[0].shape)))
    try:
        images = _images(model, "blended", samples[:1], Execution(vae_tiling=True))
    finally:
        hook.remove()
    tile_latent = model.resolution // 2 // model.vae_scale_factor  # 64 px tiles: 8x8 latents
    assert len(decoded) > 1 and all(max(shape[-2:]) <= tile_latent for shape in decoded)
    difference = np.abs(images[0] - reference[0]).mean()
    # Tiles blend over a quarter tile, but tiny's random VAE has no local structure that
    # would make them seamless: its own reconstruction is 68 levels (of 255) from the source
    # on average, and tiling moves the output by 15 (measured). Allowed: under 0.3 of it.
    reconstruction_error = np.abs(reference[0] - np.asarray(samples[0].image, dtype=np.int16)).mean()
    assert 0 < difference < 0.3 * reconstruction_error
    model.configure(Execution())
    assert not model.vae.use_tiling


def test_batched_vae_decodes_image_by_image(model, samples):
    """Slicing is always on: a batch's decode is batch 1's decode for each image."""
    decoded = []
    hook = model.vae.decoder.register_forward_pre_hook(lambda module, args: decoded.append(args[0].shape[0]))
    try:
        generation = Generation(model, "blended", steps=1, guidance=1.0, warm_up=False)
        same_size = [samples[0], make_sample("wide2", make_image(128, 96, seed=5), box_mask(128, 96, (0, 0, 50, 50)),
                                             "a boat")]
        generation.batch(same_size, seeds=[1, 2], errors="raise")
    finally:
        hook.remove()
    assert decoded == [1, 1]


def test_execution_options_are_checked_and_defaults_not_recorded():
    options = {"compile": True, "channels_last": False, "vae_tiling": False}
    validate_execution_options(options)
    assert options == {"compile": True, "channels_last": False}
    assert Execution.from_options(options) == Execution(channels_last=False, compile=True)
    with pytest.raises(ParamError, match="compile must be true or false, got 'yes'"):
        validate_execution_options({"compile": "yes"})


def test_an_unknown_dtype_names_the_accepted_spellings():
    with pytest.raises(engine.models.ModelUnavailable, match="dtype must be fp16, bf16 or fp32, got 'fp64'"):
        engine.models._parse_dtype("fp64")
    assert engine.models._parse_dtype("bf16") is torch.bfloat16
