"""Metrics: per-sample values computed on the saved (8-bit) output, so a number can always be
recomputed from the files. Torch-free definitions and directions live here; the heavy
set-level metrics (KID, CLIP) arrive in their own modules."""

from __future__ import annotations

from dataclasses import dataclass

from engine.metrics.background import background_mse, background_psnr, sample_metrics


@dataclass(frozen=True)
class MetricInfo:
    name: str
    description: str
    higher_is_better: bool
    unit: str = ""


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "bg_mse",
            "mean squared error against the input over unmasked pixels and RGB channels, images in [0, 1]",
            higher_is_better=False,
        ),
        MetricInfo("bg_psnr", "10·log10(1 / bg_mse) in dB (inf when the background is identical)", True, "dB"),
        MetricInfo(
            "bg_ssim",
            "SSIM against the input (Wang et al.: Gaussian sigma 1.5, 11x11 window, data range 1), mean over RGB "
            "and the pixels whose window lies wholly in the unmasked region",
            True,
        ),
        MetricInfo(
            "ring_mse",
            "mean squared error against the input over unmasked pixels within ring_width px (square "
            "neighbourhood, default 8) of the mask: the seam",
            False,
        ),
        MetricInfo("ring_psnr", "10·log10(1 / ring_mse) in dB (inf when the ring is identical)", True, "dB"),
        MetricInfo("clip_local", "CLIP score max(100·cos, 0) of the crop around the mask against the prompt", True),
        MetricInfo("clip_global", "CLIP score max(100·cos, 0) of the whole output against the prompt", True),
        MetricInfo("seconds", "wall time to inpaint the sample (technique only, no I/O; after a warm-up)", False, "s"),
        MetricInfo("peak_memory_mb", "peak CUDA memory allocated, or growth of the process's peak RSS on CPU", False, "MB"),
        MetricInfo("unet_calls", "UNet forward passes per image (a batched CFG pair counts once)", False),
        MetricInfo("vae_encodes", "VAE encoder passes per image", False),
        MetricInfo("vae_decodes", "VAE decoder passes per image", False),
        MetricInfo("optimisation_steps", "gradient steps per image (decoder fine-tuning)", False),
    )
}

__all__ = ["METRICS", "MetricInfo", "background_mse", "background_psnr", "sample_metrics"]
