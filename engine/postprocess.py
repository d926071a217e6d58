"""Options every technique takes, applied after it: post-conditioning, then background
reconstruction. Their schema and post-conditioning's UNet-call count live in engine.options
(torch-free); the functions here import torch when called.

Background reconstruction (x the input, x_gen the generated image, both in [0, 1] at the
working size, m the binary mask, 1 = generated):
- `none`: x_gen as decoded.
- `paste`: m·x_gen + (1−m)·x, so the output equals the input exactly outside the mask.
- `feather` (BrushNet's evaluation recipe): m_b = GaussianBlur(m, k×k) with OpenCV's sigma
  for that kernel, m' = 1 − (1−m)(1−m_b) (grows outward only: the hole stays fully
  generated), m'·x_gen + (1−m')·x.
- `poisson` (Blended Latent Diffusion's alternative to decoder fine-tuning): OpenCV's
  seamlessClone(x_gen, x, m, NORMAL_CLONE) in place: inside the mask's box the generated
  gradient within m and the input's elsewhere, the input's values on the box's ring; images
  padded so that masks at the borders keep a box (see `poisson_blend`).
- `decoder` (Blended Latent Diffusion, background reconstruction): a copy of the VAE decoder
  is fine-tuned per image with Adam on MSE(D(z)·m, x_gen·m) + λ·MSE(D(z)·(1−m), x·(1−m)) for
  `decoder_steps` steps, z the generated latent (fixed); the output is D(z). Only the decoder
  is optimised, as the authors do (the VAE's post_quant_conv before it stays fixed). The
  shared model is never modified. Deviation: fp32 copies whatever the model dtype (fp16
  fine-tuning underflows).

Post-conditioning: the composite m·x_gen + (1−m)·x is encoded, noised to the timestep at
⌊(1−s)·N⌋ (at most N − 1; ⌊·⌋ of the decimal value, `engine.params.fraction_of_steps`, so
s = 0.8 at N = 10 re-runs 8 steps, not 9) and denoised to the end again with blending (background replaced by the noised
source each step), so the seam harmonises; costs about s·N UNet calls.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Sequence

import numpy as np

from engine.options import post_condition_start
from engine.seeding import sample_seed

if TYPE_CHECKING:
    from engine.models import Model
    from engine.techniques.registry import TechniqueJob, TechniqueOutput


def postprocess(model: "Model", job: "TechniqueJob", output: "TechniqueOutput") -> "TechniqueOutput":
    """Apply the job's post-conditioning and background options to a technique's output."""
    return postprocess_batch(model, [job], [output])[0]


def postprocess_batch(model: "Model", jobs: Sequence["TechniqueJob"],
                      outputs: Sequence["TechniqueOutput"]) -> list["TechniqueOutput"]:
    """`postprocess` for a batch: post-conditioning runs batched (one loop for all), then
    each sample's background option on its own."""
    outputs = list(outputs)
    if jobs[0].params.get("post_condition", False):
        outputs = post_condition(model, jobs, outputs)
    return [_background(model, job, output) for job, output in zip(jobs, outputs)]


def _background(model: "Model", job: "TechniqueJob", output: "TechniqueOutput") -> "TechniqueOutput":
    params = job.params
    background = params.get("background", "none")
    if background == "none":
        return output
    source = np.asarray(job.sample.image, dtype=np.float32) / 255.0
    mask = job.sample.binary_mask
    if background == "paste":
        image = paste(output.image, source, mask)
    elif background == "feather":
        image = feather(output.image, source, mask, params["feather_kernel"])
    elif background == "poisson":
        image = poisson_blend(output.image, source, mask)
    else:
        return decoder_finetune(model, job, output)
    output.image = image
    return output


# --- pixel-space compositing -------------------------------------------------------------


