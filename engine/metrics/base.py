"""What every metric receives and how it says it cannot run (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class MetricUnavailable(RuntimeError):
    """A metric whose model cannot be loaded here (no network, no cache, missing package).
    The run records the metric as missing, never as 0; the message says what is needed."""


@dataclass(frozen=True)
class EvalItem:
    """One finished sample, as the metrics see it, all at the working size.

    `output`, `source` and `reference` are uint8 (H, W, 3) arrays (the saved output, the
    input, the ground truth if any); `mask` is bool (H, W), True = generated."""

    sample_id: str
    output: np.ndarray
    source: np.ndarray
    mask: np.ndarray
    prompt: str
    reference: np.ndarray | None = None
