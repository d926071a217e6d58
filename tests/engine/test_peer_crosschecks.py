"""Peer cross-checks: each technique against the code its source published (or the library
the source calls), on the offline `tiny` model. Each test names its reference and its
tolerance; the deviations a test neutralises are those the technique's docstring lists."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from engine.latents import latent_mask
from engine.samples import make_sample, resize_to, working_size
from tests.conftest import box_mask, make_image

STEPS = 4


def _pil_nearest_latent_mask(mask: np.ndarray, latent_hw: tuple[int, int]) -> np.ndarray:
    """Blended Latent Diffusion's `_read_mask`: the 8-bit mask resized with PIL NEAREST to
    the latent grid, then /255 and thresholded at 0.5."""
    image = Image.fromarray(np.round(mask * 255).astype(np.uint8), mode="L")
    resized = np.asarray(image.resize((latent_hw[1], latent_hw[0]), Image.NEAREST), dtype=np.float64) / 255
    return resized >= 0.5


def _random_masks():
    rng = np.random.default_rng(7)
    for height, width in ((64, 64), (128, 96), (72, 136)):
        blobs = rng.random((height // 4, width // 4)) > 0.6  # blocks of 4 px: every 8×8 cell is mixed somewhere
        yield np.kron(blobs, np.ones((4, 4))).astype(np.float32)
        yield (rng.random((height, width)) > 0.5).astype(np.float32)


def test_latent_mask_equals_pil_nearest(tiny_model, demo):
    """Reference: the authors' PIL NEAREST resize (each block's centre pixel). Tolerance: 0
    differing latent cells, on the demo masks at working size and on random masks."""
    masks = [resize_to(sample, working_size(sample.size, 128)).mask for sample in demo] + list(_random_masks())
    for k, mask in enumerate(masks):
        height, width = mask.shape
        sample = make_sample(f"m{k}", make_image(width, height), np.maximum(mask, box_mask(width, height, (0, 0, 1, 1))),
                             "x")
        hw = (height // 8, width // 8)
        ours = latent_mask(sample, hw, tiny_model)[0, 0].cpu().numpy() > 0.5
        differing = int((ours != _pil_nearest_latent_mask(sample.mask, hw)).sum())
        assert differing == 0, (k, differing)


# --- Differential Diffusion vs the authors' loop -------------------------------------------

BLOCK_VALUES = (0.13, 0.37, 0.62, 0.88, 1.0)
"""Change values m with m·N off the integers at N = 4 (their `>` and our `≥` agree off ties)
and 1.0 present (no leading step is skipped); no 0 (their loop never restores z_src)."""


@pytest.fixture(scope="module")
def soft_block_sample():
    """64×64 (an 8×8 latent grid), the change map constant on each 8×8 pixel block, so our
    area resize and their bilinear resize read the same value per latent cell."""
    rng = np.random.default_rng(5)
    cells = rng.choice(BLOCK_VALUES, size=(8, 8)).astype(np.float32)
    cells[0, 0] = 1.0
    mask = np.kron(cells, np.ones((8, 8), dtype=np.float32))
    return make_sample("soft", make_image(64, 64, seed=1), mask, "a soft change"), cells


def _authors_diffdiff(model, task, keep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Differential Diffusion's SD loop (exx8/differential-diffusion `diff_pipe.py`), written
    from the paper and their code: one ε noised to every t_i, thresholds i/N, frozen where
    keep > threshold, start from the noised source at i = 0, nothing after the loop."""
    scheduler = model.new_scheduler()
    scheduler.set_timesteps(task.steps)
    timesteps = scheduler.timesteps
    noised = scheduler.add_noise(task.z_src, noise, timesteps)  # (N, 4, h, w): one ε, every t_i
    thresholds = torch.arange(len(timesteps), dtype=keep.dtype) / len(timesteps)
    frozen = keep[0] > thresholds[:, None, None]  # (N, h, w)
    embeddings = task.prompt.embeddings
    latents = None
    for i, t in enumerate(timesteps):
        if i == 0:
            latents = noised[:1]
        else:
            mask = frozen[i][None, None].to(latents.dtype)
            latents = noised[i : i + 1] * mask + latents * (1 - mask)
        batch = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        uncond, cond = task.unet(batch, t, encoder_hidden_states=embeddings).sample.chunk(2)
        latents = scheduler.step(uncond + task.prompt.guidance * (cond - uncond), t, latents).prev_sample
    return latents


def test_diffdiff_equals_the_authors_loop(tiny_model, soft_block_sample):
    """Reference: the authors' loop (above) on the same z_src (our posterior mean; theirs a
    posterior sample) and change map. Tolerance: exact latents with noise=fixed."""
    from engine.latents import LatentInpainting, make_generator, randn
    from engine.techniques import TechniqueJob, get_technique

    sample, cells = soft_block_sample
    technique = get_technique("diffdiff")
    job = TechniqueJob(sample, technique.resolve_params({"noise": "fixed"}), STEPS, 7.5, seed=4)
    ours = technique.run(tiny_model, job).latents
    task = LatentInpainting(tiny_model, job, "txt2img")
    noise = randn(task.shape, make_generator(tiny_model, 4), tiny_model)  # the first draw of the seed
    keep = torch.from_numpy(1.0 - cells)[None, None]
    with torch.no_grad():
        theirs = _authors_diffdiff(tiny_model, task, keep, noise)
    assert torch.equal(ours, theirs)
