"""Every technique on every offline family (`tiny`: SD, `tiny-sdxl`: SDXL), CPU fp32: the
invariants of ../shared/RESEARCH.md per family (the background latent ends as the source
latent; the reductions to `blended`), and the SDXL cross-checks against diffusers'
StableDiffusionXLInpaintPipeline (exact)."""

import re

import numpy as np
import pytest
import torch

from engine.latents import LatentInpainting, encode_image, image_to_tensor, latent_mask
from engine.runner import to_uint8
from engine.samples import make_sample, resize_to, working_size
from engine.techniques import TechniqueJob, get_technique, technique_names
from tests.conftest import box_mask, make_image

STEPS = 4
FAMILIES = ["tiny", "tiny-sdxl"]


@pytest.fixture(params=FAMILIES)
def model(request):
    return request.getfixturevalue("tiny_sdxl_model" if request.param == "tiny-sdxl" else "tiny_model")


@pytest.fixture(scope="module")
def sample(demo):
    return resize_to(demo[1], working_size(demo[1].size, 128))


def _run(model, technique, sample, seed=3, guidance=5.0, negative_prompt="", **params):
    spec = get_technique(technique)
    job = TechniqueJob(sample, spec.resolve_params(params), STEPS, guidance, seed, negative_prompt)
    return spec.run(model, job)


def _keep(model, sample, latents):
    keep = latent_mask(sample, tuple(latents.shape[-2:]), model) == 0
    return keep.expand_as(latents)


# Techniques whose background latent is the clean source latent after the last step (vanilla
# is diffusers' 9-channel pipeline: it generates everywhere, its background is not pasted).
BLENDING = [("blended", {}), ("blended", {"progressive_shrink": 2, "blend_start": 0.25}), ("tdpaint", {}),
            ("repaint", {"jump_length": 1, "jump_n_sample": 2}), ("latentpaint", {})]


@pytest.mark.parametrize("technique, params", BLENDING, ids=lambda v: v if isinstance(v, str) else
                         "-".join(f"{k}={x}" for k, x in v.items()) or "defaults")
def test_the_background_latent_ends_as_the_source_latent(model, sample, technique, params):
    output = _run(model, technique, sample, **params)
    z_src = encode_image(model, image_to_tensor(sample.image, model))
    keep = _keep(model, sample, z_src)
    assert keep.any() and (~keep).any()
    assert torch.equal(output.latents[keep], z_src[keep])
    assert not torch.equal(output.latents[~keep], z_src[~keep])  # the hole was generated


def test_diffdiff_keeps_the_source_latent_where_its_change_map_is_zero(model, sample):
    """Differential Diffusion's background is where its latent change map is 0 (the soft
    mask resized to the latent grid: cells on the mask's edge are partly changed)."""
    from engine.techniques.diffdiff import change_map

    output = _run(model, "diffdiff", sample)
    task = LatentInpainting(model, TechniqueJob(sample, get_technique("diffdiff").resolve_params({}), STEPS, 5.0, 3))
    keep = (change_map(task, 1.0) == 0).expand_as(task.z_src)
    assert keep.any() and (~keep).any()
    assert torch.equal(output.latents[keep], task.z_src[keep])


@pytest.mark.parametrize("technique, params", [("tdpaint", {"t_bg": float("inf")}),
                                               ("repaint", {"jump_length": 1, "jump_n_sample": 1}),
                                               ("latentpaint", {"propagate_until": 0.0})],
                         ids=["tdpaint-inf", "repaint-no-jumps", "latentpaint-off"])
def test_the_reductions_to_blended_hold(model, sample, technique, params):
    blended = _run(model, "blended", sample)
    reduced = _run(model, technique, sample, **params)
    assert torch.equal(reduced.latents, blended.latents)


@pytest.mark.parametrize("technique", technique_names())
def test_every_technique_runs_with_cfg_and_a_negative_prompt(model, sample, technique):
    output = _run(model, technique, sample, negative_prompt="blurry")
    assert output.image.shape == (sample.size[1], sample.size[0], 3) and np.isfinite(output.image).all()
    assert output.cost.unet_calls >= STEPS


def test_sdxl_conditioning_has_time_ids_pooled_text_and_zero_negatives(tiny_sdxl_model, sample):
    task = LatentInpainting(tiny_sdxl_model, TechniqueJob(sample, get_technique("blended").resolve_params({}), STEPS,
                                                          5.0, 0, ""))
    width, height = sample.size
    added = task.prompt.added
    assert added["time_ids"].tolist() == [[height, width, 0, 0, height, width]] * 2
    assert added["text_embeds"].shape == (2, 32) and task.prompt.embeddings.shape == (2, 77, 64)
    # An empty negative prompt conditions on zeros (SDXL's force_zeros_for_empty_prompt).
    assert not added["text_embeds"][0].any() and not task.prompt.embeddings[0].any()
    assert added["text_embeds"][1].any()


# --- cross-checks against diffusers' SDXL inpainting pipeline ----------------------------------


def _diffusers_sdxl_pipe(unet_name: str):
    """StableDiffusionXLInpaintPipeline assembled independently from freshly made tiny SDXL
    components (the same seeded weights as `tiny-sdxl`), as a diffusers user would."""
    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionXLInpaintPipeline

    from engine.models import tiny_sdxl_components

    parts = tiny_sdxl_components()
    for name in ("vae", "text_encoder", "text_encoder_2", unet_name):
        parts[name].eval()
    pipe = StableDiffusionXLInpaintPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
        tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer_2"], unet=parts[unet_name],
        scheduler=DDIMScheduler.from_config(parts["scheduler_config"]),
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.pndm = PNDMScheduler.from_config(parts["scheduler_config"], skip_prk_steps=True)
    return pipe