def paste(generated: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """m·x_gen + (1−m)·x for a binary mask (H, W)."""
    return np.where(mask[:, :, None], generated, source).astype(np.float32)


# OpenCV's fixed kernels for sizes up to 7 with sigma <= 0 (binomial, not sampled Gaussians).
_SMALL_KERNELS = {
    1: [1.0],
    3: [0.25, 0.5, 0.25],
    5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
    7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
}


def gaussian_kernel(size: int) -> np.ndarray:
    """The 1-D kernel cv2.GaussianBlur(m, (k, k), 0) uses: a fixed binomial kernel for
    k <= 7, else a normalised Gaussian with sigma = 0.3·((k−1)/2 − 1) + 0.8."""
    if size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be odd, got {size}")
    if size in _SMALL_KERNELS:
        return np.array(_SMALL_KERNELS[size])
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(mask: np.ndarray, size: int) -> np.ndarray:
    """Separable Gaussian blur with reflect-101 borders (OpenCV's default)."""
    kernel = gaussian_kernel(size)
    radius = size // 2
    blurred = mask.astype(np.float64)
    for axis in (0, 1):
        padding = [(0, 0), (0, 0)]
        padding[axis] = (radius, radius)
        padded = np.pad(blurred, padding, mode="reflect")
        blurred = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="valid"), axis, padded)
    return blurred


def feather(generated: np.ndarray, source: np.ndarray, mask: np.ndarray, kernel_size: int = 21) -> np.ndarray:
    # An even size raises in gaussian_kernel: it used to become size + 1 here, so the kernel
    # used differed from the one recorded (the schema now admits odd sizes only).
    binary = mask.astype(np.float64)
    blurred = gaussian_blur(binary, kernel_size)
    grown = 1.0 - (1.0 - binary) * (1.0 - blurred)
    weights = grown[:, :, None]
    return (weights * generated + (1.0 - weights) * source).astype(np.float32)


POISSON_PAD = 2
"""Pixels of replicated border added around the images before cloning: OpenCV clears the
mask's outermost pixel ring and fixes its box's outer ring to the input, so a mask reaching
an image border needs room around the image to keep that box (and its boundary) intact."""


