"""The FLUX family on `tiny-flux`, CPU fp32: the flow's own noising and schedule, `vanilla`
against diffusers' FluxFillPipeline and `blended` against FluxInpaintPipeline (exact), the
background invariants and reductions, every option, and the refusals (techniques that do not
apply, a negative prompt)."""

import re

import numpy as np
import pytest
import torch

from engine import flux
from engine.latents import LatentInpainting, latent_mask
from engine.params import ParamError
from engine.runner import to_uint8
from engine.samples import make_sample, resize_to, working_size
from engine.spec import RunSpec
from engine.techniques import TechniqueJob, get_technique
from tests.conftest import box_mask, make_image

STEPS = 4


@pytest.fixture(scope="module")
def sample(demo):
    return resize_to(demo[1], working_size(demo[1].size, 128))


def _job(technique, sample, seed=3, guidance=3.5, **params):
    return TechniqueJob(sample, get_technique(technique).resolve_params(params), STEPS, guidance, seed)


def _run(model, technique, sample, **kwargs):
    return get_technique(technique).run(model, _job(technique, sample, **kwargs))


def test_the_flow_noising_is_the_schedulers_own(tiny_flux_model, sample):
    """add_noise at index i is FlowMatchEulerDiscreteScheduler.scale_noise at t_i: (1 − σ)·z + σ·ε."""
    task = LatentInpainting(tiny_flux_model, _job("blended", sample))
    eps = task.noise()
    reference = tiny_flux_model.new_scheduler()
    flux.set_timesteps(reference, STEPS, tuple(task.z_src.shape[-2:]), "cpu")
    for index in range(STEPS):
        reference._step_index, reference._begin_index = None, None
        expected = reference.scale_noise(task.z_src, reference.timesteps[index : index + 1], eps)
        assert torch.equal(task.add_noise(task.z_src, eps, index), expected), index
    assert float(task.scheduler.sigmas[0]) == 1.0  # the first step starts from pure noise
    assert torch.equal(task.noise_to_timestep(task.z_src, eps, 50.0), 0.95 * task.z_src + 0.05 * eps)


def test_the_schedule_is_the_pipelines_shifted_one(tiny_flux_model, sample):
    from diffusers import FlowMatchEulerDiscreteScheduler

    task = LatentInpainting(tiny_flux_model, _job("blended", sample))
    h, w = task.z_src.shape[-2:]
    tokens = (h // 2) * (w // 2)
    mu = 0.5 + (1.15 - 0.5) * (tokens - 256) / (4096 - 256)  # the pipelines' calculate_shift
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(flux.FLUX_SCHEDULER_CONFIG)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / STEPS, STEPS), mu=mu)
    assert torch.equal(task.timesteps, scheduler.timesteps)
    assert flux.calculate_shift(tokens, flux.FLUX_SCHEDULER_CONFIG) == pytest.approx(mu, abs=1e-12)


def test_pack_and_unpack_are_inverse_and_match_diffusers(tiny_flux_model):
    from diffusers import FluxPipeline

    latents = torch.randn(2, 16, 12, 16)
    packed = flux.pack(latents)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 2, 16, 12, 16))
    assert torch.equal(flux.unpack(packed, (12, 16)), latents)
    assert torch.equal(flux.image_ids((12, 16), "cpu", torch.float32),
                       FluxPipeline._prepare_latent_image_ids(2, 6, 8, "cpu", torch.float32))