@pytest.mark.parametrize("options", [{}, {"strength": 0.6}, {"negative_prompt": "blurry"}, {"scheduler": "pndm"}],
                         ids=["default", "strength", "negative", "pndm"])
def test_vanilla_on_sdxl_equals_diffusers_sdxl_inpaint_pipeline(tiny_sdxl_model, demo, options):
    """Reference: diffusers StableDiffusionXLInpaintPipeline with the 9-channel UNet at its
    defaults (time ids from the size, no aesthetic score, zeros for an empty negative prompt),
    same seed and settings. Tolerance: exact in 8 bits (the stored images)."""
    pipe = _diffusers_sdxl_pipe("inpaint_unet")
    options = dict(options)
    negative = options.pop("negative_prompt", "")
    if options.get("scheduler") == "pndm":
        pipe.scheduler = pipe.pndm
    for k, source in enumerate(demo[:2]):
        sample = resize_to(source, working_size(source.size, 128))
        ours = _run(tiny_sdxl_model, "vanilla", sample, seed=20 + k, guidance=7.5, negative_prompt=negative,
                    **options).image
        theirs = pipe(prompt=sample.prompt, negative_prompt=negative or None, image=sample.image,
                      mask_image=sample.mask_image(), height=sample.size[1], width=sample.size[0],
                      strength=options.get("strength", 1.0), num_inference_steps=STEPS, guidance_scale=7.5,
                      generator=torch.Generator("cpu").manual_seed(20 + k), output_type="np").images[0]
        np.testing.assert_array_equal(to_uint8(ours), to_uint8(theirs))


@pytest.mark.parametrize("blend_start", [0.0, 0.5])
def test_blended_on_sdxl_equals_diffusers_sdxl_pipeline_with_a_4_channel_unet(tiny_sdxl_model, blend_start,
                                                                             one_noise_draw):
    """Reference: StableDiffusionXLInpaintPipeline given SDXL's text-to-image UNet, which
    blends after every step as Blended Latent Diffusion does. Aligned as for SD
    (tests/engine/test_peer_crosschecks.py): one noise tensor for the start and every
    background, the source latent passed in, blend_start p as strength 1 − p, a mask on whole
    8×8 blocks. Tolerance: exact latents."""
    sample = make_sample("blocks", make_image(64, 64, seed=8), box_mask(64, 64, (16, 8, 48, 40)), "a red box")
    output = _run(tiny_sdxl_model, "blended", sample, seed=9, guidance=7.5, blend_start=blend_start)
    z_src = output.extras["z_src"]

    pipe = _diffusers_sdxl_pipe("txt2img_unet")
    theirs = pipe(prompt=sample.prompt, image=z_src, masked_image_latents=z_src, mask_image=sample.mask_image(),
                  height=64, width=64, strength=1.0 - blend_start, num_inference_steps=STEPS, guidance_scale=7.5,
                  generator=torch.Generator("cpu").manual_seed(9), output_type="latent").images
    assert torch.equal(output.latents, theirs)


def test_a_technique_refuses_a_family_it_does_not_apply_to(monkeypatch):
    """RunSpec.build checks the technique against the model's family before anything is
    queued (FLUX's transformer, for instance, has no UNet blocks to hook)."""
    import dataclasses

    from engine.params import ParamError
    from engine.spec import RunSpec
    from engine.techniques import registry

    restricted = dataclasses.replace(get_technique("latentpaint"), families=("sd",),
                                     refusal="it hooks UNet blocks this test pretends SDXL lacks")
    monkeypatch.setitem(registry._REGISTRY, "latentpaint", restricted)
    RunSpec.build("latentpaint", model="tiny")
    message = ("technique 'latentpaint' does not apply to model 'tiny-sdxl' (sdxl family): it hooks UNet blocks "
               "this test pretends SDXL lacks; it runs on sd models")
    with pytest.raises(ParamError, match=re.escape(message)):
        RunSpec.build("latentpaint", model="tiny-sdxl")


def test_a_local_sdxl_pipeline_folder_loads_as_the_sdxl_family(tmp_path, tiny_sdxl_model, sample):
    """An SDXL inpainting pipeline saved by diffusers (two text encoders and tokenizers) is
    recognised as SDXL, loads both encoders, and inpaints exactly as the preset it was saved
    from."""
    from engine.models import load_model, resolve_preset

    pipe = tiny_sdxl_model.inpaint_pipeline()
    pipe.save_pretrained(tmp_path)
    preset = resolve_preset(str(tmp_path))
    assert (preset.family, preset.resolution, preset.inpaint) == ("sdxl", 128, str(tmp_path))
    assert "SDXL inpainting pipeline" in preset.description
    folder = load_model(str(tmp_path), device="cpu", dtype="fp32")
    assert folder.family == "sdxl" and folder.text_encoder_2 is not None and folder.tokenizer_2 is not None
    ours = _run(folder, "vanilla", sample, seed=4)
    preset_output = _run(tiny_sdxl_model, "vanilla", sample, seed=4)
    np.testing.assert_array_equal(to_uint8(ours.image), to_uint8(preset_output.image))
