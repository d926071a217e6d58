"""`blended`: Blended Latent Diffusion (Avrahami et al., arXiv 2206.02779).

A text-to-image (4-channel) UNet denoises the whole latent; after every step the
background is replaced by the source latent noised to the *next* timestep:

    z ← scheduler.step(ε̂(z, t_i), t_i, z)
    z ← m_lat · z + (1 − m_lat) · add_noise(z_src, ε_i, t_{i+1})      (fresh ε_i each step)

and after the last step by the clean z_src, so the final latent equals z_src outside m_lat
exactly. Choices, as the paper's code allows:
- blending after the scheduler step (the diffusers scripts of the authors' repo), not before
  it (their LDM code);
- `blend_start` p skips the first ⌊pN⌋ steps and starts from add_noise(z_src, ε, t_⌊pN⌋),
  as their SDXL script does (their SD2 script starts from pure noise instead); ⌊pN⌋ is
  taken on the decimal p (`engine.params.fraction_of_steps`: 0.58 of 50 is 29), where their
  `int(len(timesteps) * p)` truncates the binary float (28);
- progressive mask shrinking with n dilations: the latent mask dilated by square kernels
  3+2(n−1), …, 5, 3, then the exact mask, over n+1 chunks of ⌊M/(n+1)⌋+1 of the
  M = N − ⌊pN⌋ steps that run (as the authors count them). Dilation happens on the
  latent-resolution mask, as in the paper.

On SDXL: the same loop. Only the conditioning and the latent scale change, both in the
shared set-up (`engine.latents`): both text encoders' penultimate states (d = 768 + 1280),
the pooled text and the time ids (working size, crop 0, 0) as added conditioning, an empty
negative prompt as zeros, latents scaled by 0.13025. SDXL keeps SD's DDPM schedule, so the
noising add_noise(z_src, ε, t) is unchanged; the authors' SDXL script blends the same way.

On FLUX: the same loop on the flow. The source is noised by the flow's own forward
process, add_noise(z_src, ε, σ_i) = (1 − σ_i)·z_src + σ_i·ε, on FLUX's shifted schedule; the
transformer (FLUX.1 [dev]) predicts a velocity, stepped by Euler; guidance is distilled (one
forward per step, default 3.5); the latents have 16 channels and are packed into 2×2 patches
only inside the transformer call (`engine.flux`), so masks and blending stay on the latent
grid. The result equals diffusers' FluxInpaintPipeline given the same noise (tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from engine.params import Param, ParamSchema, fraction_of_steps
from engine.techniques.registry import Technique, TechniqueJob, TechniqueOutput, register

if TYPE_CHECKING:
    from engine.models import Model

SCHEMA = ParamSchema(
    (
        Param(
            "blend_start",
            "float",
            0.0,
            "fraction of the denoising steps skipped; generation starts from the source latent "
            "noised to that step (0 = start from pure noise)",
            minimum=0.0,
            maximum=0.95,
        ),
        Param(
            "progressive_shrink",
            "int",
            0,
            "number of mask dilations for progressive mask shrinking (0 = off): the latent mask "
            "dilated by 3+2(n-1) ... 5, 3, then exact, over n+1 equal chunks of the steps",
            minimum=0,
            maximum=10,
        ),
    )
)


def shrink_kernels(dilations: int) -> list[int]:
    """Kernel sizes of the masks used in order; 1 means the exact mask.

    >>> shrink_kernels(2)
    [5, 3, 1]
    """
    return [3 + 2 * k for k in range(dilations - 1, -1, -1)] + [1]


def shrink_schedule(steps: int, dilations: int, start: int = 0) -> list[int]:
    """For each step that runs (indices start..steps-1, in order), the index into
    `shrink_kernels(dilations)` it uses.

    The M = N − start steps that run are split into chunks of ⌊M/(n+1)⌋+1 steps, the last
    one possibly shorter, as the authors' code does (the chunks are counted over the steps
    left after blend_start's skip). With N = 50, n = 2, start 0: steps 0–16 use the 5×5
    dilation, 17–33 the 3×3, 34–49 the exact mask. Deviation: when M is so small that the
    chunks end before the exact mask (M = 4, n = 2 gives chunks of 2), the final step still
    uses the exact mask, so the background ends exactly as the input.
    """
    remaining = max(steps - start, 0)
    chunk = remaining // (dilations + 1) + 1
    schedule = [min(step // chunk, dilations) for step in range(remaining)]
    if schedule:
        schedule[-1] = dilations
    return schedule


def first_step(params, steps: int) -> int:
    """⌊pN⌋ for blend_start p: the steps skipped (the project's one rounding rule)."""
    return fraction_of_steps(params["blend_start"], steps)


def estimate(params, steps: int) -> tuple[int, bool]:
    """N − ⌊pN⌋ UNet calls, exactly."""
    return steps - first_step(params, steps), True


def run(model: "Model", jobs: Sequence[TechniqueJob]) -> list[TechniqueOutput]:
    from engine.latents import LatentInpainting, dilate

    task = LatentInpainting(model, jobs, "txt2img")
    dilations = task.job.params["progressive_shrink"]
    kernels = shrink_kernels(dilations)
    masks = [dilate(task.mask, k) for k in kernels]  # each (B, 1, h, w), each sample's own
    start = first_step(task.job.params, task.steps)
    mask_for_step = shrink_schedule(task.steps, dilations, start)  # over the steps that run

    noise = task.noise()
    latents = noise * task.init_noise_sigma if start == 0 else task.add_noise(task.z_src, noise, start)

    for i in range(start, task.steps):
        t = task.timesteps[i]
        latents = task.step(task.predict(latents, t), t, latents)
        mask = masks[mask_for_step[i - start]]
        latents = mask * latents + (1 - mask) * task.noised_source(i + 1)
        task.report(i - start + 1, task.steps - start)

    used = [kernels[k] for k in mask_for_step]  # the mask kernel each step blended with
    return task.outputs(latents, z_src=task.z_src, latent_mask=task.mask, mask_kernels=used)


TECHNIQUE = register(
    Technique(
        name="blended",
        summary="Blended Latent Diffusion: text-to-image UNet, background latent replaced every step",
        unet="txt2img",
        schema=SCHEMA,
        run_batch=run,
        estimate=estimate,
        reference="Avrahami et al., Blended Latent Diffusion, arXiv 2206.02779",
        families=("sd", "sdxl", "flux"),
    )
)
