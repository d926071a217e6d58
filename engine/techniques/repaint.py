"""`repaint`: RePaint (Lugmayr et al., "RePaint: Inpainting using Denoising Diffusion
Probabilistic Models", CVPR 2022; code andreas128/RePaint; diffusers' RePaintScheduler),
in latent space with a text-to-image (4-channel) UNet.

The latent moves over the indices 0 … N of the N DDIM timesteps t_0 > … > t_{N−1}
(index N = clean) along `repaint_schedule`. Going down i → i+1 is a UNet call:

    z ← scheduler.step(ε̂(z, t_i), t_i, z)                                 (B, 4, h, w)
    z ← m_lat · z + (1 − m_lat) · add_noise(z_src, ε, t_{i+1})            (fresh ε; clean z_src at N)

Going up i → i−1 is forward noising, no UNet call (resampling, "jumps"):

    z ← √(ᾱ_{t_{i−1}}/ᾱ_{t_i}) · z + √(1 − ᾱ_{t_{i−1}}/ᾱ_{t_i}) · ε      (fresh ε)

a sample of q(z_{t_{i−1}} | z_{t_i}), so the generated region is re-noised and
denoised again with the known region in view, which harmonises it with the background.
The final latent equals z_src outside m_lat exactly. With jump_n_sample = 1 there are no
jumps and this is `blended`, draw for draw.

Choices and deviations:
- Latent space, Stable Diffusion's text-to-image UNet with classifier-free guidance and N
  DDIM steps, instead of the paper's 250 DDPM steps on pixels with an unconditional model.
- Each down transition is a DDIM step with η = 0 (deterministic), as diffusers'
  RePaintScheduler does by default; the paper samples DDPM ancestral steps. The randomness
  comes from the jumps and the known region's fresh noise. DDIMScheduler.step is stateless
  and steps from t to t − ⌊T/N⌋ (T = 1000 training steps), which is t_{i+1} for "leading"
  spacing (DDIM's default) at any N; so a revisited index is stepped exactly as the first
  time. `run` checks the spacing and refuses timesteps where that would be wrong
  (e.g. "linspace" spacing, or "trailing" with N not dividing T).
- The known region is blended in after each step (as diffusers' RePaintScheduler.step and
  `blended`), not injected before the UNet call as in the original p_sample. After a jump
  the known region is the forward-noised earlier one, itself a sample of q(z_t | z_src), so
  the UNet sees the same distribution.
- One forward-noising draw per index going up (the original noises one respaced step at a
  time too; diffusers' undo_step noises one training step at a time).
- The schedule is the original `get_schedule_jump` (see `repaint_schedule`). diffusers'
  RePaintScheduler lists the timesteps of the UNet calls and jumps after the call at each
  jump point, so its jumps sit one index later (the last round resamples from the finished
  latent) and its undo_step noises with the betas one step above the sample's level. The
  counts are the same: 250 steps with (10, 10) make 2410 UNet calls and 2160 noising steps.
- Cost: the UNet calls only; the noising steps are reported as `extras["noising_steps"]`.

On SDXL: unchanged. The jumps noise with the scheduler's own betas (SDXL keeps SD's
scaled-linear DDPM schedule, 1000 timesteps); conditioning as in `blended`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from engine.params import Param, ParamSchema
from engine.techniques.registry import Technique, TechniqueJob, TechniqueOutput, register

if TYPE_CHECKING:
    import torch

    from engine.latents import LatentInpainting
    from engine.models import Model

SCHEMA = ParamSchema(
    (
        Param(
            "jump_length",
            "int",
            10,
            "resampling jump length j: how many indices a jump goes back up (forward noising, no "
            "UNet call); jump points are every j indices counted from the end",
            minimum=1,
            maximum=1000,
        ),
        Param(
            "jump_n_sample",
            "int",
            10,
            "resampling count r: each stretch of j steps is denoised r times (r - 1 jumps back per "
            "jump point); 1 = no resampling (Blended Latent Diffusion); cost grows about linearly in r",
            minimum=1,
            maximum=100,
        ),
    )
)

Observer = Callable[[int, int, "torch.Tensor"], None]
"""Called after every transition with (from index, to index, latent now at `to`)."""


def repaint_schedule(steps: int, jump_length: int, jump_n_sample: int) -> list[tuple[int, int]]:
    """RePaint's resampling schedule as transitions (from_index, to_index) over the indices
    0 … N of N timesteps: index 0 is the initial noise at t_0, index N the clean latent;
    to = from + 1 is a denoising step (a UNet call), to = from − 1 a forward-noising step.

    The original `get_schedule_jump` over time labels τ = N−1 … 0, −1 (the latent a UNet call
    at τ takes as input; −1 the output), written with index i = N − 1 − τ. Jump points are
    τ = 0, j, 2j, … below N − j, i.e. indices N−1, N−1−j, … ≥ j. Going down, each time the
    latent reaches a jump point with jumps left there, it goes back up j indices (one index
    at a time), and down again; r − 1 times per jump point. The first descent therefore
    runs to index N−1−j·(P−1) (19 for N = 50, j = 10), and the final step N−1 → N comes
    once, after the last resampling. The UNet calls number N + (r−1)·j·P and the noising steps
    (r−1)·j·P, with P = |{k ≥ 0 : k·j < N − j}| jump points.

    >>> repaint_schedule(4, 1, 2)  # jump points at indices 3, 2, 1
    [(0, 1), (1, 0), (0, 1), (1, 2), (2, 1), (1, 2), (2, 3), (3, 2), (2, 3), (3, 4)]
    """
    if steps < 1 or jump_length < 1 or jump_n_sample < 1:
        raise ValueError(f"need steps, jump_length, jump_n_sample >= 1, got {steps}, {jump_length}, {jump_n_sample}")
    jumps_left = {steps - 1 - tau: jump_n_sample - 1 for tau in range(0, steps - jump_length, jump_length)}
    transitions = []
    index = 0
    while index < steps:
        transitions.append((index, index + 1))
        index += 1
        if jumps_left.get(index, 0) > 0:
            jumps_left[index] -= 1
            for _ in range(jump_length):
                transitions.append((index, index - 1))
                index -= 1
    return transitions


def unet_calls(schedule: list[tuple[int, int]]) -> int:
    return sum(1 for start, end in schedule if end > start)


def check_step_spacing(task: "LatentInpainting") -> None:
    """DDIMScheduler.step(·, t_i, ·) lands on t_i − ⌊T/N⌋; the jumps revisit indices, so
    that must be t_{i+1} for every i (true for "leading" spacing at any N, and for
    "trailing" when N divides T). Raises ValueError otherwise."""
    stride = task.scheduler.config.num_train_timesteps // task.scheduler.num_inference_steps
    timesteps = [int(t) for t in task.timesteps]
    uneven = [i for i in range(len(timesteps) - 1) if timesteps[i] - stride != timesteps[i + 1]]
    if uneven:
        raise ValueError(
            f"repaint needs evenly spaced DDIM timesteps: the scheduler's step from t={timesteps[uneven[0]]} "
            f"lands on {timesteps[uneven[0]] - stride}, not t={timesteps[uneven[0] + 1]} "
            f"(timestep_spacing={task.scheduler.config.timestep_spacing!r}, {len(timesteps)} steps)"
        )


def renoise(task: "LatentInpainting", latents: "torch.Tensor", index: int) -> "torch.Tensor":
    """One forward-noising step from t_index up to t_{index−1}: a sample of
    q(z_{t'} | z_t) = N(√(ᾱ_t'/ᾱ_t)·z_t, (1 − ᾱ_t'/ᾱ_t)·I)."""
    abar = task.scheduler.alphas_cumprod
    ratio = float(abar[int(task.timesteps[index - 1])]) / float(abar[int(task.timesteps[index])])
    return ratio**0.5 * latents + (1.0 - ratio) ** 0.5 * task.noise()


def resample(
    task: "LatentInpainting",
    schedule: list[tuple[int, int]],
    observer: Observer | None = None,
    report=None,
) -> "torch.Tensor":
    """Run `schedule` from pure noise; returns the final latent (B, 4, h, w)."""
    check_step_spacing(task)
    mask = task.mask  # (B, 1, h, w), 1 = generate
    latents = task.noise() * task.scheduler.init_noise_sigma  # (B, 4, h, w) at t_0
    total = unet_calls(schedule)
    done = 0
    for start, end in schedule:
        if end == start + 1:
            t = task.timesteps[start]
            latents = task.step(task.predict(latents, t), t, latents)  # (B, 4, h, w) at t_end
            latents = mask * latents + (1 - mask) * task.noised_source(end)  # clean z_src at N
            done += 1
            if report is not None:
                report(done, total)
        else:
            latents = renoise(task, latents, start)  # (B, 4, h, w) at t_end, no UNet call
        if observer is not None:
            observer(start, end, latents)
    return latents


def estimate(params, steps: int) -> tuple[int, bool]:
    """The down transitions of the resampling schedule, exactly."""
    return unet_calls(repaint_schedule(steps, params["jump_length"], params["jump_n_sample"])), True


def run(model: "Model", jobs: Sequence[TechniqueJob]) -> list[TechniqueOutput]:
    import torch

    from engine.latents import LatentInpainting

    task = LatentInpainting(model, jobs, "txt2img")
    schedule = repaint_schedule(task.steps, task.job.params["jump_length"], task.job.params["jump_n_sample"])
    with torch.no_grad():
        latents = resample(task, schedule, report=task.report)
    noising = len(schedule) - unet_calls(schedule)
    return task.outputs(latents, z_src=task.z_src, latent_mask=task.mask, noising_steps=noising)


TECHNIQUE = register(
    Technique(
        name="repaint",
        summary="RePaint: blended latents with resampling (jump back by forward noising, denoise again)",
        unet="txt2img",
        schema=SCHEMA,
        run_batch=run,
        estimate=estimate,
        reference="Lugmayr et al., RePaint, CVPR 2022 (latent-space, DDIM)",
        refusal=("its jumps re-noise by the DDPM forward step q(x_t | x_t-1) with the scheduler's betas, "
                 "which a flow-matching schedule does not have"),
    )
)
