"""Background fidelity: how well the unmasked region of the input survives.

Definitions (images x_out, x in [0, 1], binary mask m with 1 = generated):

    bg_mse  = Σ (x_out − x)² · (1 − m)  /  (3 · Σ (1 − m))      mean over unmasked pixels and channels
    bg_psnr = 10 · log10(1 / bg_mse)                             +inf when bg_mse = 0

This is the per-channel mean; BrushBench divides by Σ(1 − m) without the 3, which gives
values 3× larger. Values are computed on the 8-bit image that is saved, against the input at
the same (working) size, so they can be recomputed from the stored files. A random or
untrained VAE does not preserve the background; these numbers say nothing about whether a
paste happened unless the run's background option says so.
"""

from __future__ import annotations

import math

import numpy as np


def _as_unit_float(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    return array.astype(np.float64)


def background_mse(output: np.ndarray, source: np.ndarray, mask: np.ndarray) -> float:
    """See the module docstring. `output`, `source`: (H, W, 3) uint8 or float in [0, 1];
    `mask`: (H, W) bool or {0, 1}, 1 = generated."""
    out = _as_unit_float(output)
    src = _as_unit_float(source)
    if out.shape != src.shape:
        raise ValueError(f"output shape {out.shape} differs from source shape {src.shape}")
    keep = 1.0 - (np.asarray(mask) >= 0.5).astype(np.float64)
    if keep.shape != out.shape[:2]:
        raise ValueError(f"mask shape {keep.shape} differs from image shape {out.shape[:2]}")
    kept = keep.sum()
    if kept == 0:
        raise ValueError("the mask covers the whole image: there is no background to measure")
    squared = ((out - src) ** 2).sum(axis=2)
    return float((squared * keep).sum() / (out.shape[2] * kept))


def background_psnr(output: np.ndarray, source: np.ndarray, mask: np.ndarray) -> float:
    mse = background_mse(output, source, mask)
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def sample_metrics(output: np.ndarray, source: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    mse = background_mse(output, source, mask)
    return {"bg_mse": mse, "bg_psnr": math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)}
