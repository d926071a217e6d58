"""Background fidelity: how well the unmasked region of the input survives.

Definitions (images x_out, x in [0, 1], binary mask m with 1 = generated):

    bg_mse  = Σ (x_out − x)² · (1 − m)  /  (3 · Σ (1 − m))      mean over unmasked pixels and channels
    bg_psnr = 10 · log10(1 / bg_mse)                             +inf when bg_mse = 0

This is the per-channel mean; BrushBench divides by Σ(1 − m) without the 3, which gives
values 3× larger. Values are computed on the 8-bit image that is saved, against the input at
the same (working) size, so they can be recomputed from the stored files. A random or
untrained VAE does not preserve the background; these numbers say nothing about whether a
paste happened unless the run's background option says so.

Structural similarity of the background (Wang et al. 2004 settings: Gaussian window σ = 1.5
truncated at radius 5, i.e. 11 × 11 taps, normalised to sum 1; population (co)variances;
K1 = 0.01, K2 = 0.03, data range 1, so C1 = 0.01², C2 = 0.03²). For each channel c and pixel p,
with μ, σ², σ_xy the window-weighted means, variances and covariance of x_out and x around p:

    SSIM_c(p) = (2 μ_out μ_x + C1)(2 σ_out,x + C2) / ((μ_out² + μ_x² + C1)(σ_out² + σ_x² + C2))
    bg_ssim   = mean of SSIM_c(p) over c ∈ {R, G, B} and p ∈ V
    V         = pixels whose whole 11 × 11 window lies inside the image and contains no masked
                pixel (the mask dilated by an 11 × 11 square, and a 5-pixel image border, removed)

A window centred on an unmasked pixel next to the mask would see generated pixels, so bg_ssim
would change with what was painted inside the mask; V keeps only windows that see background
alone, which makes bg_ssim depend on unmasked pixels only (1.0, up to rounding, whenever the background is
pasted back). The seam is what the ring metrics measure. Dropping the image border is
skimage's own convention (its mean SSIM crops the window radius), so with an empty mask
bg_ssim equals skimage's `structural_similarity` on the whole image.

Ring (the band just outside the mask, where seams show), for an integer width w ≥ 1:

    ring(w)   = dilate(m, (2w + 1) × (2w + 1) square) ∧ ¬m
              = unmasked pixels within Chebyshev distance w (max(|dy|, |dx|) ≤ w) of a masked pixel
    ring_mse  = Σ (x_out − x)² · r  /  (3 · Σ r)          r = ring(w), same convention as bg_mse
    ring_psnr = 10 · log10(1 / ring_mse)                   +inf when ring_mse = 0

The ring does not extend past the image border. It is empty exactly when the mask is empty or
covers the whole image; the ring functions then raise ValueError.
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


# Gaussian window of skimage's `gaussian_weights=True`: truncate 3.5 at σ 1.5, radius
# int(3.5·1.5 + 0.5) = 5 (an 11-tap filter, as in Wang et al.).
SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)


def _binary(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask) >= 0.5


def _checked_pair(
    output: np.ndarray, source: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = _as_unit_float(output)
    src = _as_unit_float(source)
    if out.shape != src.shape:
        raise ValueError(f"output shape {out.shape} differs from source shape {src.shape}")
    binary = _binary(mask)
    if binary.shape != out.shape[:2]:
        raise ValueError(f"mask shape {binary.shape} differs from image shape {out.shape[:2]}")
    return out, src, binary


def _dilate_square(mask: np.ndarray, radius: int) -> np.ndarray:
    # Imported here: scipy.ndimage costs ~0.5 s and the CLI imports this package for METRICS.
    from scipy.ndimage import maximum_filter

    # A maximum over a square is a binary dilation by that square, computed separably (30× faster
    # than binary_dilation at 512²); cval=0: pixels outside the image are not masked.
    return maximum_filter(np.asarray(mask, bool), size=2 * radius + 1, mode="constant", cval=0)


def ssim_region(mask: np.ndarray) -> np.ndarray:
    """V of the module docstring: bool (H, W), True where the 11 × 11 SSIM window centred on
    the pixel lies inside the image and contains no masked pixel."""
    binary = _binary(mask)
    r = SSIM_RADIUS
    inside = np.zeros(binary.shape, bool)
    inside[r : binary.shape[0] - r, r : binary.shape[1] - r] = True
    return inside & ~_dilate_square(binary, r)


def _ssim_map(out: np.ndarray, src: np.ndarray) -> np.ndarray:
    """SSIM_c(p) averaged over channels, (H, W); inputs float in [0, 1], (H, W, C)."""
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(
        out,
        src,
        data_range=1.0,
        channel_axis=2,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    return full.mean(axis=2)


def background_ssim(output: np.ndarray, source: np.ndarray, mask: np.ndarray) -> float:
    """bg_ssim of the module docstring. Same inputs as `background_mse`. Raises ValueError when
    no 11 × 11 window lies wholly in the background (the mask reaches within 5 pixels of every
    interior pixel, or the image is smaller than 11 × 11)."""
    out, src, binary = _checked_pair(output, source, mask)
    region = ssim_region(binary)
    if not region.any():
        raise ValueError("no 11×11 SSIM window lies entirely in the background: bg_ssim is undefined")
    return float(_ssim_map(out, src)[region].mean())


def ring_mask(mask: np.ndarray, width: int) -> np.ndarray:
    """ring(width) of the module docstring: bool (H, W), unmasked pixels within Chebyshev
    distance `width` of the mask."""
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"ring width must be an integer ≥ 1, got {width!r}")
    binary = _binary(mask)
    return _dilate_square(binary, int(width)) & ~binary


def ring_mse(output: np.ndarray, source: np.ndarray, mask: np.ndarray, width: int = 8) -> float:
    """ring_mse of the module docstring; ValueError when the ring is empty."""
    _, _, binary = _checked_pair(output, source, mask)
    ring = ring_mask(binary, width)
    if not ring.any():
        raise ValueError("the ring is empty (the mask is empty or covers the whole image)")
    # The bg_mse formula over the ring: background_mse measures where its mask is 0.
    return background_mse(output, source, ~ring)


def ring_psnr(output: np.ndarray, source: np.ndarray, mask: np.ndarray, width: int = 8) -> float:
    mse = ring_mse(output, source, mask, width)
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def sample_metrics(
    output: np.ndarray, source: np.ndarray, mask: np.ndarray, *, ring_width: int = 8
) -> dict[str, float]:
    """bg_mse, bg_psnr, bg_ssim, ring_mse, ring_psnr (module docstring) for one sample.

    bg_mse and bg_psnr are always present (a mask covering the whole image raises, as in
    `background_mse`). A metric undefined for this sample is left out rather than stored as 0
    or NaN: bg_ssim when no SSIM window lies wholly in the background, the ring metrics when
    the mask is empty."""
    mse = background_mse(output, source, mask)
    metrics = {"bg_mse": mse, "bg_psnr": math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)}
    out, src, binary = _checked_pair(output, source, mask)
    region = ssim_region(binary)
    if region.any():
        metrics["bg_ssim"] = float(_ssim_map(out, src)[region].mean())
    ring = ring_mask(binary, ring_width)
    if ring.any():
        r_mse = background_mse(output, source, ~ring)
        metrics["ring_mse"] = r_mse
        metrics["ring_psnr"] = math.inf if r_mse == 0 else 10.0 * math.log10(1.0 / r_mse)
    return metrics
