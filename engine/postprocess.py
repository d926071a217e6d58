"""Options every technique takes, applied after it: post-conditioning, then background
reconstruction. The schema is torch-free; the functions import torch when called.

Background reconstruction (x the input, x_gen the generated image, both in [0, 1] at the
working size, m the binary mask, 1 = generated):
- `none`: x_gen as decoded.
- `paste`: m·x_gen + (1−m)·x, so the output equals the input exactly outside the mask.
- `feather` (BrushNet's evaluation recipe): m_b = GaussianBlur(m, k×k) with OpenCV's sigma
  for that kernel, m' = 1 − (1−m)(1−m_b) (grows outward only: the hole stays fully
  generated), m'·x_gen + (1−m')·x.
- `poisson`: seamless cloning of the mask's bounding box Ω: inside Ω the output has the
  generated image's discrete Laplacian, on Ω's border the input's values (Pérez et al. 2003;
  Blended Latent Diffusion's alternative to decoder fine-tuning). Solved exactly per channel
  with a sparse direct solver.
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
from typing import TYPE_CHECKING

import numpy as np

from engine.metrics.crop import mask_bounding_box
from engine.params import Param, ParamSchema, fraction_of_steps
from engine.seeding import sample_seed

if TYPE_CHECKING:
    from engine.models import Model
    from engine.techniques.registry import TechniqueJob, TechniqueOutput

BACKGROUNDS = ("none", "paste", "feather", "poisson", "decoder")

POSTPROCESS_SCHEMA = ParamSchema(
    (
        Param("resize", "choice", "fit", "how a sample meets the model's resolution: fit (the whole image, longer "
              "side at the resolution) or crop (a square around the mask, at least the resolution in source pixels, "
              "then scaled; metrics then see the crop)", choices=("fit", "crop")),
        Param("background", "choice", "none", "background reconstruction applied to the decoded image: "
              "none, paste (hard copy outside the mask), feather (blurred mask growing outward), "
              "poisson (seamless clone of the mask's box), decoder (per-image decoder fine-tuning)",
              choices=BACKGROUNDS),
        Param("feather_kernel", "int", 21, "Gaussian kernel size in pixels for background=feather (odd)",
              minimum=3, maximum=255),
        Param("decoder_steps", "int", 75, "Adam steps for background=decoder", minimum=1, maximum=2000),
        Param("decoder_lr", "float", 1e-4, "Adam learning rate for background=decoder", minimum=1e-7, maximum=1e-1),
        Param("decoder_lambda", "float", 100.0, "weight of the background term for background=decoder",
              minimum=0.0, maximum=1e6),
        Param("post_condition", "bool", False, "after denoising, re-noise the composite (generated inside, "
              "input outside) to post_strength and denoise again with blending to harmonise the seam"),
        Param("post_strength", "float", 0.2, "fraction of the steps re-run by post_condition", minimum=0.01,
              maximum=1.0),
        Param("post_unet", "choice", "txt2img", "UNet that post_condition denoises with",
              choices=("txt2img", "inpaint")),
    )
)


def postprocess(model: "Model", job: "TechniqueJob", output: "TechniqueOutput") -> "TechniqueOutput":
    """Apply the job's post-conditioning and background options to a technique's output."""
    params = job.params
    if params.get("post_condition", False):
        output = post_condition(model, job, output)
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
    size = kernel_size if kernel_size % 2 == 1 else kernel_size + 1
    binary = mask.astype(np.float64)
    blurred = gaussian_blur(binary, size)
    grown = 1.0 - (1.0 - binary) * (1.0 - blurred)
    weights = grown[:, :, None]
    return (weights * generated + (1.0 - weights) * source).astype(np.float32)


def poisson_blend(generated: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Seamless clone of the mask's bounding box Ω: for each pixel p of Ω,
    |N_p|·f_p − Σ_{q∈N_p∩Ω} f_q = Σ_{q∈N_p∖Ω} x_q + Σ_{q∈N_p} (g_p − g_q), with N_p the
    4-neighbours inside the image; outside Ω the output is the input. Clipped to [0, 1]."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    height, width = mask.shape
    box = mask_bounding_box(mask)
    inside = np.zeros((height, width), dtype=bool)
    inside[box.top : box.bottom, box.left : box.right] = True
    index = -np.ones((height, width), dtype=np.int64)
    ys, xs = np.nonzero(inside)
    index[ys, xs] = np.arange(len(ys))
    g = generated.astype(np.float64)
    x = source.astype(np.float64)

    rows, cols, values = [], [], []
    rhs = np.zeros((len(ys), g.shape[2]))
    degree = np.zeros(len(ys))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        valid = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        p = np.flatnonzero(valid)
        qy, qx = ny[valid], nx[valid]
        degree[p] += 1
        rhs[p] += g[ys[p], xs[p]] - g[qy, qx]
        q_inside = inside[qy, qx]
        rows.append(p[q_inside])
        cols.append(index[qy[q_inside], qx[q_inside]])
        values.append(-np.ones(q_inside.sum()))
        rhs[p[~q_inside]] += x[qy[~q_inside], qx[~q_inside]]
    n = len(ys)
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    values.append(degree)
    system = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    solution = splu(system).solve(rhs)
    out = x.copy()
    out[ys, xs] = solution
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# --- model-based options ------------------------------------------------------------------


def decoder_finetune(model: "Model", job: "TechniqueJob", output: "TechniqueOutput") -> "TechniqueOutput":
    import torch
    import torch.nn.functional as F

    from engine.latents import encode_image, image_to_tensor, pixels_to_tensor
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
        post_quant_conv = copy.deepcopy(model.vae.post_quant_conv).float().requires_grad_(False)
        z = post_quant_conv(latents.detach().float() / model.vae.config.scaling_factor)
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


def post_condition_start(strength: float, steps: int) -> int:
    """The step post-conditioning restarts from: ⌊(1 − s)·N⌋ (the project's rounding rule,
    so s = 0.8 at N = 10 starts at 2 and re-runs 8), at most N − 1 so that at least one
    step runs."""
    return min(steps - 1, fraction_of_steps(1.0 - strength, steps))


def post_condition(model: "Model", job: "TechniqueJob", output: "TechniqueOutput") -> "TechniqueOutput":
    import torch

    from engine.latents import LatentInpainting, pixels_to_tensor

    params = job.params
    # Its own noise stream, so switching post-conditioning on leaves the technique's noise alone.
    task = LatentInpainting(model, job, params["post_unet"], seed=sample_seed(job.seed, "post_condition"))
    source = np.asarray(job.sample.image, dtype=np.float32) / 255.0
    composite = paste(output.image, source, job.sample.binary_mask)
    z = task.encode(pixels_to_tensor(composite, model))
    start = post_condition_start(params["post_strength"], task.steps)
    latents = task.add_noise(z, task.noise(), start)
    with torch.no_grad():
        for i in range(start, task.steps):
            t = task.timesteps[i]
            latents = task.step(task.predict(latents, t), t, latents)
            latents = task.mask * latents + (1 - task.mask) * task.noised_source(i + 1)
    result = task.output(latents, **output.extras)
    result.cost = output.cost + task.cost
    return result