def to_8bit(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 by rounding (the runner's rule for stored images)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def poisson_blend(generated: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blended Latent Diffusion's Poisson blending: OpenCV's
    `cv2.seamlessClone(generated, input, mask, centre, NORMAL_CLONE)`, in place.

    Inside the mask's bounding box B, f solves Δf = div v with v the generated image's
    gradient inside the mask and the input's elsewhere in B, and f = x on B's outer ring
    (Pérez et al. 2003, as OpenCV discretises it); outside B the output is the input.
    Deviations from the authors' helper (`general_utils/seamless_cloning.py`), and why:
    - the clone is placed where the mask is (centre chosen so OpenCV's box lands on the
      mask's own box, no shift); the helper crops its source to rows rmin:rmax and columns
      cmin:cmax (one short of the box) and centres by its own rounding. Run on the same
      images its output differed from this in-place clone by up to 108 levels on 1,178
      pixels (measured once; which of its choices causes that is not established: compare
      with care where exact agreement with the authors' numbers matters);
    - the images are padded by `POISSON_PAD` replicated pixels and cropped back, so a mask
      touching an image border (or covering the whole image) keeps a box with a boundary,
      as it would inside a larger image; the helper passes such masks to OpenCV as they are;
    - floats become 8 bits by rounding (the helper truncates).
    Returns float32 (H, W, 3) in [0, 1] on the 8-bit grid."""
    import cv2

    binary = np.asarray(mask, dtype=bool)
    if not binary.any():
        return np.asarray(source, dtype=np.float32)
    pad = POISSON_PAD

    def padded(image: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(to_8bit(image), pad, pad, pad, pad, cv2.BORDER_REPLICATE)

    mask8 = np.pad(binary.astype(np.uint8) * 255, pad)
    left, top, width, height = cv2.boundingRect(mask8)
    centre = (left + width // 2, top + height // 2)  # OpenCV's box is centre − size//2: the mask's own
    cloned = cv2.seamlessClone(padded(generated), padded(source), mask8, centre, cv2.NORMAL_CLONE)
    rows, cols = binary.shape
    return (cloned[pad : pad + rows, pad : pad + cols].astype(np.float32) / 255.0).astype(np.float32)


# --- model-based options ------------------------------------------------------------------


def decoder_finetune(model: "Model", job: "TechniqueJob", output: "TechniqueOutput") -> "TechniqueOutput":
    import torch

    # The runner generates under inference_mode, which would forbid the backward pass;
    # tensors made in it stay usable as inputs (never saved for backward here).
    with torch.inference_mode(False):
        return _decoder_finetune(model, job, output)


def _decoder_finetune(model: "Model", job: "TechniqueJob", output: "TechniqueOutput") -> "TechniqueOutput":
    import torch
    import torch.nn.functional as F

    from engine.latents import encode_image, image_to_tensor, latent_shift, pixels_to_tensor
    from engine.techniques.registry import Cost, TechniqueOutput

    params = job.params
    cost = Cost()
    latents = output.latents
    if latents is None:  # a technique without a latent (e.g. a pasted crop): encode its image
        latents = encode_image(model, pixels_to_tensor(output.image, model))
        cost.vae_encodes += 1
    # fp32 copy: fine-tuning in fp16 underflows; the shared VAE is never touched. Only the
    # decoder is optimised, as the authors do: post_quant_conv is applied (fixed) once.
    decoder = copy.deepcopy(model.vae.decoder).float().train().requires_grad_(True)
    with torch.no_grad():
        post_quant_conv = None if model.vae.post_quant_conv is None else \
            copy.deepcopy(model.vae.post_quant_conv).float().requires_grad_(False)  # FLUX's VAE has none
        unscaled = latents.detach().float() / model.vae.config.scaling_factor + latent_shift(model)
        z = unscaled if post_quant_conv is None else post_quant_conv(unscaled)
    target_generated = torch.from_numpy(output.image).permute(2, 0, 1)[None].to(model.device) * 2 - 1
    target_source = image_to_tensor(job.sample.image, model).float()
    mask = torch.from_numpy(job.sample.binary_mask.astype(np.float32))[None, None].to(model.device)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=params["decoder_lr"])
    with torch.enable_grad():
        for _ in range(params["decoder_steps"]):
            optimiser.zero_grad(set_to_none=True)
            decoded = decoder(z)
            loss = F.mse_loss(decoded * mask, target_generated * mask) + params["decoder_lambda"] * F.mse_loss(
                decoded * (1 - mask), target_source * (1 - mask)
            )
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        decoded = decoder(z)
    cost.vae_decodes += params["decoder_steps"] + 1
    cost.optimisation_steps += params["decoder_steps"]
    image = (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
    return TechniqueOutput(image=image, latents=latents, cost=output.cost + cost, extras=output.extras)


def post_condition(model: "Model", jobs: Sequence["TechniqueJob"],
                   outputs: Sequence["TechniqueOutput"]) -> list["TechniqueOutput"]:
    """Post-conditioning of a batch's outputs, one loop for all (see the module docstring)."""
    import torch

    from engine.latents import LatentInpainting, pixels_to_tensor

    params = jobs[0].params
    # Its own noise stream, so switching post-conditioning on leaves the technique's noise alone.
    task = LatentInpainting(model, jobs, params["post_unet"],
                            seeds=[sample_seed(job.seed, "post_condition") for job in jobs])
    composites = [paste(output.image, np.asarray(job.sample.image, dtype=np.float32) / 255.0, job.sample.binary_mask)
                  for job, output in zip(jobs, outputs)]
    z = task.encode(torch.cat([pixels_to_tensor(composite, model) for composite in composites]))  # (B, 4, h, w)
    start = post_condition_start(params["post_strength"], task.steps)
    latents = task.add_noise(z, task.noise(), start)
    with torch.no_grad():
        for i in range(start, task.steps):
            t = task.timesteps[i]
            latents = task.step(task.predict(latents, t), t, latents)
            latents = task.mask * latents + (1 - task.mask) * task.noised_source(i + 1)
    results = task.outputs(latents)
    for result, output in zip(results, outputs):
        result.extras = output.extras
        result.cost = output.cost + task.cost
    return results