def _diffusers_pipe(kind, transformer: str):
    """A diffusers FLUX pipeline (FluxFillPipeline, FluxInpaintPipeline) assembled
    independently from freshly made tiny FLUX components, with the given transformer."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    parts = flux.tiny_flux_components()
    pipe = kind(scheduler=FlowMatchEulerDiscreteScheduler.from_config(parts["scheduler_config"]),
                vae=parts["vae"].eval(), text_encoder=parts["text_encoder"].eval(), tokenizer=parts["tokenizer"],
                text_encoder_2=parts["text_encoder_2"].eval(), tokenizer_2=parts["tokenizer_2"],
                transformer=parts[transformer].eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_vanilla_on_flux_equals_diffusers_flux_fill_pipeline(tiny_flux_model, demo, strength):
    """Reference: FluxFillPipeline with the Fill transformer, same seed, guidance and steps.
    Tolerance: exact in 8 bits."""
    from diffusers import FluxFillPipeline

    pipe = _diffusers_pipe(FluxFillPipeline, "inpaint_unet")
    for k, source in enumerate(demo[:2]):
        sample = resize_to(source, working_size(source.size, 128))
        ours = _run(tiny_flux_model, "vanilla", sample, seed=20 + k, guidance=30.0, strength=strength).image
        theirs = pipe(prompt=sample.prompt, image=sample.image, mask_image=sample.mask_image(),
                      height=sample.size[1], width=sample.size[0], strength=strength, num_inference_steps=STEPS,
                      guidance_scale=30.0, generator=torch.Generator("cpu").manual_seed(20 + k),
                      output_type="np").images[0]
        np.testing.assert_array_equal(to_uint8(ours), to_uint8(theirs))


@pytest.mark.parametrize("blend_start", [0.0, 0.5])
def test_blended_on_flux_equals_diffusers_flux_inpaint_pipeline(tiny_flux_model, blend_start, one_noise_draw):
    """Reference: FluxInpaintPipeline with the text-to-image transformer, which blends the
    source noised by scale_noise to the next timestep after every step. Aligned as for SD:
    one noise tensor for the start and every background, the source latent passed in (ours is
    the posterior mean), blend_start p as strength 1 − p, a mask on whole 16×16 blocks.
    Tolerance: exact latents."""
    from diffusers import FluxInpaintPipeline

    sample = make_sample("blocks", make_image(64, 64, seed=8), box_mask(64, 64, (16, 16, 48, 48)), "a red box")
    output = _run(tiny_flux_model, "blended", sample, seed=9, guidance=3.5, blend_start=blend_start)
    z_src = output.extras["z_src"]

    pipe = _diffusers_pipe(FluxInpaintPipeline, "txt2img_unet")
    packed = pipe(prompt=sample.prompt, image=z_src, masked_image_latents=z_src, mask_image=sample.mask_image(),
                  height=64, width=64,
                  strength=1.0 - blend_start, num_inference_steps=STEPS, guidance_scale=3.5,
                  generator=torch.Generator("cpu").manual_seed(9), output_type="latent").images
    assert torch.equal(output.latents, flux.unpack(packed, (8, 8)))


@pytest.mark.parametrize("technique, params", [("blended", {}), ("blended", {"progressive_shrink": 1}),
                                               ("tdpaint", {}), ("tdpaint", {"t_bg": 0.0})],
                         ids=["blended", "blended-shrink", "tdpaint", "tdpaint-c0"])
def test_the_background_latent_ends_as_the_source_latent(tiny_flux_model, sample, technique, params):
    output = _run(tiny_flux_model, technique, sample, **params)
    z_src = output.extras["z_src"]
    keep = (latent_mask(sample, tuple(z_src.shape[-2:]), tiny_flux_model) == 0).expand_as(z_src)
    assert keep.any() and (~keep).any()
    assert torch.equal(output.latents[keep], z_src[keep])
    assert not torch.equal(output.latents[~keep], z_src[~keep])


def test_tdpaint_with_an_infinite_c_is_blended(tiny_flux_model, sample):
    blended = _run(tiny_flux_model, "blended", sample)
    assert torch.equal(_run(tiny_flux_model, "tdpaint", sample, t_bg=float("inf")).latents, blended.latents)
    assert not torch.equal(_run(tiny_flux_model, "tdpaint", sample, t_bg=50.0).latents, blended.latents)


@pytest.mark.parametrize("params", [{"background": "paste"}, {"background": "feather"}, {"background": "poisson"},
                                    {"background": "decoder", "decoder_steps": 2}, {"post_condition": True},
                                    {"post_condition": True, "post_unet": "inpaint"}, {"resize": "crop"}],
                         ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_every_option_runs_on_flux(tiny_flux_model, demo, params):
    from engine.runner import Generation

    generation = Generation(tiny_flux_model, "blended", params=params, steps=2, guidance=3.5)
    result = generation.sample(demo[0], seed=1, errors="raise")
    assert result.ok and np.isfinite(np.asarray(result.image, dtype=np.float32)).all()
    if params.get("background") == "paste":
        assert result.metrics["bg_mse"] == 0.0


@pytest.mark.parametrize("technique", ["repaint", "latentpaint", "diffdiff"])
def test_techniques_that_do_not_apply_to_flux_are_refused_with_the_reason(technique):
    spec = get_technique(technique)
    with pytest.raises(ParamError, match=re.escape(f"technique {technique!r} does not apply to model 'tiny-flux' "
                                                   f"(flux family): {spec.refusal}; it runs on sd, sdxl models")):
        RunSpec.build(technique, model="tiny-flux")


def test_a_negative_prompt_is_refused_on_flux():
    with pytest.raises(ParamError, match="takes no negative prompt: FLUX's guidance is distilled"):
        RunSpec.build("blended", model="tiny-flux", negative_prompt="blurry")
    RunSpec.build("blended", model="tiny-flux")


def test_the_default_guidance_is_the_familys():
    from engine.runner import Generation
    from engine.spec import DEFAULTS, default_guidance

    assert default_guidance("vanilla", "tiny-flux") == DEFAULTS.flux_fill_guidance == 30.0
    assert default_guidance("blended", "flux") == DEFAULTS.flux_guidance == 3.5
    assert default_guidance("vanilla", "tiny") == default_guidance("blended", "sdxl") == DEFAULTS.guidance == 7.5
    assert RunSpec.build("tdpaint", model="tiny-flux").guidance == 3.5
    assert RunSpec.build("vanilla", model="tiny-flux", guidance=12.0).guidance == 12.0
    # the engine's own entry takes the same default (from the loaded model's family)
    from engine.models import load_model

    flux_model = load_model("tiny-flux", device="cpu")
    assert Generation(flux_model, "vanilla", steps=1).guidance == 30.0
    assert Generation(flux_model, "blended", steps=1).guidance == 3.5


def test_the_memory_estimates_count_the_modules():
    """`flux`: modules built on the meta device from the released configs (FLUX.1 [dev]'s
    transformer 11,901,408,320 parameters, T5 v1.1 XXL's encoder 4,762,310,656, the VAE
    83,819,683, as published); `tiny-flux`: its built modules."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from engine.models import PRESETS

    def count(module):
        return sum(parameter.numel() for parameter in module.parameters())

    with torch.device("meta"):
        built = {
            "inpaint transformer": count(FluxTransformer2DModel(in_channels=flux.FLUX_FILL_IN_CHANNELS, out_channels=64,
                                                                **flux.FLUX_TRANSFORMER_CONFIG)),
            "text-to-image transformer": count(FluxTransformer2DModel(in_channels=64, **flux.FLUX_TRANSFORMER_CONFIG)),
            "VAE": count(AutoencoderKL(**flux.FLUX_VAE_CONFIG)),
            "text encoder": count(CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                                               num_hidden_layers=12, num_attention_heads=12))),
            "text encoder 2": count(T5EncoderModel(T5Config(**flux.FLUX_T5_CONFIG))),
        }
    assert dict(PRESETS["flux"].parameters) == built
    assert built["text-to-image transformer"] == 11_901_408_320 and built["text encoder 2"] == 4_762_310_656
    parts = flux.tiny_flux_components()
    tiny = {"inpaint transformer": count(parts["inpaint_unet"]), "text-to-image transformer": count(parts["txt2img_unet"]),
            "VAE": count(parts["vae"]), "text encoder": count(parts["text_encoder"]),
            "text encoder 2": count(parts["text_encoder_2"])}
    assert dict(PRESETS["tiny-flux"].parameters) == tiny


