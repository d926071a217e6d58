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
