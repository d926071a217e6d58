"""`diffdiff`: Differential Diffusion (Levin & Fried 2023, arXiv 2306.00950; repo
exx8/differential-diffusion, the SD2/SDXL `diff_pipe.py` pipelines).

A soft *change map* replaces the binary mask: every latent entry gets its own strength.
Convention flip: our sample mask m ∈ [0, 1] is the amount of change (white/1 = regenerate
fully, 0 = keep), while the paper's code takes a keep map (white = keep), keep = 1 − m.

A text-to-image (4-channel) UNet denoises the whole latent. With N steps, t_0 > … > t_{N−1}:

    m_lat = strength · area_resize(m)                        (B, 1, h, w), soft, not thresholded
    n(p)  = ⌈m_lat(p) · N⌉                                   steps entry p is denoised for
    L(p)  = N − n(p)                                         last step at which p is frozen
    z^i   = add_noise(z_src, ε, t_i)     for i = 0 … N−1      (one ε for every t_i, as their code;
                                                              noise=fresh: ε_i drawn i = 0, 1, … in order)
    z^N   = z_src
    for i = 0 … N−1:
        z ← where(i ≤ L, z^i, z)                             frozen entries: the noised source
        z ← scheduler.step(ε̂(z, t_i), t_i, z)
    z ← where(N ≤ L, z^N, z)                                 i.e. m_lat = 0 ends as z_src exactly

Step 0 freezes everything (L ≥ 0), so the loop starts from the source noised to t_0, as their
code does (`latents = original_with_noise[:1]` at i = 0), not from pure noise. An entry with
change m is thus denoised over the last ⌈mN⌉ steps, starting from the source noised to
t_{N−⌈mN⌉}: per-pixel img2img with strength m.

Threshold semantics and the off-by-one. Their code freezes, before step i ≥ 1, where
`keep > i/N` (thresholds `arange(N)/N`), and never after the loop. Here: frozen iff
`keep ≥ i/N` for i = 0 … N, the same as i ≤ N − ⌈mN⌉. The two rules agree wherever keep·N
is not an integer. At ties (keep·N an integer) their strict `>` denoises one step more than
mN: a pixel with keep = 1 is still denoised once (from t_{N−1}) and never returns to its
source, and with N = 4 a pixel with m = 0.5 gets 3 steps instead of 2. We use `≥` so that
n = ⌈mN⌉ everywhere, i = 0 is their start and i = N is a final replacement by the clean z_src
(a binary map keeps its background bit for bit, as Blended Latent Diffusion does). Ties are
decided with a tolerance of 1e-6 in map units, so that e.g. 0.8 stored as float32
(0.800000012) counts as 0.8 and not as a hair above it.

Other deviations from their code, and why:
- none in the noise by default: `noise=fixed` draws one ε and noises it to every t_i, as
  their `prepare_latents` does (tested equal to their loop, bit for bit, off ties);
  `noise=fresh` draws a new ε_i per step index instead (the other techniques' convention),
  kept for comparison: on a soft map the two differ by 5–10 levels;
- the map goes to the latent grid by area averaging (the mean of each 8×8 pixel block); their
  torchvision `Resize` is bilinear without antialiasing, which at a factor of 8 reads only the
  2×2 pixels at each block's centre (thin soft structures alias);
- z_src is the VAE posterior mean (project convention), theirs a posterior sample;
- `strength` scales the change map (m_lat = strength · m). Their `strength` argument trims the
  schedule to its last ⌊strength·N⌋ steps with the map spread over them, which is the same up to
  rounding. Leading steps at which every entry is still frozen at the next step are skipped
  (their outputs would be overwritten entirely); the noise for them is still drawn, so skipping
  changes no result. UNet calls: max over entries of ⌈m_lat·N⌉ ≤ N, N for any map reaching 1.

On SDXL: unchanged (the change map lives on the latent grid, which has SD's scale factor 8);
conditioning as in `blended`. The authors ship an SDXL pipeline of the same loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from engine.params import Param, ParamSchema
from engine.techniques.registry import Technique, TechniqueJob, TechniqueOutput, register

if TYPE_CHECKING:
    import torch

    from engine.latents import LatentInpainting
    from engine.models import Model

SCHEMA = ParamSchema(
    (
        Param(
            "noise",
            "choice",
            "fixed",
            "fixed: one noise draw noised to every timestep, as the authors' code; fresh: a new draw per step",
            choices=("fixed", "fresh"),
        ),
        Param(
            "strength",
            "float",
            1.0,
            "scales the change map (0, 1]: an entry with mask value m is denoised over the last "
            "ceil(strength*m*N) steps; 1 = the mask as given (white regenerated from the start)",
            minimum=0.01,
            maximum=1.0,
        ),
    )
)

TIE_TOLERANCE = 1e-6
"""Map values within this of a step boundary k/N count as exactly k/N (float32 round-off)."""

Observer = Callable[[int, "torch.Tensor", "torch.Tensor"], None]
"""observe(i, incoming, replaced): the latent before and after step i's replacement, i.e. right
before the UNet call at step i; i = N is the final replacement after the loop."""


def denoise_steps(change: np.ndarray | float, steps: int) -> np.ndarray:
    """n = ⌈m·N⌉ per entry: how many of the last steps an entry with change m is denoised for.

    >>> denoise_steps(np.array([0.0, 0.25, 0.3, 0.5, 1.0]), 4).tolist()
    [0, 1, 2, 2, 4]
    """
    change = np.asarray(change, dtype=np.float64)
    return np.clip(np.ceil((change - TIE_TOLERANCE) * steps), 0, steps).astype(np.int64)


def last_frozen_step(change: np.ndarray | float, steps: int) -> np.ndarray:
    """L = N − ⌈m·N⌉: the entry is replaced by the noised source before steps 0 … L (and by the
    clean z_src after the loop when L = N)."""
    return steps - denoise_steps(change, steps)


def frozen_schedule(change: np.ndarray | float, steps: int) -> np.ndarray:
    """Boolean (N+1, *change.shape): [i] says whether the entry is frozen before step i
    (i = N: after the loop). Equivalent to keep ≥ i/N with keep = 1 − m (see the docstring)."""
    last = last_frozen_step(change, steps)
    return np.arange(steps + 1).reshape((-1,) + (1,) * last.ndim) <= last


def change_map(task: "LatentInpainting", strength: float) -> "torch.Tensor":
    """strength · m on the latent grid, (B, 1, h, w) float32 on the CPU: each sample's soft
    mask averaged over each latent cell's pixel block (area resize), never thresholded."""
    import torch
    import torch.nn.functional as F

    masks = torch.cat([torch.from_numpy(np.ascontiguousarray(job.sample.mask, dtype=np.float32))[None, None]
                       for job in task.jobs])  # (B, 1, H, W)
    resized = F.interpolate(masks, size=tuple(task.z_src.shape[-2:]), mode="area")  # (B, 1, h, w)
    return (resized * strength).clamp(0.0, 1.0)


