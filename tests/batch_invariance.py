"""Batch-invariant kernels for tests: within the context, conv2d and linear compute each row
of a batch on its own, so a model's output for a sample does not depend on what else is in
its batch.

Why: on this CPU, oneDNN/MKL pick other kernels (and summation orders) for other batch
sizes, so a UNet's output for one sample moves by ~2e-6 when three others share its call
(measured: Conv2d, Linear and GroupNorm are the modules that differ, and CLIP's QuickGELU
sigmoid; attention and the other activations are row-independent). Run both sides under this context and a batched run must
equal batch 1 bit for bit, which tests the engine's batching (noise streams, masks, prompts,
hooks) exactly; without it the same comparison holds within the kernels' rounding.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F


def _rowwise(function):
    def per_row(input, *args, **kwargs):
        if input.ndim < 2:
            return function(input, *args, **kwargs)
        # Each row made contiguous: kernels choose their path by the layout too (a batch's
        # channels-last row and a lone sample's transposed view took different GroupNorm
        # paths), so both sides of a comparison must run under this context.
        return torch.cat([function(input[row : row + 1].contiguous(), *args, **kwargs)
                          for row in range(input.shape[0])])

    per_row.__wrapped__ = function
    return per_row


@contextmanager
def batch_invariant_kernels() -> Iterator[None]:
    originals = {"conv2d": F.conv2d, "linear": F.linear, "group_norm": F.group_norm}
    # CLIP's QuickGELU (x·sigmoid(1.702x), in tiny-sdxl's second text encoder) computes a
    # row's elements on the vectorised or the scalar tail path depending on where the row
    # starts in the whole tensor: 1.5e-8 apart for a batch of 4 vs 1 (measured).
    sigmoid = torch.sigmoid
    try:
        for name, function in originals.items():
            setattr(F, name, _rowwise(function))
        torch.sigmoid = _rowwise(sigmoid)
        yield
    finally:
        for name, function in originals.items():
            setattr(F, name, function)
        torch.sigmoid = sigmoid
