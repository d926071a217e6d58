"""`tdpaint`: zero-shot TD-Paint (Mayet et al., "TD-Paint: Faster Diffusion Inpainting
Through Time-Aware Pixel Conditioning", arXiv 2410.09306; code MaugrimEP/td-paint).

The paper trains a model that takes a per-pixel timestep map: known pixels are fed clean
(t = 0), unknown pixels at the scheduler's t, one UNet call per step, no resampling. A
Stable Diffusion UNet takes one scalar timestep per image, so this is the training-free
approximation: the loop of Blended Latent Diffusion (`blended`), except that the background
is the source latent noised only to t_bg = min(t, c) instead of t, while the UNet is told
the scalar t:

    z ← scheduler.step(ε̂(z, t_i), t_i, z)                                   (B, 4, h, w)
    z ← m_lat · z + (1 − m_lat) · add_noise(z_src, ε_i, min(t_{i+1}, c))   (fresh ε_i each step)

and after the last step the background is the clean z_src, so the final latent equals z_src
outside m_lat exactly. With c ≥ t_0 it is exactly Blended Latent Diffusion (same noise
draws, same pixels); c = 0 feeds the clean z_src at every step, the paper's t = 0 for known
pixels.

Choices and deviations:
- c is in the model's training timesteps (0 … 999) and rounded down to an integer
  timestep, since the noise schedule is discrete. ⌊c⌋ = 0 means the clean z_src, not
  diffusers' timestep 0: TD-Paint's t = 0 is the clean image, while diffusers' timestep 0
  already carries the first training step's noise (1 − ᾱ_0 = β_0).
- The noise draws follow `blended` exactly: the initial noise, then one fresh ε_i per step
  (except after the last, where the background is clean), drawn even when c = 0 makes it
  unused, so different c see the same noise streams and c ≥ t_0 reproduces `blended`.
- The first UNet call also sees the background at min(t_start, c) when c < t_start
  (z_src noised with the initial noise, no extra draw): TD-Paint conditions every call on
  the known pixels at their own noise level. `blended` leaves pure noise there, and so do we
  when c ≥ t_start, which keeps the equality above.
- `blend_start` p, as in `blended`: skip the first ⌊pN⌋ steps (⌊pN⌋ of the decimal p,
  `engine.params.fraction_of_steps`) and start from add_noise(z_src, ε, t_⌊pN⌋).
- Blending after the scheduler step, as `blended` does (the diffusers scripts of Blended
  Latent Diffusion's repo).

On SDXL: unchanged. The background timestep c counts in the same 1000 training timesteps
(SDXL keeps SD's scaled-linear DDPM schedule); conditioning as in `blended`.

On FLUX: the background is the source on the flow at σ = min(σ_{i+1}, c / 1000), c in the
scheduler's 1000 training timesteps as on SD; everything else as `blended` on FLUX.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

from engine.params import Param, ParamSchema, fraction_of_steps
from engine.techniques.registry import Technique, TechniqueJob, TechniqueOutput, register

if TYPE_CHECKING:
    import torch

    from engine.latents import LatentInpainting
    from engine.models import Model

SCHEMA = ParamSchema(
    (
        Param(
            "t_bg",
            "float",
            50.0,
            "c: the background (known region) is fed noised to min(t, c) instead of t, in training "
            "timesteps (0-999, rounded down); 0 = the clean source latent, inf (or >= the first "
            "timestep) = Blended Latent Diffusion; typical values 20-100",
            minimum=0.0,
            maximum=math.inf,
        ),
        Param(
            "blend_start",
            "float",
            0.0,
            "fraction of the denoising steps skipped; generation starts from the source latent "
            "noised to that step (0 = start from pure noise)",
            minimum=0.0,
            maximum=0.95,
        ),
    )
)

Observer = Callable[[int, "torch.Tensor"], None]
"""Called with (index k, latent at t_k): first with the latent the first UNet call sees, then
after each step's blend (k = N: the final latent)."""


def background_timestep(t_next: int, c: float) -> int:
    """t_bg = min(t_next, ⌊c⌋) as an integer training timestep; 0 stands for the clean z_src.

    >>> background_timestep(981, math.inf), background_timestep(981, 50.7), background_timestep(21, 50)
    (981, 50, 21)
    """
    return t_next if math.isinf(c) else min(t_next, int(math.floor(c)))


def noised_background(task: "LatentInpainting", eps: "torch.Tensor", index: int, c: float) -> "torch.Tensor":
    """z_src noised to min(t_index, c) with the given noise; the clean z_src past the last step
    or when ⌊c⌋ = 0."""

    if index >= task.steps:
        return task.z_src
    t_next = int(task.timesteps[index])
    t_bg = background_timestep(t_next, c)
    if t_bg == t_next:
        return task.add_noise(task.z_src, eps, index)  # the very call `blended` makes
    if t_bg <= 0:
        return task.z_src
    return task.noise_to_timestep(task.z_src, eps, t_bg)


def denoise(task: "LatentInpainting", c: float, start: int = 0, observer: Observer | None = None, report=None):
    """The TD-Paint loop from step `start` to the end; returns the final latent (B, 4, h, w).

    `observer(k, latents)` sees the latent at index k: the first call's input, then the result
    of each step's blend (tests use it); `report(done, total)` gets progress after every
    UNet call."""
    mask = task.mask  # (B, 1, h, w), 1 = generate
    noise = task.noise()  # (B, 4, h, w): the initial draw, as in `blended`
    if start == 0:
        latents = noise * task.init_noise_sigma
    else:
        latents = task.add_noise(task.z_src, noise, start)
    if background_timestep(int(task.timesteps[start]), c) < int(task.timesteps[start]):
        # The first call, too, sees the known region at its own (lower) noise level.
        latents = mask * latents + (1 - mask) * noised_background(task, noise, start, c)
    if observer is not None:
        observer(start, latents)

    for i in range(start, task.steps):
        t = task.timesteps[i]
        latents = task.step(task.predict(latents, t), t, latents)  # (B, 4, h, w) at t_{i+1}
        # One draw per step whatever c is (none after the last), so noise streams line up.
        eps = task.noise() if i + 1 < task.steps else None
        latents = mask * latents + (1 - mask) * noised_background(task, eps, i + 1, c)
        if observer is not None:
            observer(i + 1, latents)
        if report is not None:
            report(i - start + 1, task.steps - start)
    return latents


def estimate(params, steps: int) -> tuple[int, bool]:
    """N − ⌊pN⌋ UNet calls (one per step run), exactly."""
    return steps - fraction_of_steps(params["blend_start"], steps), True


def run(model: "Model", jobs: Sequence[TechniqueJob]) -> list[TechniqueOutput]:
    import torch

    from engine.latents import LatentInpainting

    task = LatentInpainting(model, jobs, "txt2img")
    start = fraction_of_steps(task.job.params["blend_start"], task.steps)
    with torch.no_grad():
        latents = denoise(task, task.job.params["t_bg"], start, report=task.report)
    return task.outputs(latents, z_src=task.z_src, latent_mask=task.mask)


TECHNIQUE = register(
    Technique(
        name="tdpaint",
        summary="Zero-shot TD-Paint: blended latents with the background noised only to min(t, c)",
        unet="txt2img",
        schema=SCHEMA,
        run_batch=run,
        estimate=estimate,
        reference="Mayet et al., TD-Paint, arXiv 2410.09306 (training-free approximation)",
        families=("sd", "sdxl", "flux"),
    )
)
