"""`vanilla`: diffusers' StableDiffusionInpaintPipeline with an inpainting (9-channel) UNet.

The baseline every other technique is compared with: the model was trained for inpainting
(LatentPaint's "pre-conditioned" case). The engine adds nothing to the pipeline: the same
components, seed and settings give the same pixels as calling diffusers directly (tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    )
)


def run(model: "Model", job: TechniqueJob) -> TechniqueOutput:
    import torch

    from engine.latents import decode_latents
    from engine.techniques.registry import Cost

    pipe = model.inpaint_pipeline()
    width, height = job.sample.size
    steps_run = 0

    def on_step_end(_pipe, step_index, _timestep, callback_kwargs):
        nonlocal steps_run
        steps_run = step_index + 1
        job.report(steps_run, total)
        return callback_kwargs

    total = max(1, int(job.steps * job.params["strength"]))
    result = pipe(
        prompt=job.sample.prompt,
        negative_prompt=job.negative_prompt or None,
        image=job.sample.image,
        mask_image=job.sample.mask_image(),
        height=height,
        width=width,
        strength=job.params["strength"],
        num_inference_steps=job.steps,
        guidance_scale=job.guidance,
        generator=torch.Generator(device=model.device).manual_seed(job.seed),
        output_type="latent",  # decoded below exactly as the pipeline would, keeping the latent
        callback_on_step_end=on_step_end,
    )
    latents = result.images
    # The pipeline encodes the masked image, and the image itself when strength < 1.
    encodes = 1 + (job.params["strength"] < 1.0)
    cost = Cost(unet_calls=steps_run, vae_encodes=encodes, vae_decodes=1)
    return TechniqueOutput(image=decode_latents(model, latents), latents=latents, cost=cost)


TECHNIQUE = register(
    Technique(
        name="vanilla",
        summary="SD inpainting pipeline with a 9-channel inpainting UNet (diffusers)",
        unet="inpaint",
        schema=SCHEMA,
        run=run,
        reference="diffusers StableDiffusionInpaintPipeline",
    )
)
