"""`latentpaint`: training-free context propagation after LatentPaint (Corneanu et al.,
WACV 2024; no public code; RESEARCH.md, "LatentPaint").

LatentPaint conditions a generic latent diffusion model at inference ("post-conditioning")
with a *trained* propagation module that carries context from the known to the unknown
region inside the network. This is the training-free variant RESEARCH.md asks for: the
trained module is replaced by a copy of hidden states from a parallel UNet pass.

Each step i (t = t_i, B = 2 with classifier-free guidance, else 1):

    known   = add_noise(z_src, ε, t_i)                       (the "known pass" latent)
    batch   = [uncond gen, cond gen, uncond known, cond known]   one forward, 2B latents
    in every hooked block, on its output h (2B, C, h', w'):
        h[:B] ← keep'·h[B:] + (1 − keep')·h[:B],   keep' = (resize_nearest_centre(m_lat) == 0)
    ε̂       = CFG of the generation half only (the known half's prediction is discarded)
    z       ← scheduler.step(ε̂, t_i, z)
    z       ← m_lat·z + (1 − m_lat)·add_noise(z_src, ε_{i+1}, t_{i+1})   (fresh ε_{i+1})

and after the last step the background is the clean z_src, as in Blended Latent Diffusion
(blending after the step, like `blended`), so the final latent equals z_src outside m_lat.
The blending is kept because propagation alone acts on features, not on the latent: without
it nothing ties the generated background to the input.

Choices and deviations:
- The noise of the known pass is the noise of the current background: ε at step i is the
  ε drawn for the blend that ended step i−1 (the initial noise at step 0). The two halves
  then receive *identical* latents outside the mask (from step 1 on), and the known pass is
  "the generation latent with the source in the hole"; with a fresh ε the overwrite would
  swap in features of a different noise realisation than the latent the generation half
  sees. It also draws no extra noise, so with `propagate_until = 0` the technique makes the
  same random draws and the same UNet calls as `blended` and gives its pixels exactly.
- Overwritten tensors: every 4-D tensor a hooked block returns, i.e. the main hidden
  states and, for down blocks, every skip residual they emit (diffusers' down blocks
  return (hidden_states, residuals), the last residual being the main output itself).
  Replacing the main output but not the skips would hand the up path two different
  versions of the known region. The skip from `conv_in` belongs to no block and is left
  alone (from step 1 on it differs between the halves only within 1 latent pixel of the hole).
- Masks: m_lat resized to each tensor's spatial size by nearest neighbour at each cell's
  centre (`engine.latents.NEAREST_RULE`, the rule of the latent mask itself); a
  low-resolution cell is "known" when the sampled latent pixel is (no erosion).
- Hooks are registered on the selected blocks for each propagating forward only and
  removed in a `finally`, so an exception anywhere (the UNet, an observer hook, the
  progress callback) leaves the shared UNet without them. They are *prepended*, so that
  any hook already on a block (an observer) sees the propagated output, as the next layer
  does.
- `blocks` default `mid+up`: the generation half's down path already sees the known
  latent exactly outside the hole, so its known-region features differ from the known
  pass's only within the hole's receptive field; the bottleneck and the decoder, where
  self-attention and large receptive fields mix the hole into everything, are where the
  generation's known-region features drift, and where pinning them to the known pass
  carries context into the hole on the way to ε̂. `all` adds the down path.
- `propagate_until` p: steps i < ⌊pN⌋ propagate (early steps lay out structure, where
  context matters most); the rest are plain `blended` steps (one CFG forward).
- The paper's trained module and its training are not reproduced; no claim is made that
  this matches LatentPaint's numbers.

Cost ≈ 2N UNet calls: a propagating step runs one forward of twice the CFG batch and
counts 2 calls (a CFG pair counts as 1, see `Cost`), a plain step 1, so the total is
N + ⌊pN⌋ (2N at the default p = 1). No extra VAE work beyond `blended`.

On SDXL: the same hooks on SDXL's blocks, chosen by the same names: three down blocks (the
first without attention), the mid block and three up blocks with transformer depths 1, 2,
10, so `mid+up` hooks the deep 10-layer blocks too. Each known pass carries the conditioning
(text, pooled text and time ids) of its generation row; conditioning as in `blended`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from engine.params import Param, ParamSchema, fraction_of_steps
from engine.techniques.registry import Technique, TechniqueJob, TechniqueOutput, register

if TYPE_CHECKING:
    import torch

    from engine.latents import LatentInpainting
    from engine.models import Model

BLOCK_CHOICES = ("down", "mid", "up", "mid+up", "all")

SCHEMA = ParamSchema(
    (
        Param(
            "blocks",
            "choice",
            "mid+up",
            "UNet blocks whose output hidden states are overwritten, in the generation pass and "
            "inside the known region, by the known pass's: down (down_blocks, skips included), "
            "mid (mid_block), up (up_blocks), mid+up, all",
            choices=BLOCK_CHOICES,
        ),
        Param(
            "propagate_until",
            "float",
            1.0,
            "fraction of the steps, from the start, with propagation on (each costs 2 UNet calls); "
            "later steps are plain blended steps (0 = exactly blended)",
            minimum=0.0,
            maximum=1.0,
        ),
    )
)


def propagated_steps(steps: int, fraction: float) -> int:
    """⌊pN⌋ by the project's one rounding rule (`engine.params.fraction_of_steps`; 0.29·100
    is 28.999… as a float).

    >>> propagated_steps(4, 0.5), propagated_steps(100, 0.29), propagated_steps(10, 0.0)
    (2, 29, 0)
    """
    return fraction_of_steps(fraction, steps)


def select_blocks(unet: Any, choice: str) -> list[tuple[str, Any]]:
    """The (name, module) pairs of `unet` that `blocks=choice` hooks, in forward order."""
    if choice not in BLOCK_CHOICES:
        raise ValueError(f"unknown block choice {choice!r} (known: {', '.join(BLOCK_CHOICES)})")
    parts = {"all": ("down", "mid", "up"), "mid+up": ("mid", "up")}.get(choice, (choice,))
    selected: list[tuple[str, Any]] = []
    if "down" in parts:
        selected += [(f"down_blocks.{k}", block) for k, block in enumerate(unet.down_blocks)]
    if "mid" in parts and unet.mid_block is not None:
        selected.append(("mid_block", unet.mid_block))
    if "up" in parts:
        selected += [(f"up_blocks.{k}", block) for k, block in enumerate(unet.up_blocks)]
    if not selected:
        raise ValueError(f"blocks={choice!r}: this UNet has no such block")
    return selected


def overwrite_known(output: Any, keep_mask: Any, half: int) -> Any:
    """`output` (a tensor or nested tuple of them) with, in every 4-D tensor of batch 2·half,
    the first half replaced by the second where `keep_mask(h, w)` (bool (half, 1, h, w), one
    row per generation row) is True.
    Other values pass through. New tensors are built: inputs may be aliased elsewhere."""
    import torch

    if isinstance(output, torch.Tensor):
        if output.ndim != 4 or output.shape[0] != 2 * half:
            return output
        generation, known = output[:half], output[half:]  # each (B, C, h', w')
        keep = keep_mask(tuple(output.shape[-2:]))  # (half, 1, h', w'), broadcast over C
        return torch.cat([torch.where(keep, known, generation), known])
    if isinstance(output, (tuple, list)):
        return type(output)(overwrite_known(item, keep_mask, half) for item in output)
    return output


@contextmanager
def propagation_hooks(modules: list[Any], latent_mask: "torch.Tensor", half: int) -> Iterator[None]:
    """Forward hooks on `modules` that copy the known half's outputs into the generation half
    inside the known region (latent_mask == 0, resized per output); removed on exit, always."""
    from engine.latents import resize_mask

    keep_by_size: dict[tuple[int, int], Any] = {}

    def keep_mask(size: tuple[int, int]):
        if size not in keep_by_size:  # one resize per resolution and forward
            keep_by_size[size] = resize_mask(latent_mask, size) == 0
        return keep_by_size[size]

    def hook(module, args, output):
        return overwrite_known(output, keep_mask, half)

    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_hook(hook, prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def predict_with_propagation(
    task: "LatentInpainting", latents: "torch.Tensor", known: "torch.Tensor", t: "torch.Tensor", modules: list[Any]
) -> "torch.Tensor":
    """ε̂ for `latents` with CFG, from one forward over [generation batch, known batch] with
    the propagation hooks on `modules`. Counts 2 UNet calls (twice the CFG batch)."""
    import torch

    prompt = task.prompt
    copies = 2 if prompt.cfg else 1  # [uncond × B, cond × B] with CFG
    half = copies * task.size  # C = copies·B rows per half
    generation = torch.cat([latents] * copies)  # (C, 4, h, w)
    known_batch = torch.cat([known] * copies)  # (C, 4, h, w)
    batch = task.scheduler.scale_model_input(torch.cat([generation, known_batch]), t)  # (2C, 4, h, w)
    conditioning = prompt.unet_kwargs(copies=2)  # (2C, 77, d) (and SDXL's added): the same prompts for both halves
    masks = torch.cat([task.mask] * copies)  # (C, 1, h, w): row r of a half is sample r mod B
    task.cost.unet_calls += 2
    with torch.no_grad(), propagation_hooks(modules, masks, half=half):
        noise = task.unet(batch, t, **conditioning).sample  # (2C, 4, h, w)
    noise = noise[:half]  # the generation half; the known pass only lends its features
    if not prompt.cfg:
        return noise
    unconditional, conditional = noise.chunk(2)  # each (B, 4, h, w)
    return unconditional + prompt.guidance * (conditional - unconditional)


def estimate(params, steps: int) -> tuple[int, bool]:
    """N + ⌊pN⌋ UNet calls (a propagating step counts 2), exactly."""
    return steps + propagated_steps(steps, params["propagate_until"]), True


def run(model: "Model", jobs: Sequence[TechniqueJob]) -> list[TechniqueOutput]:
    from engine.latents import LatentInpainting

    task = LatentInpainting(model, jobs, "txt2img")
    modules = [module for _, module in select_blocks(task.unet, task.job.params["blocks"])]
    propagating = propagated_steps(task.steps, task.job.params["propagate_until"])

    # Same random draws, in the same order, as `blended` with blend_start = 0.
    noise = task.noise()  # (B, 4, h, w)
    latents = noise * task.init_noise_sigma  # (B, 4, h, w), pure noise
    for i in range(task.steps):
        t = task.timesteps[i]
        if i < propagating:
            # `noise` is the ε of the current background (shared ε, see the docstring).
            known = task.add_noise(task.z_src, noise, i)  # (B, 4, h, w)
            noise_pred = predict_with_propagation(task, latents, known, t, modules)
        else:
            noise_pred = task.predict(latents, t)
        latents = task.step(noise_pred, t, latents)  # (B, 4, h, w) at t_{i+1}
        if i + 1 < task.steps:
            noise = task.noise()  # fresh ε_{i+1}, as task.noised_source(i + 1) would draw
            background = task.add_noise(task.z_src, noise, i + 1)
        else:
            background = task.z_src  # clean after the last step
        latents = task.mask * latents + (1 - task.mask) * background
        task.report(i + 1, task.steps)

    return task.outputs(latents, z_src=task.z_src, latent_mask=task.mask)


TECHNIQUE = register(
    Technique(
        name="latentpaint",
        summary="LatentPaint, training-free: a parallel known pass overwrites hooked UNet features "
        "in the known region; background blended every step (≈ 2N UNet calls)",
        unet="txt2img",
        schema=SCHEMA,
        run_batch=run,
        estimate=estimate,
        reference="Corneanu et al., LatentPaint, WACV 2024 (training-free variant; no public code)",
        refusal=("it hooks UNet blocks, and FLUX's denoiser is a transformer without them"),
    )
)