def noised_sources(task: "LatentInpainting", noise: str = "fixed") -> list["torch.Tensor"]:
    """z^i = add_noise(z_src, ε, t_i) for i = 0 … N−1, each (B, 4, h, w), then z^N = z_src.
    `noise="fixed"`: one ε (the generator's first draw) for every i, as the authors' code;
    "fresh": a new ε_i per index, drawn in index order."""
    if noise == "fresh":
        return [task.noised_source(i) for i in range(task.steps)] + [task.z_src]
    if noise != "fixed":
        raise ValueError(f"noise must be 'fixed' or 'fresh', got {noise!r}")
    eps = task.noise()  # (B, 4, h, w)
    return [task.add_noise(task.z_src, eps, i) for i in range(task.steps)] + [task.z_src]


def denoise(
    task: "LatentInpainting",
    last_frozen: "torch.Tensor",
    sources: list["torch.Tensor"],
    report: Callable[[int, int], None],
    observe: Observer | None = None,
) -> "torch.Tensor":
    """The Differential Diffusion loop. `last_frozen`: (B, 1, h, w) integer L per entry;
    `sources`: the N+1 latents from `noised_sources`. Returns the final (B, 4, h, w) latent."""
    import torch

    steps = task.steps
    # Steps before the smallest L are overwritten everywhere at the next step: skip them. In a
    # batch the smallest L over all samples; a sample whose own L is larger is overwritten
    # whole until its own start, so its result is the one it gets alone.
    start = min(int(last_frozen.min()), steps)
    latents = sources[start]  # (B, 4, h, w); every entry is frozen at `start` anyway

    def replace(i: int, latents: "torch.Tensor") -> "torch.Tensor":
        frozen = i <= last_frozen  # (B, 1, h, w) bool, broadcast over the 4 channels
        replaced = torch.where(frozen, sources[i], latents)  # exact copies, no arithmetic blend
        if observe is not None:
            observe(i, latents, replaced)
        return replaced

    for i in range(start, steps):
        t = task.timesteps[i]
        latents = replace(i, latents)  # (B, 4, h, w) at t_i
        latents = task.step(task.predict(latents, t), t, latents)  # (B, 4, h, w) at t_{i+1}
        report(i - start + 1, steps - start)
    return replace(steps, latents)  # m_lat = 0 entries become the clean z_src


def estimate(params, steps: int) -> tuple[int, bool]:
    """⌈strength·N⌉, the count for a map reaching 1 somewhere; inexact, since the map decides
    (a soft map that never reaches 1 costs less)."""
    return int(denoise_steps(params["strength"], steps)), False


def run(model: "Model", jobs: Sequence[TechniqueJob]) -> list[TechniqueOutput]:
    import torch

    from engine.latents import LatentInpainting

    task = LatentInpainting(model, jobs, "txt2img")
    change = change_map(task, task.job.params["strength"])  # (B, 1, h, w) float32, CPU
    last_frozen = torch.from_numpy(last_frozen_step(change.numpy(), task.steps)).to(model.device)  # (B, 1, h, w)
    with torch.no_grad():
        sources = noised_sources(task, task.job.params["noise"])
        latents = denoise(task, last_frozen, sources, task.report)
    outputs = task.outputs(latents, change_map=change, z_src=task.z_src)
    for output, frozen in zip(outputs, last_frozen):
        # The calls this sample needs alone (its own start): a batch runs from the earliest.
        output.cost.unet_calls = task.steps - min(int(frozen.min()), task.steps)
    return outputs


TECHNIQUE = register(
    Technique(
        name="diffdiff",
        summary="Differential Diffusion: soft change map, each latent entry frozen to the noised source "
        "until its own start step",
        unet="txt2img",
        schema=SCHEMA,
        run_batch=run,
        estimate=estimate,
        reference="Levin & Fried, Differential Diffusion: Giving Each Pixel Its Strength, arXiv 2306.00950",
        refusal=("its per-pixel freezing follows the authors' DDPM (SD/SDXL) pipelines and is not adapted to"
                 " flow matching here"),
    )
)
