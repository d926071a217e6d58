"""Metrics: per-sample values computed on the saved (8-bit) output, so a number can always be
recomputed from the files. What each metric is (definition, direction, level, group)
lives in `catalogue`; the heavy metrics (KID, CLIP, detection) arrive in their own modules.

Importing this package stays cheap (the CLI's --help reads the catalogue): the background
functions, which need numpy and scipy, load on first use."""

from __future__ import annotations

from typing import Any

from engine.metrics.catalogue import METRICS, MetricInfo, higher_is_better, metric_info

_LAZY = {"background_mse", "background_psnr", "sample_metrics"}

__all__ = ["METRICS", "MetricInfo", "background_mse", "background_psnr", "higher_is_better", "metric_info",
           "sample_metrics"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from engine.metrics import background

        return getattr(background, name)
    raise AttributeError(f"module 'engine.metrics' has no attribute {name!r}")
