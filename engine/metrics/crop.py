"""The crop around the mask that local metrics look at (KID on the masked crop, local CLIP).

Rule, for a binary mask (H, W) with 1 = generated:
1. the mask's bounding box (top, bottom, left, right; bottom/right exclusive);
2. padded on every side by `margin` × the box's longer side, at least `min_padding` pixels;
3. made square around the padded box's centre with side max(its height, its width,
   `min_side`), but never more than the image's shorter side;
4. shifted (not shrunk) to lie inside the image.

The same box is cut from the output and from the reference, so both sides of a comparison
see the same pixels. A crop is square whenever the image allows it; callers resize it to
their model's input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CropRule:
    margin: float = 0.1
    min_padding: int = 16
    min_side: int = 128

    def key(self) -> str:
        """A stable identifier for caches keyed by the rule."""
        return f"margin={self.margin:g},min_padding={self.min_padding},min_side={self.min_side}"


@dataclass(frozen=True)
class Box:
    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def cut(self, image: np.ndarray) -> np.ndarray:
        return image[self.top : self.bottom, self.left : self.right]


def mask_bounding_box(mask: np.ndarray) -> Box:
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    if len(rows) == 0:
        raise ValueError("the mask is empty: there is no region to crop")
    return Box(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def crop_box(mask: np.ndarray, rule: CropRule = CropRule()) -> Box:
    """The box the rule above gives for `mask` (see the module docstring)."""
    height, width = mask.shape
    box = mask_bounding_box(mask)
    padding = max(rule.min_padding, int(round(rule.margin * max(box.height, box.width))))
    padded_h = box.height + 2 * padding
    padded_w = box.width + 2 * padding
    side = min(max(padded_h, padded_w, rule.min_side), min(height, width))
    centre_y = (box.top + box.bottom) / 2
    centre_x = (box.left + box.right) / 2
    top = _place(centre_y, side, height)
    left = _place(centre_x, side, width)
    return Box(top, top + side, left, left + side)


def _place(centre: float, side: int, limit: int) -> int:
    """Start of a window of `side` centred on `centre`, shifted to lie within [0, limit)."""
    start = int(round(centre - side / 2))
    return min(max(start, 0), limit - side)
