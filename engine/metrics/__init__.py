"""Metrics: per-sample values computed on the saved (8-bit) output, so a number can always be
recomputed from the files. What each metric is (definition, direction, level, group)
lives in `catalogue`; the heavy metrics (KID, CLIP, detection) arrive in their own modules."""

from __future__ import annotations

from engine.metrics.background import background_mse, background_psnr, sample_metrics
from engine.metrics.catalogue import METRICS, MetricInfo, higher_is_better, metric_info

__all__ = ["METRICS", "MetricInfo", "background_mse", "background_psnr", "higher_is_better", "metric_info",
           "sample_metrics"]