@pytest.mark.parametrize("technique", ["vanilla", "blended"])
def test_working_sizes_on_flux_are_multiples_of_16(tiny_flux_model, technique):
    """200x120 fits 128 px as 128x72 on SD (a 9-cell latent side); FLUX packs 2x2 latent
    patches, so it works at 128x64."""
    from engine.runner import Generation

    sample = make_sample("odd", make_image(200, 120, seed=4), box_mask(200, 120, (40, 30, 120, 90)), "a vase")
    result = Generation(tiny_flux_model, technique, steps=2, guidance=3.5).sample(sample, seed=2, errors="raise")
    assert result.ok and result.size == (128, 64)
    assert working_size(sample.size, 128) == (128, 72)


@pytest.mark.parametrize("technique, previews", [("blended", True), ("vanilla", False)])
def test_previews_on_flux_decode_the_latent_grid_and_skip_packed_tokens(tiny_flux_model, sample, technique, previews):
    from engine.runner import Generation

    seen = []
    result = Generation(tiny_flux_model, technique, steps=2, guidance=3.5).sample(
        sample, seed=1, errors="raise", on_step=lambda progress: seen.append(progress.preview(64)))
    assert result.ok and len(seen) == 2
    assert all((image is not None) == previews for image in seen)


def test_a_local_flux_fill_folder_loads_as_the_flux_family(tmp_path, tiny_flux_model, sample):
    """A FluxFillPipeline saved by diffusers (transformer/, T5 and CLIP) is recognised as a
    FLUX Fill pipeline, loads through the same loader as the hub preset, with the very
    weights, and inpaints as the preset it was saved from. Tolerance: latents within 1e-5,
    pixels within 1 of 255 levels (measured 4.8e-7 and 1): weights read from safetensors sit
    at other memory alignments (24 bytes off 64 here), so the CPU kernels take other paths."""
    from engine.models import load_model, resolve_preset

    tiny_flux_model.inpaint_pipeline().save_pretrained(tmp_path)
    preset = resolve_preset(str(tmp_path))
    assert (preset.family, preset.inpaint, preset.txt2img, preset.resolution) == ("flux", str(tmp_path), None, 1024)
    folder = load_model(str(tmp_path), device="cpu", dtype="fp32")
    assert type(folder.text_encoder_2).__name__ == "T5EncoderModel"
    assert folder.scheduler_config["use_dynamic_shifting"] and folder.vae.config.shift_factor == 0.1159
    saved, built = folder.unet("inpaint").state_dict(), tiny_flux_model.unet("inpaint").state_dict()
    assert saved.keys() == built.keys() and all(torch.equal(saved[k], built[k]) for k in saved)
    ours = _run(folder, "vanilla", sample, seed=4, guidance=30.0)
    preset_output = _run(tiny_flux_model, "vanilla", sample, seed=4, guidance=30.0)
    assert float((ours.latents - preset_output.latents).abs().max()) <= 1e-5
    levels = np.abs(to_uint8(ours.image).astype(np.int16) - to_uint8(preset_output.image))
    assert levels.max() <= 1


@pytest.mark.parametrize("params, problem", [
    ({"scheduler": "euler"}, "scheduler=euler does not apply (FLUX samples with its flow-matching Euler scheduler"),
    ({"padding_mask_crop": 8}, "padding_mask_crop does not apply (diffusers' FLUX Fill pipeline has no crop)")],
    ids=["scheduler", "padding_mask_crop"])
def test_vanilla_options_fill_cannot_do_are_refused_before_a_run_exists(params, problem):
    with pytest.raises(ParamError, match=re.escape(f"vanilla on model 'tiny-flux': {problem}")):
        RunSpec.build("vanilla", params, model="tiny-flux")
    RunSpec.build("vanilla", params, model="tiny")  # SD has both
