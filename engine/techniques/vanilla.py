"""`vanilla`: diffusers' StableDiffusionInpaintPipeline with an inpainting (9-channel) UNet.

The baseline every other technique is compared with: the model was trained for inpainting
(LatentPaint's "pre-conditioned" case). The engine adds nothing to the pipeline: the same
components, seed and settings give the same pixels as calling diffusers directly (tested),
with or without the options below.

Options a diffusers user expects (the negative prompt is a run-level setting):
- `scheduler`: the sampler, built from the model's own scheduler config (DDIM by default, as
  every other technique uses). PNDM (PLMS) evaluates one timestep twice: N + 1 UNet calls.
- `padding_mask_crop` p > 0: diffusers' "inpaint only masked area". The mask's bounding box,
  grown by p pixels and then widened to the working size's aspect ratio (shifted to stay
  inside the image), is cropped, inpainted at the full working resolution, resized back and
  overlaid on the input with the (soft) mask. Outside that crop box, and wherever the 8-bit
  mask is 0, the output is the input exactly; where the mask is fractional it is the
  mask-weighted mix. The pipeline's overlay needs its decoded image, so this path has no
  latent (`latents=None`): post-processing that needs one (background=decoder) encodes the
  image, and counts that encode.

On SDXL: diffusers' StableDiffusionXLInpaintPipeline over the SDXL inpainting 0.1 UNet (time
ids from the working size, no aesthetic score, zeros for an empty negative prompt, as that
checkpoint ships). `strength` keeps this project's default 1.0, not diffusers' SDXL 0.9999
(which would start from the noised input instead of pure noise).

On FLUX: diffusers' FluxFillPipeline over FLUX.1 Fill [dev] (its 384-channel input: latent,
masked-image latent and the 8×8 pixel mask of each patch). Guidance is distilled (default
30, the Fill model's recommendation), there is no negative prompt and no padding_mask_crop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from engine.models import DEFAULT_SCHEDULER, scheduler_names
from engine.params import Param, ParamSchema
from engine.techniques.registry import Technique, TechniqueJob, TechniqueOutput, register

if TYPE_CHECKING:
    from engine.models import Model

SCHEMA = ParamSchema(
    (
        Param(
            "strength",
            "float",
            1.0,
            "how far the masked region is re-noised: 1.0 starts from pure noise, lower keeps "
            "more of the input's structure (runs strength x steps denoising steps)",
            minimum=0.01,
            maximum=1.0,
        ),
        Param(
            "scheduler",
            "choice",
            DEFAULT_SCHEDULER,
            "sampler, built from the model's noise schedule: ddim (the default, as every other "
            "technique uses), pndm (PLMS, one extra UNet call), euler, euler_ancestral "
            "(stochastic), dpmpp_2m (DPM-Solver++ 2M), unipc, lms (needs scipy)",
            choices=scheduler_names(),
        ),
        Param(
            "padding_mask_crop",
            "int",
            0,
            "0 = off. Otherwise inpaint only a crop: the mask's bounding box plus this many "
            "pixels, widened to the image's aspect ratio, inpainted at full working resolution, "
            "resized back and overlaid; outside the crop the output is the input (as diffusers)",
            minimum=0,
            maximum=4096,
        ),
    )
)


def estimate(params, steps: int) -> tuple[int, bool]:
    """min(int(N·strength), N): diffusers' own img2img truncation, since diffusers runs this
    loop (the project's rounding helper would not describe it). PNDM evaluates one timestep
    twice (+1, counted inexact: other strengths shift its warm-up)."""
    calls = min(int(steps * params["strength"]), steps)
    if params.get("scheduler") == "pndm":
        return calls + 1, False
    return calls, True


def run(model: "Model", jobs: Sequence[TechniqueJob]) -> list[TechniqueOutput]:
    """One pipeline call for the batch: lists of prompts, images and masks, one generator per
    sample (diffusers draws each sample's latents, and encodes each image, with its own).
    padding_mask_crop runs sample by sample: diffusers crops every image of a call by one
    mask's box."""
    import torch

    from engine.latents import decode_batch
    from engine.techniques.registry import Cost, check_batch, report

    check_batch(jobs)
    if jobs[0].params.get("padding_mask_crop", 0) and len(jobs) > 1:
        return [output for job in jobs for output in run(model, [job])]
    params = jobs[0].params
    pipe = model.inpaint_pipeline(params.get("scheduler", DEFAULT_SCHEDULER))
    width, height = jobs[0].sample.size
    mask_images = [job.sample.mask_image() for job in jobs]
    padding = params.get("padding_mask_crop", 0)
    unet_calls = 0

    def on_step_end(pipe_, _step_index, _timestep, callback_kwargs):
        # One callback per loop iteration, and each iteration is one UNet forward (the CFG
        # pair is batched), whatever the scheduler; the pipeline knows its loop length.
        nonlocal unet_calls
        unet_calls += 1
        report(jobs, unet_calls, pipe_.num_timesteps)
        return callback_kwargs

    generators = [torch.Generator(device=model.device).manual_seed(job.seed) for job in jobs]
    negative = jobs[0].negative_prompt or None
    if model.family == "flux":
        return _run_fill(model, jobs, pipe, generators, on_step_end, lambda: unet_calls)
    arguments = dict(
        prompt=[job.sample.prompt for job in jobs],
        negative_prompt=None if negative is None else [negative] * len(jobs),
        image=[job.sample.image for job in jobs],
        mask_image=mask_images,
        height=height,
        width=width,
        strength=params["strength"],
        num_inference_steps=jobs[0].steps,
        guidance_scale=jobs[0].guidance,
        generator=generators,
        callback_on_step_end=on_step_end,
    )
    # The pipeline encodes the masked image, and the image itself when strength < 1.
    encodes = 1 + (params["strength"] < 1.0)
    if padding == 0:
        # Decoded below exactly as the pipeline would, keeping the latent for post-processing.
        latents = pipe(**arguments, output_type="latent").images  # (B, 4, h, w)
        images = decode_batch(model, latents)
        return [TechniqueOutput(image=image, latents=latents[b : b + 1],
                                cost=Cost(unet_calls=unet_calls, vae_encodes=encodes, vae_decodes=1))
                for b, image in enumerate(images)]

    import numpy as np
    from diffusers import AsymmetricAutoencoderKL

    # diffusers only accepts PIL output with padding_mask_crop (its overlay works on PIL
    # images), so the result is 8-bit: exact as saved, since the runner's rounding keeps it.
    crop_box = pipe.mask_processor.get_crop_region(mask_images[0], width, height, pad=padding)
    arguments.update(prompt=arguments["prompt"][0], image=arguments["image"][0], mask_image=mask_images[0],
                     generator=generators[0], negative_prompt=negative)
    overlaid = pipe(**arguments, padding_mask_crop=padding, output_type="pil").images[0]
    # An asymmetric VAE's decoder is conditioned on the image, which the pipeline encodes again.
    encodes += isinstance(model.vae, AsymmetricAutoencoderKL)
    cost = Cost(unet_calls=unet_calls, vae_encodes=encodes, vae_decodes=1)
    image = np.asarray(overlaid.convert("RGB"), dtype=np.float32) / 255.0
    return [TechniqueOutput(image=image, latents=None, cost=cost,
                            extras={"crop_box": tuple(int(v) for v in crop_box)})]


def flux_problem(family: str, params) -> str | None:
    """What FLUX Fill cannot do with these parameters: it samples with its own flow-matching
    scheduler, and diffusers' Fill pipeline has no padding_mask_crop."""
    if family != "flux":
        return None
    if params.get("scheduler", DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
        return (f"scheduler={params['scheduler']} does not apply (FLUX samples with its flow-matching Euler "
                f"scheduler; leave scheduler at {DEFAULT_SCHEDULER})")
    if params.get("padding_mask_crop", 0):
        return "padding_mask_crop does not apply (diffusers' FLUX Fill pipeline has no crop)"
    return None


def _run_fill(model: "Model", jobs: Sequence[TechniqueJob], pipe, generators, on_step_end, calls) -> list[TechniqueOutput]:
    """FLUX.1 Fill: FluxFillPipeline with the batch's lists; guidance is the distilled scale
    (no negative prompt). Its packed latents are unpacked and decoded as the pipeline would."""
    from engine.flux import unpack
    from engine.latents import decode_batch
    from engine.techniques.registry import Cost

    params = jobs[0].params
    width, height = jobs[0].sample.size
    problem = flux_problem("flux", params)
    if problem:  # RunSpec.build refuses these first; a direct engine call gets the same words
        raise ValueError(problem)
    latents = pipe(prompt=[job.sample.prompt for job in jobs], image=[job.sample.image for job in jobs],
                   mask_image=[job.sample.mask_image() for job in jobs], height=height, width=width,
                   strength=params["strength"], num_inference_steps=jobs[0].steps, guidance_scale=jobs[0].guidance,
                   generator=generators, callback_on_step_end=on_step_end, output_type="latent").images
    factor = model.vae_scale_factor
    latents = unpack(latents, (height // factor, width // factor))  # (B, 16, h, w)
    images = decode_batch(model, latents)
    # The Fill pipeline encodes the image (for its start latent, at every strength) and the masked image.
    cost = Cost(unet_calls=calls(), vae_encodes=2, vae_decodes=1)
    return [TechniqueOutput(image=image, latents=latents[b : b + 1], cost=cost) for b, image in enumerate(images)]


TECHNIQUE = register(
    Technique(
        name="vanilla",
        summary="the model family's diffusers inpainting pipeline (a 9-channel UNet; FLUX: the Fill transformer)",
        unet="inpaint",
        schema=SCHEMA,
        run_batch=run,
        estimate=estimate,
        reference="diffusers StableDiffusionInpaintPipeline (SDXL: StableDiffusionXLInpaintPipeline; "
                  "FLUX: FluxFillPipeline)",
        families=("sd", "sdxl", "flux"),
        family_params=flux_problem,
    )
)
